"""Compress and decompress files without holding them: audio and ``.ecdc`` bytes flow segment by segment.

Peak memory stays flat in the file's length. The input is read in blocks, converted on the fly (soxr's
``ResampleStream`` gives the same samples as its one-shot ``resample``; mixing channels is per sample) and coded as
soon as a segment is complete: the 48 kHz model's 1 s segments one at a time, the 24 kHz model's single
whole-signal segment through the causal streaming encoder (``streaming.py``). Bytes go out as they are made: the
header first (the audio length is known up front from the file's frame count), then each segment's payload.
Decoding mirrors it: segments are read one at a time, decoded, overlap-added with the next one exactly as
``model.linear_overlap_add`` does (same operations in the same order, so the same floats) and written in blocks.

The files are byte-identical to ``compress.compress`` on the whole converted signal, with or without the LM. What
is still held whole: the compressed file when decompressing (~45 kB per minute at 6 kbps), and, for the 24 kHz
model with the LM only, the codes of its single segment (~0.3 MB per minute at 6 kbps) because the LM coder
takes a segment at once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Union

import numpy as np
import soundfile as sf
import soxr
import torch

from codec import audio
from codec.encodec.bitstream import (
    EcdcError,
    EcdcMetadata,
    Segment,
    SegmentWriter,
    check_layout,
    iter_segment_chunks,
    iter_segments,
    lm_progress,
    read_metadata,
    write_header,
)
from codec.encodec.lm import EntropyLM
from codec.encodec.model import EncodecModel, EncodedFrame, segment_runs
from codec.files import replacing

BLOCK_FRAMES = 1 << 16  # input frames read at a time (1.4 s at 48 kHz)
CODE_CHUNK_FRAMES = 750  # code frames unpacked or decoded at a time for the 24 kHz model (10 s)
CLIP_LIMIT = 0.99


# ---- reading audio ----------------------------------------------------------------------------------------------
def converted_length(frames: int, from_sr: int, to_sr: int) -> int:
    """Samples soxr's one-shot ``resample`` returns for ``frames`` input samples (its rounding rule)."""
    return frames if from_sr == to_sr else int(frames * to_sr / from_sr + 0.5)


