"""Streaming encode and decode for the causal EnCodec model.

Audio goes in as pieces of any size; codes come out as soon as each frame of ``hop_length`` samples is complete,
and the decoder turns codes into audio as soon as they arrive. Both reproduce the one-shot ``EncodecModel``
(identical codes, audio equal up to float rounding) because each layer keeps exactly the state the one-shot pass
would read:

- a causal conv keeps its last ``(kernel - 1) * dilation + 1 - stride`` input samples; its output ``i`` reads input
  up to ``stride * i + stride - 1`` only, so it runs as soon as those samples are there;
- the reference pads every conv on the left with a *reflection* of its first samples, so a conv can start only
  once it holds ``padding_total + 1`` samples. This costs a one-time start-up (6 frames at 24 kHz, caused by the
  k7 convs at frame rate), after which one frame comes out per frame that goes in. A player that starts at the
  first output and never skips stays 7 frames (93.3 ms) behind the input for good; one that drops or shortens
  the start-up burst gets down to one frame (13.3 ms);
- the right alignment padding depends on the total length, so it is applied at ``flush()`` (end of stream), and
  a stream shorter than a conv's padding falls back to the one-shot rule for short inputs;
- a transposed conv overlap-adds the tail of the previous piece; the LSTMs carry (h, c); a residual block sums
  its shortcut and its (later-starting) block branch once both are there.

A stream computes weight-normed weights once, when it is created, and shares every other tensor with the model:
create streams after loading weights, and do not train the model while they run.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import audio
from .config import EncodecConfig
from .model import EncodecModel
from .modules.conv import PaddedConv1d, PaddedConvTranspose1d, extra_padding, pad1d
from .modules.seanet import ResidualBlock, SkipLSTM


def check_streamable(config: EncodecConfig) -> None:
    """Raise ValueError unless ``config`` describes a model that can stream (causal, no segments, no scale)."""
    problems = []
    if not config.causal:
        problems.append("it is not causal (its convs look ahead)")
    if config.segment is not None:
        problems.append(f"it codes {config.segment:g} s segments")
    if config.normalize:
        problems.append("it normalizes each segment by its RMS")
    if config.norm == "time_group_norm":
        problems.append("its time_group_norm normalizes over the whole signal")
    if problems:
        raise ValueError(f"{config.name} cannot stream: " + "; ".join(problems))


def _empty_like(x: Tensor, channels: int) -> Tensor:
    return x.new_empty((x.shape[0], channels, 0))


def _cat(head: Optional[Tensor], tail: Optional[Tensor]) -> Optional[Tensor]:
    """Join two pieces along time; None stands for nothing."""
    if head is None or head.shape[-1] == 0:
        return tail
    if tail is None or tail.shape[-1] == 0:
        return head
    return torch.cat([head, tail], dim=-1)


class _Stream:
    """One layer's streaming state. ``step`` takes the next input piece and returns every output it completes;
    ``flush`` ends the stream and returns the rest (None if there is none); ``ready(n)`` says how many outputs
    ``n`` inputs complete before ``flush``."""

    def step(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def flush(self) -> Optional[Tensor]:
        return None

    def ready(self, n_inputs: int) -> int:
        return n_inputs


class _ConvStream(_Stream):
    def __init__(self, layer: PaddedConv1d) -> None:
        if not isinstance(layer.conv.norm, nn.Identity):
            raise ValueError("a conv followed by a norm over time cannot stream")
        if not layer.causal:
            raise ValueError("a non-causal conv cannot stream")
        conv = layer.conv.conv
        self.layer = layer
        self.weight = conv.effective_weight().detach()
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.stride, self.dilation, self.kernel_size = layer.stride, layer.dilation, layer.kernel_size
        self.padding_total = layer.padding_total
        self.pad_mode = layer.pad_mode
        self.span = (layer.kernel_size - 1) * layer.dilation + 1
        if self.pad_mode == "reflect" and self.padding_total < self.stride - 1:
            # flush() reflects the alignment padding (< stride) from the kept context (padding_total samples)
            raise ValueError(f"a reflect-padded conv with kernel {layer.kernel_size} and stride {layer.stride} "
                             "keeps too little context to stream")
        # samples needed before the left padding can be built: a reflection reads x[1..padding_total]
        self.start_after = self.padding_total if self.pad_mode == "reflect" else 0
        self.buffer: Optional[Tensor] = None
        self.received = 0
        self.started = False

    def ready(self, n_inputs: int) -> int:
        return n_inputs // self.stride if n_inputs > self.start_after else 0

    def _conv(self, x: Tensor) -> Tensor:
        return F.conv1d(x, self.weight, self.bias, self.stride, 0, self.dilation)

    def step(self, x: Tensor) -> Tensor:
        self.received += x.shape[-1]
        buffer = _cat(self.buffer, x)
        if not self.started:
            if self.received <= self.start_after:
                self.buffer = buffer
                return _empty_like(x, self.weight.shape[0])
            buffer = pad1d(buffer, self.padding_total, 0, self.pad_mode)
            self.started = True
        n_out = (buffer.shape[-1] - self.span) // self.stride + 1
        if n_out <= 0:
            self.buffer = buffer
            return _empty_like(x, self.weight.shape[0])
        self.buffer = buffer[..., n_out * self.stride:]
        return self._conv(buffer)

    def flush(self) -> Tensor:
        assert self.buffer is not None, "flush() before any step()"
        if not self.started:  # the whole stream is shorter than the padding: the one-shot short-input rule
            if self.received == 0:
                return _empty_like(self.buffer, self.weight.shape[0])
            return self.layer(self.buffer)
        extra = extra_padding(self.received, self.kernel_size, self.stride, self.padding_total)
        buffer = pad1d(self.buffer, 0, extra, self.pad_mode)
        self.buffer = buffer[..., :0]
        if buffer.shape[-1] < self.span:
            return _empty_like(buffer, self.weight.shape[0])
        return self._conv(buffer)


class _ConvTransposeStream(_Stream):
    def __init__(self, layer: PaddedConvTranspose1d) -> None:
        if not isinstance(layer.convtr.norm, nn.Identity):
            raise ValueError("a transposed conv followed by a norm over time cannot stream")
        if not layer.causal:
            raise ValueError("a non-causal transposed conv cannot stream")
        convtr = layer.convtr.convtr
        self.weight = convtr.effective_weight().detach()
        self.bias = None if convtr.bias is None else convtr.bias.detach().view(-1, 1)
        self.stride = layer.stride
        self.trim_left = layer.trim[0]
        self.to_trim = self.trim_left
        self.tail: Optional[Tensor] = None

    def ready(self, n_inputs: int) -> int:
        return max(0, n_inputs * self.stride - self.trim_left)

    def _emit(self, y: Tensor) -> Tensor:
        if self.bias is not None:
            y = y + self.bias
        if self.to_trim:
            cut = min(self.to_trim, y.shape[-1])
            self.to_trim -= cut
            y = y[..., cut:]
        return y

    def step(self, x: Tensor) -> Tensor:
        n_frames = x.shape[-1]
        if n_frames == 0:
            return _empty_like(x, self.weight.shape[1])
        y = F.conv_transpose1d(x, self.weight, None, self.stride)
        if self.tail is not None:
            y[..., : self.tail.shape[-1]] += self.tail
        complete = n_frames * self.stride
        self.tail = y[..., complete:]
        return self._emit(y[..., :complete])

    def flush(self) -> Optional[Tensor]:
        if self.tail is None:
            return None
        return self._emit(self.tail[..., : self.trim_left])


class _LSTMStream(_Stream):
    """The skip-LSTM one step at a time, carrying (h, c) per layer.

    ``torch.lstm_cell`` rather than ``nn.LSTM``: on CPU the LSTM module goes through oneDNN, which re-lays out
    its 16 MB of weights at every call (~20 ms for a single step against ~1 ms here).
    """

    def __init__(self, layer: SkipLSTM) -> None:
        lstm = layer.lstm
        if lstm.bidirectional or lstm.proj_size or not lstm.bias or lstm.batch_first:
            raise ValueError("only a plain unidirectional LSTM with biases can stream")
        self.weights = [tuple(getattr(lstm, f"{name}_l{index}").detach()
                              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                        for index in range(lstm.num_layers)]
        self.state: Optional[list[tuple[Tensor, Tensor]]] = None

    def step(self, x: Tensor) -> Tensor:
        if x.shape[-1] == 0:
            return x
        seq = x.permute(2, 0, 1)  # [T, B, C]
        if self.state is None:
            zeros = seq.new_zeros(seq.shape[1:])
            self.state = [(zeros, zeros)] * len(self.weights)
        layer_input = seq
        for index, weights in enumerate(self.weights):
            h, c = self.state[index]
            outputs = []
            for frame in layer_input:
                h, c = torch.lstm_cell(frame, (h, c), *weights)
                outputs.append(h)
            self.state[index] = (h, c)
            layer_input = torch.stack(outputs)
        return (layer_input + seq).permute(1, 2, 0)


class _ELUStream(_Stream):
    def __init__(self, layer: nn.ELU) -> None:
        self.alpha = layer.alpha

    def step(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha)


class _IdentityStream(_Stream):
    def step(self, x: Tensor) -> Tensor:
        return x


class _SequentialStream(_Stream):
    def __init__(self, layers: list[_Stream]) -> None:
        self.layers = layers

    def ready(self, n_inputs: int) -> int:
        for layer in self.layers:
            n_inputs = layer.ready(n_inputs)
        return n_inputs

    def step(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer.step(x)
        return x

    def flush(self) -> Optional[Tensor]:
        """Flush layer by layer: each layer's last outputs go through the next layer before it flushes."""
        out: Optional[Tensor] = None
        for layer in self.layers:
            out = _cat(None if out is None else layer.step(out), layer.flush())
        return out


