"""EncodecModel: SEANet encoder, residual vector quantizer and SEANet decoder, with the official segmenting.

``encode`` and ``decode`` keep the official package's semantics exactly (the paper, Défossez et al. 2022,
arXiv:2210.13438, section 3.1; the file layout they imply is in ``docs/ecdc-format.md``): the 48 kHz model cuts the
signal into 1 s segments that overlap by 10 ms, codes each with its own RMS scale, and overlap-adds the decoded
segments with a triangular window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from .. import audio
from .config import EncodecConfig
from .modules.conv import fold_weight_norm
from .modules.seanet import SEANetDecoder, SEANetEncoder
from .quantization.rvq import ResidualVectorQuantizer

# segments per LSTM call (``run_many``): 16 one-second 48 kHz segments share each read of the LSTM's weights, while
# the activations held at once stay bounded however long the file
SEGMENT_BATCH = 16
T = TypeVar("T")

if TYPE_CHECKING:
    from .streaming import StreamingDecoder, StreamingEncoder


def segment_runs(items: Iterable[T], shape: Callable[[T], object]) -> Iterator[list[T]]:
    """Consecutive items of one shape, at most ``SEGMENT_BATCH`` per run: the batches in which segments are coded.

    A segment's bits depend on the run it is batched with, so every path that codes segments (``EncodecModel``,
    streamed files in ``file_stream``) forms these same runs.
    """
    run: list[T] = []
    for item in items:
        if run and (len(run) == SEGMENT_BATCH or shape(item) != shape(run[0])):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


class EncodedFrame(NamedTuple):
    """The codes of one segment ``[B, K, frames]`` and its scale ``[B, 1]`` (None unless the model normalizes)."""

    codes: Tensor
    scale: Optional[Tensor]


def linear_overlap_add(frames: Sequence[Tensor], stride: int) -> Tensor:
    """Overlap-add decoded segments with a triangular window, normalised by the summed weights.

    The window is sized by the first segment; a shorter last segment takes the window's rising start. The output
    spans the furthest segment end: upstream assumes the last segment ends last, which fails when a first segment
    shorter than 1 s, rounded up to whole frames, reaches past the short last one (47520 < length < 48000 at 48 kHz).
    """
    first = frames[0]
    size = first.shape[-1]
    total = max(index * stride + frame.shape[-1] for index, frame in enumerate(frames))
    t = torch.linspace(0, 1, size + 2, device=first.device, dtype=first.dtype)[1:-1]
    weight = 0.5 - (t - 0.5).abs()
    out = torch.zeros(*first.shape[:-1], total, device=first.device, dtype=first.dtype)
    weight_sum = torch.zeros(total, device=first.device, dtype=first.dtype)
    for index, frame in enumerate(frames):
        length = frame.shape[-1]
        offset = index * stride
        out[..., offset: offset + length] += weight[:length] * frame
        weight_sum[offset: offset + length] += weight[:length]
    return out / weight_sum


class EncodecModel(nn.Module):
    """The EnCodec neural codec for one configuration (see ``EncodecConfig`` for the presets)."""

    def __init__(self, config: EncodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = SEANetEncoder(config)
        self.quantizer = ResidualVectorQuantizer(config.dimension, config.n_q, config.bins, config.decay,
                                                 config.kmeans_init, config.kmeans_iters,
                                                 config.threshold_ema_dead_code)
        self.decoder = SEANetDecoder(config)
        self.bandwidth: Optional[float] = None
        self.set_channels_last(encoder=False, decoder=True)

    # ---- descriptive properties ------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def frame_rate(self) -> int:
        return self.config.frame_rate

    @property
    def latency_seconds(self) -> float:
        """Algorithmic latency of streaming use: one frame of samples (13.3 ms at 24 kHz); non-causal models
        need the whole segment, so theirs is the segment length."""
        if self.config.causal and self.config.segment is None:
            return self.config.hop_length / self.sample_rate
        length = self.config.segment_length
        return (length if length is not None else float("inf")) / self.sample_rate

    def set_target_bandwidth(self, bandwidth: Optional[float]) -> None:
        """Bandwidth (kbps) used when ``encode`` is called without one; None uses every codebook."""
        if bandwidth is not None:
            self.config.check_bandwidth(bandwidth)
        self.bandwidth = bandwidth

    def set_channels_last(self, encoder: Optional[bool] = None, decoder: Optional[bool] = None) -> "EncodecModel":
        """Run the encoder and/or decoder on time-major (channels-last) memory at inference (None keeps a setting).

        Faster on CPU (oneDNN skips a layout conversion around every conv), but plain convs then sum in another
        order: the decoder's audio moves by 1e-7 to 2e-6, inside the 1e-5 allowed, so it is on by default; the
        encoder's codes could differ from the official ones (rarely: ``benchmarks/speed.py`` reports the fraction),
        so it is off by default.
        """
        if encoder is not None:
            self.encoder.channels_last = bool(encoder)
        if decoder is not None:
            self.decoder.channels_last = bool(decoder)
        return self

    def set_bfloat16(self, encoder: Optional[bool] = None, decoder: Optional[bool] = None) -> "EncodecModel":
        """Run the encoder and/or decoder in bfloat16 at inference (None keeps a setting; the quantizer stays
        float32). Faster on CPUs with bf16 units, but codes and audio change: ``benchmarks/speed.py`` measures both
        the speed and the change. Off by default."""
        if encoder is not None:
            self.encoder.bfloat16 = bool(encoder)
        if decoder is not None:
            self.decoder.bfloat16 = bool(decoder)
        return self

    def fold_weight_norm(self) -> "EncodecModel":
        """Turn weight-norm parameters into plain weights: same outputs, no norm recomputed per call."""
        fold_weight_norm(self)
        return self

    def streaming_encoder(self, bandwidth: Optional[float] = None) -> "StreamingEncoder":
        """A stateful encoder for pieces of audio of any size (causal models only)."""
        from .streaming import StreamingEncoder

        return StreamingEncoder(self, bandwidth)

    def streaming_decoder(self) -> "StreamingDecoder":
        """A stateful decoder that turns codes into audio as they arrive (causal models only)."""
        from .streaming import StreamingDecoder

        return StreamingDecoder(self)

    # ---- codes -------------------------------------------------------------------------------------------
    def encode(self, x: Tensor, bandwidth: Optional[float] = None) -> list[EncodedFrame]:
        """Code ``[B, channels, T]`` audio at the model's sample rate; one frame per segment."""
        self._check_input(x)
        bandwidth = self.bandwidth if bandwidth is None else bandwidth
        n_q = self.config.num_codebooks(bandwidth)
        length = x.shape[-1]
        segment = self.config.segment_length
        stride = self.config.segment_stride
        if segment is None:
            return self.encode_segments([x], n_q)
        return self.encode_segments([x[..., offset: offset + segment] for offset in range(0, length, stride)], n_q)

    def encode_segment(self, x: Tensor, n_q: int) -> EncodedFrame:
        """Code one segment with ``n_q`` codebooks, normalising it first when the model does."""
        return self.encode_segments([x], n_q)[0]

    def encode_segments(self, segments: Sequence[Tensor], n_q: int) -> list[EncodedFrame]:
        """Code each segment; each run of ``segment_runs`` shares the encoder's LSTM calls (``run_many``)."""
        frames = []
        for run in segment_runs(segments, lambda x: x.shape):
            scales = [self.normalization_scale(x) for x in run]
            inputs = [x if scale is None else x / scale for x, scale in zip(run, scales)]
            for latents, scale in zip(self.encoder.forward_many(inputs), scales):
                codes = self.quantizer.encode(latents, n_q)
                frames.append(EncodedFrame(codes.transpose(0, 1), None if scale is None else scale.view(-1, 1)))
        return frames

    def normalization_scale(self, x: Tensor) -> Optional[Tensor]:
        """The segment's RMS volume (of its channel mean, plus 1e-8), which normalising models divide it by."""
        if not self.config.normalize:
            return None
        return 1e-8 + x.mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt()

    def decode(self, frames: Sequence[EncodedFrame]) -> Tensor:
        """Audio ``[B, channels, T']`` from the frames of ``encode``; T' is rounded up to whole code frames."""
        if not frames:
            raise ValueError("no frames to decode")
        if self.config.segment_length is None:
            if len(frames) != 1:
                raise ValueError(f"{self.config.name} codes the whole signal as one frame, got {len(frames)}")
            return self.decode_segment(frames[0])
        return linear_overlap_add(self.decode_segments(frames), self.config.segment_stride)

    def decode_segment(self, frame: EncodedFrame) -> Tensor:
        """Audio of one segment, rescaled by its scale."""
        return self.decode_segments([frame])[0]

    def decode_segments(self, frames: Sequence[EncodedFrame]) -> list[Tensor]:
        """Audio of each segment, rescaled by its scale; each run of ``segment_runs`` shares the decoder's LSTM
        calls (``run_many``)."""
        outs: list[Tensor] = []
        for run in segment_runs(frames, lambda frame: frame[0].shape):  # (codes, scale) pairs of any kind
            latents = [self.quantizer.decode(self._checked_codes(codes).transpose(0, 1)) for codes, _ in run]
            for (_, scale), out in zip(run, self.decoder.forward_many(latents)):
                outs.append(out if scale is None else out * scale.view(-1, 1, 1))
        return outs

    def _checked_codes(self, codes: Tensor) -> Tensor:
        if codes.dim() != 3:
            raise ValueError(f"codes must be shaped [B, K, frames], got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.config.bins):
            raise ValueError(f"codes must lie in 0..{self.config.bins - 1}")
        return codes

    def forward(self, x: Tensor, bandwidth: Optional[float] = None) -> Tensor:
        """Encode and decode, cropped to the input length (inference; training uses the quantizer directly)."""
        return self.decode(self.encode(x, bandwidth))[..., : x.shape[-1]]

    # ---- audio in any form ---------------------------------------------------------------------------------
    def prepare(self, wav: "Tensor | np.ndarray", sample_rate: int, convert: bool = False) -> Tensor:
        """Check (and, when asked, convert) ``[C, T]`` or ``[B, C, T]`` audio for this model; returns [B, C, T].

        Sample rate and channel count must match the model unless ``convert`` is set: a silent resample hides
        mistakes in an evaluation.
        """
        x = torch.as_tensor(wav, dtype=torch.float32)
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3:
            raise ValueError(f"audio must be shaped [channels, samples] or [batch, channels, samples], "
                             f"got {tuple(x.shape)}")
        audio.check_finite(x)
        if convert:
            x = audio.convert(x, sample_rate, self.sample_rate, self.channels)
        elif sample_rate != self.sample_rate:
            raise ValueError(f"{self.config.name} takes {self.sample_rate} Hz audio, got {sample_rate} Hz "
                             f"(pass convert=True to resample)")
        self._check_input(x)
        return x

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 3:
            raise ValueError(f"audio must be shaped [batch, channels, samples], got {tuple(x.shape)}")
        if x.shape[1] != self.channels:
            raise ValueError(f"{self.config.name} takes {self.channels}-channel audio, got {x.shape[1]} channels")
        audio.check_finite(x)