class AudioBlocks:
    """An audio file read block by block, converted to ``sample_rate`` and ``channels`` exactly as
    ``audio.convert`` converts the whole file (same order of mixing and resampling, same soxr HQ filter)."""

    def __init__(self, path: Union[str, Path], sample_rate: int, channels: int) -> None:
        self.path = Path(path)
        with audio.open_audio(self.path) as info:  # the header checks of audio.load
            self.source_rate, self.source_channels = int(info.samplerate), int(info.channels)
            self.source_frames = info.frames
        self.sample_rate, self.channels = sample_rate, channels
        if channels != self.source_channels and 1 not in (channels, self.source_channels):
            raise audio.AudioError(f"{self.path}: cannot convert {self.source_channels} channels to {channels}")
        self.length = converted_length(self.source_frames, self.source_rate, sample_rate)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Blocks of float32 ``[channels, samples]``; together exactly ``self.length`` samples."""
        mix_first = self.source_channels > self.channels
        resampler = None
        if self.source_rate != self.sample_rate:
            resampler = soxr.ResampleStream(self.source_rate, self.sample_rate,
                                            self.channels if mix_first else self.source_channels,
                                            dtype="float32", quality="HQ")
        produced = read = 0
        try:
            with audio.quiet_decoders():
                handle = sf.SoundFile(str(self.path))
            with handle:
                while True:
                    with audio.quiet_decoders():
                        block = handle.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                    audio.check_peak(block, f"{self.path} (near {read / self.source_rate:.1f} s)")  # as audio.load
                    read += block.shape[0]
                    last = block.shape[0] < BLOCK_FRAMES or read >= self.source_frames
                    out = self._convert(block, resampler, mix_first, last)
                    produced += out.shape[-1]
                    if out.shape[-1]:
                        yield out
                    if last:
                        break
        except sf.LibsndfileError as exc:
            raise audio.ends_early(self.path, self.source_frames, self.source_rate, exc) from exc
        if read != self.source_frames or produced != self.length:
            raise audio.ends_early(self.path, self.source_frames, self.source_rate, held=read)

    def _convert(self, block: np.ndarray, resampler: Optional[soxr.ResampleStream], mix_first: bool,
                 last: bool) -> np.ndarray:
        wav = np.ascontiguousarray(block.T)  # [C, n], the layout audio.load returns
        if mix_first:
            wav = audio.convert_channels(wav, self.channels)
        if resampler is not None:
            wav = np.ascontiguousarray(resampler.resample_chunk(np.ascontiguousarray(wav.T), last=last).T,
                                       dtype=np.float32)
        if not mix_first:
            wav = audio.convert_channels(wav, self.channels)
        return wav


class _Segmenter:
    """Cuts a stream of blocks into the model's overlapping segments: ``x[offset : offset + length]`` for every
    ``offset`` in ``range(0, total, stride)``, as ``EncodecModel.encode`` cuts the whole signal."""

    def __init__(self, length: int, stride: int, total: int) -> None:
        self.length, self.stride, self.total = length, stride, total
        self.buffer: Optional[np.ndarray] = None
        self.buffer_start = 0  # absolute index of buffer[..., 0]
        self.next_offset = 0

    def push(self, block: np.ndarray) -> Iterator[np.ndarray]:
        self.buffer = block if self.buffer is None else np.concatenate([self.buffer, block], axis=-1)
        end = self.buffer_start + self.buffer.shape[-1]
        while self.next_offset < self.total and (self.next_offset + self.length <= end or end >= self.total):
            start = self.next_offset - self.buffer_start
            yield self.buffer[..., start: start + self.length]
            self.next_offset += self.stride
        drop = min(self.next_offset - self.buffer_start, self.buffer.shape[-1])
        self.buffer = self.buffer[..., drop:].copy()  # a copy, so the dropped samples are freed
        self.buffer_start += drop


# ---- writing .ecdc ----------------------------------------------------------------------------------------------
@torch.no_grad()
def compress_file(model: EncodecModel, source: Union[str, Path], out: BinaryIO, bandwidth: Optional[float] = None,
                  use_lm: bool = False, lm: Optional[EntropyLM] = None,
                  show_progress: bool = False) -> EcdcMetadata:
    """Write the ``.ecdc`` bytes of the audio file ``source`` to ``out``, reading and coding it piece by piece.

    Same bytes as ``compress`` of the whole file converted by ``audio.convert`` to the model's rate and channels;
    ``lm`` is required with ``use_lm``.
    """
    check_layout(model.config)
    config = model.config
    bandwidth = model.bandwidth if bandwidth is None else bandwidth
    n_q = config.num_codebooks(bandwidth)
    blocks = AudioBlocks(source, model.sample_rate, model.channels)
    metadata = EcdcMetadata(config.name, blocks.length, n_q, use_lm)
    device = next(model.parameters()).device
    with lm_progress(metadata, "LM coding", show_progress) as bar:
        writer = SegmentWriter(metadata, lm, bar)
        out.write(write_header(metadata))
        if config.segment_length is None:  # one segment, its codes written as the streaming encoder makes them
            encoder = model.streaming_encoder(bandwidth)
            out.write(writer.begin(None))
            for block in blocks:
                out.write(writer.codes(encoder.push(torch.from_numpy(block)[None])[0].cpu().numpy()))
            out.write(writer.codes(encoder.flush()[0].cpu().numpy()) + writer.end())
        else:
            segmenter = _Segmenter(config.segment_length, config.segment_stride, blocks.length)
            segments = (torch.from_numpy(np.array(segment))[None].to(device)
                        for block in blocks for segment in segmenter.push(block))
            for run in segment_runs(segments, lambda x: x.shape):  # the runs EncodecModel.encode batches
                out.write(writer.write_segments([
                    Segment(frame.codes[0].cpu().numpy(), None if frame.scale is None else frame.scale.cpu().item())
                    for frame in model.encode_segments(run, n_q)]))
    return metadata


# ---- reading .ecdc ----------------------------------------------------------------------------------------------
class _OverlapAdd:
    """``model.linear_overlap_add`` one segment at a time: the same operations in the same order, so the same
    floats; samples are released as soon as no later segment can reach them."""

    def __init__(self, stride: int) -> None:
        self.stride = stride
        self.weight: Optional[torch.Tensor] = None
        self.out: Optional[torch.Tensor] = None
        self.weight_sum: Optional[torch.Tensor] = None
        self.start = 0  # absolute index of out[..., 0]
        self.index = 0

    def add(self, frame: torch.Tensor) -> torch.Tensor:
        """Add one decoded segment ``[B, C, n]``; returns the samples now final."""
        if self.weight is None:
            t = torch.linspace(0, 1, frame.shape[-1] + 2, device=frame.device, dtype=frame.dtype)[1:-1]
            self.weight = 0.5 - (t - 0.5).abs()
            self.out = frame.new_zeros(*frame.shape[:-1], 0)
            self.weight_sum = frame.new_zeros(0)
        length = frame.shape[-1]
        offset = self.index * self.stride - self.start
        grow = offset + length - self.out.shape[-1]
        if grow > 0:
            self.out = torch.cat([self.out, self.out.new_zeros(*self.out.shape[:-1], grow)], dim=-1)
            self.weight_sum = torch.cat([self.weight_sum, self.weight_sum.new_zeros(grow)])
        self.out[..., offset: offset + length] += self.weight[:length] * frame
        self.weight_sum[offset: offset + length] += self.weight[:length]
        self.index += 1
        return self._release(min(self.index * self.stride - self.start, self.out.shape[-1]))

    def finish(self) -> torch.Tensor:
        return self._release(self.out.shape[-1])

    def _release(self, count: int) -> torch.Tensor:
        done = self.out[..., :count] / self.weight_sum[:count]
        self.out, self.weight_sum = self.out[..., count:].clone(), self.weight_sum[count:].clone()
        self.start += count
        return done


@torch.no_grad()
def decode_blocks(data: bytes, model: EncodecModel, lm: Optional[EntropyLM] = None,
                  show_progress: bool = False) -> Iterator[torch.Tensor]:
    """Audio blocks ``[channels, samples]`` of ``.ecdc`` bytes, decoded a segment at a time.

    Concatenated, they equal ``decompress(data)[0]`` (bit for bit at 48 kHz; at 24 kHz up to the float rounding
    of the streaming decoder, see ``streaming.py``). ``model`` must carry the name the file gives.
    """
    metadata, offset = read_metadata(data)
    if model.config.name != metadata.model:
        raise EcdcError(f"the file was coded with {metadata.model}, the model given is {model.config.name}")
    check_layout(model.config)
    device = next(model.parameters()).device
    remaining = metadata.audio_length
    with lm_progress(metadata, "LM decoding", show_progress) as bar:
        if model.config.segment_length is None:
            decoder = model.streaming_decoder()
            pieces = (decoder.push(torch.from_numpy(codes)[None].to(device))
                      for _, chunks in iter_segment_chunks(data, metadata, offset, lm, bar, CODE_CHUNK_FRAMES)
                      for codes in chunks)
            source = _then(pieces, decoder.flush)
        else:
            source = _overlap_added(model, iter_segments(data, metadata, offset, lm, bar), device)
        for piece in source:
            piece = piece[0, :, :remaining]
            check_decoded(piece, metadata.audio_length - remaining, model.sample_rate)
            remaining -= piece.shape[-1]
            if piece.shape[-1]:
                yield piece
    if remaining:
        raise EcdcError(f"decoding gave {metadata.audio_length - remaining} samples, the header announces "
                        f"{metadata.audio_length}")


def check_decoded(wav: torch.Tensor, start: int, sample_rate: int) -> None:
    """Refuse decoded audio ``[..., samples]`` (from sample ``start`` on) with NaN or infinite samples: a decoder
    never hands them back. Scales are bounded (``bitstream.check_scale``), so only broken weights can cause them."""
    finite = torch.isfinite(wav)
    if not bool(finite.all()):
        first = start + int((~finite).nonzero()[0, -1])
        raise EcdcError(f"decoding gave a non-finite sample at {first / sample_rate:.3f} s: the model's weights are "
                        "broken (NaN or Inf), or give infinite audio for these codes")


def _then(pieces: Iterator[torch.Tensor], last: Callable[[], torch.Tensor]) -> Iterator[torch.Tensor]:
    """The pieces, then what ``last()`` returns once they are exhausted."""
    yield from pieces
    yield last()


def _overlap_added(model: EncodecModel, segments: Iterator[Segment], device: torch.device) -> Iterator[torch.Tensor]:
    overlap_add = _OverlapAdd(model.config.segment_stride)
    frames = (EncodedFrame(torch.from_numpy(segment.codes)[None].to(device),
                           None if segment.scale is None else torch.tensor(segment.scale, device=device).view(1, 1))
              for segment in segments)
    for run in segment_runs(frames, lambda frame: frame.codes.shape):  # the runs EncodecModel.decode batches
        for decoded in model.decode_segments(run):
            yield overlap_add.add(decoded)
    yield overlap_add.finish()


# ---- writing audio ----------------------------------------------------------------------------------------------
class WavWriter:
    """16-bit PCM written block by block like the official CLI saves: clamped to +-0.99 (with a warning when the
    audio went past it), or, with ``rescale``, scaled down to fit by the file's peak. Rescaling needs the peak of
    the whole file, so the audio first goes to a float32 temporary file beside the output (``PATH.f32.wav``: for the
    hidden temporary output of ``codec.files.replacing``, a name that a later run removes if this one is killed),
    then is scaled into it.
    """

    def __init__(self, path: Union[str, Path], sample_rate: int, channels: int, rescale: bool = False) -> None:
        self.path, self.sample_rate, self.channels, self.rescale = Path(path), sample_rate, channels, rescale
        self.peak = 0.0
        self._float_path: Optional[Path] = None
        if rescale:
            self._float_path = self.path.with_name(self.path.name + ".f32.wav")
            self._handle = sf.SoundFile(str(self._float_path), "w", sample_rate, channels, subtype="FLOAT",
                                        format="WAV")
        else:
            self._handle = self._pcm16()

    def _pcm16(self) -> sf.SoundFile:
        return sf.SoundFile(str(self.path), "w", self.sample_rate, self.channels, subtype="PCM_16")

    def write(self, wav: torch.Tensor) -> None:
        """The next block, ``[channels, samples]``."""
        self.peak = max(self.peak, float(wav.abs().max())) if wav.shape[-1] else self.peak
        if not self.rescale:
            wav = wav.clamp(-CLIP_LIMIT, CLIP_LIMIT)
        self._handle.write(wav.cpu().numpy().T)

    def close(self) -> None:
        self._handle.close()
        if not self.rescale:
            if self.peak > CLIP_LIMIT:
                print(f"Clipping!! max scale {self.peak}, limit is {CLIP_LIMIT}. "
                      "To avoid clipping, use the `-r` option to rescale the output.", file=sys.stderr)
            return
        factor = min(CLIP_LIMIT / self.peak, 1) if self.peak > 0 else None
        try:
            with sf.SoundFile(str(self._float_path)) as floats, self._pcm16() as out:
                for block in floats.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):
                    wav = torch.from_numpy(np.ascontiguousarray(block.T))
                    out.write((wav if factor is None else wav * factor).numpy().T)
        finally:
            self._float_path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Close without finishing (after an error): the temporary file goes, the caller removes the output."""
        self._handle.close()
        if self._float_path is not None:
            self._float_path.unlink(missing_ok=True)


def decompress_to_wav(data: bytes, target: Union[str, Path], model: EncodecModel, lm: Optional[EntropyLM] = None,
                      rescale: bool = False, show_progress: bool = False) -> EcdcMetadata:
    """Decode ``.ecdc`` bytes into a 16-bit WAV file block by block (the official CLI's output)."""
    metadata, _ = read_metadata(data)
    with replacing(Path(target)) as part:
        writer = WavWriter(part, model.sample_rate, model.channels, rescale)
        try:
            for block in decode_blocks(data, model, lm, show_progress):
                writer.write(block)
        except BaseException:
            writer.discard()
            raise
        writer.close()
    return metadata