class _ResidualStream(_Stream):
    """Shortcut plus block, summed sample by sample once both branches have produced the sample."""

    def __init__(self, layer: ResidualBlock) -> None:
        self.shortcut = _stream_of(layer.shortcut)
        self.block = _stream_of(layer.block)
        self.pending_shortcut: Optional[Tensor] = None
        self.pending_block: Optional[Tensor] = None

    def ready(self, n_inputs: int) -> int:
        return min(self.shortcut.ready(n_inputs), self.block.ready(n_inputs))

    def _sum_aligned(self, shortcut: Optional[Tensor], block: Optional[Tensor]) -> Optional[Tensor]:
        shortcut = _cat(self.pending_shortcut, shortcut)
        block = _cat(self.pending_block, block)
        if shortcut is None or block is None:
            self.pending_shortcut, self.pending_block = shortcut, block
            return None
        n = min(shortcut.shape[-1], block.shape[-1])
        self.pending_shortcut, self.pending_block = shortcut[..., n:], block[..., n:]
        return shortcut[..., :n] + block[..., :n]

    def step(self, x: Tensor) -> Tensor:
        return self._sum_aligned(self.shortcut.step(x), self.block.step(x))

    def flush(self) -> Optional[Tensor]:
        out = self._sum_aligned(self.shortcut.flush(), self.block.flush())
        assert self.pending_shortcut is None or self.pending_shortcut.shape[-1] == 0
        assert self.pending_block is None or self.pending_block.shape[-1] == 0
        return out


def _stream_of(module: nn.Module) -> _Stream:
    """The streaming counterpart of one SEANet layer."""
    if isinstance(module, nn.Sequential):
        return _SequentialStream([_stream_of(child) for child in module])
    streams = {PaddedConv1d: _ConvStream, PaddedConvTranspose1d: _ConvTransposeStream, SkipLSTM: _LSTMStream,
               nn.ELU: _ELUStream, ResidualBlock: _ResidualStream}
    for kind, stream in streams.items():
        if isinstance(module, kind):
            return stream(module)
    if isinstance(module, nn.Identity):
        return _IdentityStream()
    raise TypeError(f"no streaming version of {type(module).__name__}")


def _first_ready(stream: _Stream, step: int) -> int:
    """Smallest multiple of ``step`` inputs after which ``stream`` has produced an output."""
    n = step
    while stream.ready(n) == 0:
        n += step
    return n


class _Streaming:
    """What the encoder and the decoder share: the model, the latency figures, the end-of-stream guard."""

    def __init__(self, model: EncodecModel, network: nn.Module) -> None:
        check_streamable(model.config)
        self.model = model
        self.hop_length = model.config.hop_length
        self._net = _stream_of(network.model)
        self._flushed = False
        self._batch: Optional[int] = None
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype

    @property
    def frame_latency_samples(self) -> int:
        """Steady-state latency: a frame waits until all its ``hop_length`` samples have arrived."""
        return self.hop_length

    @property
    def frame_latency_seconds(self) -> float:
        return self.hop_length / self.model.sample_rate

    def _check_open(self, batch: int) -> None:
        if self._flushed:
            raise RuntimeError("this stream was flushed (end of stream); create a new one for more input")
        if self._batch is not None and batch != self._batch:
            raise ValueError(f"batch size changed within a stream: {self._batch} then {batch}")
        self._batch = batch

    def _flush(self) -> Tensor:
        if self._batch is None:
            raise ValueError("nothing to flush: no input was pushed into the stream")
        self._check_open(self._batch)
        self._flushed = True
        out = self._net.flush()
        assert out is not None, "the last layer is a conv, whose flush always returns a tensor"
        return out


class StreamingEncoder(_Streaming):
    """Audio pieces ``[B, channels, n]`` in, codes ``[B, K, frames]`` out as soon as each frame is complete.

    The concatenated codes of every ``push`` and the final ``flush`` equal ``model.encode(whole_audio)``.
    """

    def __init__(self, model: EncodecModel, bandwidth: Optional[float] = None) -> None:
        super().__init__(model, model.encoder)
        self.bandwidth = model.bandwidth if bandwidth is None else bandwidth
        self.num_codebooks = model.config.num_codebooks(self.bandwidth)
        self.samples_received = 0

    @property
    def startup_samples(self) -> int:
        """Samples that must arrive before the first codes come out (2240 at 24 kHz: 7 frames)."""
        return _first_ready(self._net, self.hop_length)

    @property
    def startup_frames(self) -> int:
        """Frames beyond the first that the reference's reflect padding makes the stream wait for, once."""
        return self.startup_samples // self.hop_length - 1

    def frames_ready(self, n_samples: int) -> int:
        """Code frames out after ``n_samples`` samples went in (before ``flush``)."""
        return self._net.ready(n_samples)

    @torch.inference_mode()
    def push(self, wav: Tensor) -> Tensor:
        """Take the next piece of audio; return the codes of every frame it completes (possibly none)."""
        if wav.dim() != 3 or wav.shape[1] != self.model.channels:
            raise ValueError(f"audio pieces must be shaped [batch, {self.model.channels}, samples], "
                             f"got {tuple(wav.shape)}")
        self._check_open(wav.shape[0])
        if wav.shape[-1]:
            audio.check_finite(wav)
        self.samples_received += wav.shape[-1]
        # a copy: the first layers keep unconsumed samples, and callers often refill one buffer in place
        return self._codes(self._net.step(wav.to(self.device, self.dtype, copy=True)))

    @torch.inference_mode()
    def flush(self) -> Tensor:
        """End the stream: the codes of the last frames, the final one padded as the one-shot model pads it."""
        if self.samples_received == 0 and self._batch is not None:
            raise audio.AudioError("audio is empty (0 samples)")
        return self._codes(self._flush())

    def _codes(self, latents: Tensor) -> Tensor:
        if latents.shape[-1] == 0:
            return torch.empty((latents.shape[0], self.num_codebooks, 0), dtype=torch.long, device=self.device)
        return self.model.quantizer.encode(latents, self.num_codebooks).transpose(0, 1)


class StreamingDecoder(_Streaming):
    """Codes ``[B, K, frames]`` in, audio ``[B, channels, samples]`` out as soon as it is determined.

    The concatenated audio of every ``push`` and the final ``flush`` equals ``model.decode`` of the same codes
    (``frames * hop_length`` samples; crop to the original length yourself).
    """

    def __init__(self, model: EncodecModel) -> None:
        super().__init__(model, model.decoder)
        self.frames_received = 0

    @property
    def startup_frames(self) -> int:
        """Frames beyond the first that must arrive before the first audio comes out (6 at 24 kHz)."""
        return _first_ready(self._net, 1) - 1

    def samples_ready(self, n_frames: int) -> int:
        """Audio samples out after ``n_frames`` code frames went in (before ``flush``)."""
        return self._net.ready(n_frames)

    @torch.inference_mode()
    def push(self, codes: Tensor) -> Tensor:
        """Take the next code frames; return every audio sample they complete (possibly none)."""
        bins, n_q = self.model.config.bins, self.model.quantizer.n_q
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= n_q:
            raise ValueError(f"codes must be shaped [batch, 1..{n_q} codebooks, frames], got {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        self._check_open(codes.shape[0])
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= bins):
            raise ValueError(f"codes must lie in 0..{bins - 1}")
        self.frames_received += codes.shape[-1]
        if codes.shape[-1] == 0:
            latents = torch.empty((codes.shape[0], self.model.config.dimension, 0), device=self.device,
                                  dtype=self.dtype)
        else:
            latents = self.model.quantizer.decode(codes.to(self.device, torch.long).transpose(0, 1))
        return self._net.step(latents)

    @torch.inference_mode()
    def flush(self) -> Tensor:
        """End the stream: audio still held back (all of it for a stream shorter than the start-up; the last
        samples of a transposed conv that trims on both sides, when ``trim_right_ratio`` < 1)."""
        if self.frames_received == 0 and self._batch is not None:
            raise ValueError("no code frames to decode")
        return self._flush()
