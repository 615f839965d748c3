"""The ``.ecdc`` file format of the official EnCodec package, read and written byte for byte (described in full in
``docs/ecdc-format.md``).

Layout: ``ECDC``, version byte 0, big-endian uint32 length, JSON metadata ``{"m", "al", "nc", "lm"}``; then one
stream per model segment (one at 24 kHz, one per 1 s segment at 48 kHz): a big-endian float32 scale when the model
normalizes, then the segment's codes, either bit-packed (10 bits each, time-major, LSB-first) or arithmetic-coded
with the LM. Streams have no length fields: each reader consumes exactly what its writer produced.

The layout lives here once: the header (``write_header`` / ``read_metadata``) and each segment (``SegmentWriter``,
whole or as the codes arrive; ``iter_segments``, or ``iter_segment_chunks`` for codes read piece by piece) serve
both whole files (``write_ecdc`` / ``read_ecdc``) and the streaming path (``file_stream``).

Everything that can go wrong with a file raises ``EcdcError``. Sizes come from the header, so they are checked
before anything is allocated: the metadata is capped, the audio length and codebook count are bounded, bit-packed
payloads are checked against the bytes actually present, and an LM-coded claim against the most frames its payload
can hold (``entropy.max_symbols``), again frame by frame while decoding, so that a few hostile bytes cannot keep the
LM busy for minutes. Scales outside what an encoder writes for audio within ±``audio.MAX_PEAK`` are refused, so a
file cannot turn valid codes into huge or infinite samples. ``read_file`` reads the header before anything else, and
then no more bytes than the header's claim can use.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from codec.audio import MAX_PEAK
from codec.encodec.config import EncodecConfig
from codec.encodec.entropy import (
    ArithmeticCodingError,
    ArithmeticDecoder,
    ArithmeticEncoder,
    max_stream_bytes,
    max_symbols,
    min_bits_per_symbol,
    quantized_cdfs,
)
from codec.encodec.lm import EntropyLM, lm_threads
from codec.encodec.lm_layerwise import LayerwiseStream, layerwise_probabilities
from codec.encodec.model import segment_runs

MAGIC = b"ECDC"
VERSION = 0
_HEADER = struct.Struct("!4sBI")
_SCALE = struct.Struct("!f")
_READ_BYTES = 1 << 20
MAX_METADATA_BYTES = 1 << 16  # real metadata is ~60 bytes; a bigger claim is a broken or hostile file
MAX_AUDIO_LENGTH = 2**31 - 1  # samples per channel (12 h at 48 kHz); the reference has no limit
#: A segment's scale is the RMS of its audio plus 1e-8 (float32), as the encoder computes it: at least 1e-8 (silence),
#: at most ``MAX_PEAK`` for audio within ±``MAX_PEAK``, the most any command reads (+0.01 % for float32 rounding).
#: Beyond, valid codes decode to samples up to 3.4e38 or infinite ones.
MIN_SCALE = float(np.float32(1e-8))
MAX_SCALE = float(np.float32(MAX_PEAK * (1 + 1e-4)))
#: Why an LM-coded stream that the header accepted fails to decode: the decoder must see the encoder's probabilities.
LM_MISMATCH_CAUSES = ("Likely causes: the file is corrupt or truncated, or it was LM-coded with other LM weights "
                      "(see --lm-weights), or by a program whose LM arithmetic differs from this one's (the official "
                      "package at more than one torch thread, another torch or MKL build, another CPU type)")

#: The models a file can name, and the layout each implies. The official package knows the first two; files naming
#: the project's own model (weights shipped in ``codec/encodec/weights/``) decode only with encodec-eval.
MODELS: dict[str, Callable[[], EncodecConfig]] = {
    "encodec_24khz": EncodecConfig.encodec_24khz,
    "encodec_48khz": EncodecConfig.encodec_48khz,
    "encodec_eval_24khz": EncodecConfig.encodec_eval_24khz,
}


class EcdcError(ValueError):
    """An ``.ecdc`` file that cannot be read or written: bad header, metadata, sizes or payload."""


@dataclass(frozen=True)
class EcdcMetadata:
    """The JSON header: model name, samples per channel, codebooks coded, LM coding or not."""

    model: str
    audio_length: int
    num_codebooks: int
    use_lm: bool

    @property
    def config(self) -> EncodecConfig:
        return MODELS[self.model]()

    def to_json(self) -> bytes:
        """The reference's ``json.dumps`` defaults and key order, for byte-identical files."""
        return json.dumps({"m": self.model, "al": self.audio_length, "nc": self.num_codebooks,
                           "lm": self.use_lm}).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> "EcdcMetadata":
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise EcdcError(f"the metadata is not valid UTF-8 JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise EcdcError(f"the metadata must be a JSON object, got {type(data).__name__}")
        missing = [key for key in ("m", "al", "nc", "lm") if key not in data]
        if missing:
            raise EcdcError(f"the metadata lacks {', '.join(missing)}")
        model, length, codebooks, use_lm = data["m"], data["al"], data["nc"], data["lm"]
        if not isinstance(model, str) or model not in MODELS:
            raise EcdcError(f"unknown model {model!r} in the metadata; known: {', '.join(MODELS)}")
        if not _is_int(length) or not 1 <= length <= MAX_AUDIO_LENGTH:
            raise EcdcError(f"audio length {length!r} is not an integer in 1..{MAX_AUDIO_LENGTH}")
        n_q = MODELS[model]().n_q
        if not _is_int(codebooks) or not 1 <= codebooks <= n_q:
            raise EcdcError(f"codebook count {codebooks!r} is not an integer in 1..{n_q} for {model}")
        if not isinstance(use_lm, bool):
            raise EcdcError(f"'lm' must be true or false, got {use_lm!r}")
        return cls(model, length, codebooks, use_lm)


@dataclass
class Segment:
    """One coded segment: codes [K, frames] (int64) and its scale (None unless the model normalizes)."""

    codes: np.ndarray
    scale: Optional[float]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_layout(config: EncodecConfig) -> None:
    """Refuse a model whose file layout differs from the official model of the same name (the file only names it)."""
    if config.name not in MODELS:
        raise EcdcError(f"the .ecdc format only names {', '.join(MODELS)}; cannot write a file for {config.name!r}")
    preset = MODELS[config.name]()
    fields = ("sample_rate", "channels", "normalize", "segment", "overlap", "bins", "hop_length", "n_q")
    differs = [f for f in fields if getattr(config, f) != getattr(preset, f)]
    if differs:
        raise EcdcError(f"a model named {config.name} must match its official layout; differs in {', '.join(differs)}")


def check_scale(scale: float, where: str) -> None:
    """Refuse a segment scale outside ``MIN_SCALE``..``MAX_SCALE`` (NaN and infinities too), naming ``where``."""
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise EcdcError(f"{where}: scale {scale:.6g} is outside {MIN_SCALE:.3g}..{MAX_SCALE:.6g}, the RMS range an "
                        f"encoder writes for audio within ±{MAX_PEAK:g} (full scale is ±1)")


def segment_frame_counts(config: EncodecConfig, audio_length: int) -> Iterator[int]:
    """Code frames of each segment, with the integer formula (PyPI 0.1.1's float formula is off by one sometimes)."""
    length = config.segment_length or audio_length
    stride = config.segment_stride or audio_length
    for offset in range(0, audio_length, stride):
        samples = min(audio_length - offset, length)
        yield (samples * config.frame_rate + config.sample_rate - 1) // config.sample_rate


# ---- bit packing ------------------------------------------------------------------------------------------------
def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Codes [K, T] as ``bits``-bit values in time-major order, LSB-first, the last byte padded with zeros."""
    values = np.ascontiguousarray(codes.T, dtype=np.int64).reshape(-1)
    if values.size and (values.min() < 0 or values.max() >= 1 << bits):
        raise EcdcError(f"codes must lie in 0..{(1 << bits) - 1} to be packed in {bits} bits")
    bit_array = ((values[:, None] >> np.arange(bits)) & 1).astype(np.uint8)
    return np.packbits(bit_array.reshape(-1), bitorder="little").tobytes()


def unpack_codes(data: memoryview, offset: int, num_codebooks: int, frames: int, bits: int) -> tuple[np.ndarray, int]:
    """Codes [K, T] packed at ``offset``; returns them and the offset after them."""
    size = (num_codebooks * frames * bits + 7) // 8
    if offset + size > len(data):
        raise EcdcError(f"the file ends early: {frames} frames of {num_codebooks} codebooks need {size} bytes at "
                        f"offset {offset}, {len(data) - offset} are left")
    bit_array = np.unpackbits(np.frombuffer(data, np.uint8, size, offset), bitorder="little")
    bit_array = bit_array[: num_codebooks * frames * bits].reshape(-1, bits).astype(np.int64)
    values = bit_array @ (np.int64(1) << np.arange(bits, dtype=np.int64))
    return values.reshape(frames, num_codebooks).T.copy(), offset + size


# ---- LM coding --------------------------------------------------------------------------------------------------
def lm_encode(lm: EntropyLM, codes: np.ndarray, progress: Optional[tqdm] = None) -> bytes:
    """Arithmetic-code codes [K, T] with the probabilities the decoder will compute frame by frame."""
    return lm_encode_segments(lm, [codes], progress)[0]


def lm_encode_segments(lm: EntropyLM, segments: Sequence[np.ndarray], progress: Optional[tqdm] = None) -> list[bytes]:
    """Arithmetic-code the codes [K, T] of segments of one shape, each an LM stream of its own, evaluated together
    layer by layer over chunks of frames with the bits of frame-by-frame evaluation (``lm_layerwise``)."""
    encoders = [ArithmeticEncoder() for _ in segments]
    stacked = np.ascontiguousarray(np.stack(segments), dtype=np.int64)
    codes_t = torch.from_numpy(stacked).to(lm.emb[0].weight.device)
    start = 0
    with lm_threads():  # the decoder's thread count, whatever this process's
        for probas in layerwise_probabilities(lm, codes_t):  # [C, B, K, card]
            count = probas.shape[0]
            for encoder, codes, cdfs in zip(encoders, stacked, quantized_cdfs(probas.transpose(0, 1))):
                encoder.push(codes[:, start:start + count].T, cdfs)
            start += count
            if progress is not None:
                progress.update(count * len(segments))
    return [encoder.finish() for encoder in encoders]


def lm_decode(lm: EntropyLM, data: memoryview, offset: int, num_codebooks: int, frames: int,
              progress: Optional[tqdm] = None) -> tuple[np.ndarray, int]:
    """Codes [K, T] arithmetic-coded at ``offset``; returns them and the offset after their stream."""
    decoder = ArithmeticDecoder(np.frombuffer(data, np.uint8, len(data) - offset, offset))
    stream = LayerwiseStream(lm, num_codebooks)
    previous = torch.zeros(1, num_codebooks, 1, dtype=torch.long, device=lm.emb[0].weight.device)
    decoded: list[np.ndarray] = []  # grows with what the data really holds, whatever the header claims
    with lm_threads():  # the encoder's thread count, whatever this process's
        for t in range(frames):
            if (frames - t) * num_codebooks > decoder.max_symbols_left(lm.card):
                raise EcdcError(f"LM-coded frame {t} of {frames}: the {decoder.bits_left} bits left cannot hold the "
                                f"{frames - t} frames still to come (each code costs at least "
                                f"{min_bits_per_symbol(lm.card):.3g} bits); the file is corrupt or truncated")
            try:
                codes = decoder.pull(quantized_cdfs(stream.advance(previous)))
            except ArithmeticCodingError as exc:
                raise EcdcError(f"LM-coded frame {t} of {frames}: {exc}. {LM_MISMATCH_CAUSES}") from exc
            decoded.append(codes)
            previous = 1 + torch.from_numpy(codes).to(previous.device).view(1, num_codebooks, 1)
            if progress is not None:
                progress.update(1)
    return np.stack(decoded, axis=1), offset + decoder.bytes_read


# ---- segment by segment ------------------------------------------------------------------------------------------
def write_header(metadata: EcdcMetadata) -> bytes:
    """Magic, version, metadata length and metadata: everything before the first segment."""
    raw = metadata.to_json()
    return _HEADER.pack(MAGIC, VERSION, len(raw)) + raw


def _byte_run(num_codebooks: int, bits: int) -> int:
    """The fewest frames whose packed codes fill whole bytes: runs of a multiple of it pack independently."""
    return 8 // math.gcd(num_codebooks * bits, 8)


def lm_progress(metadata: EcdcMetadata, desc: str, show_progress: bool) -> tqdm:
    """A bar over the file's code frames, shown only for LM coding (the slow part)."""
    shown = metadata.use_lm and show_progress
    total = sum(segment_frame_counts(metadata.config, metadata.audio_length)) if shown else None
    return tqdm(total=total, unit="frame", desc=desc, disable=None if shown else True)  # None: only on a terminal


class SegmentWriter:
    """The bytes of a file's segments, LM-coded or bit-packed: ``write_segment`` for a whole one, or ``begin``,
    ``codes`` any number of times and ``end`` as the codes arrive, so a streaming encoder needs not hold a segment.
    Bit-packed codes go out in byte-aligned runs of frames, the bytes of packing the segment at once; LM-coded ones
    at ``end``, as the LM coder takes a segment whole."""

    def __init__(self, metadata: EcdcMetadata, lm: Optional[EntropyLM] = None,
                 progress: Optional[tqdm] = None) -> None:
        if metadata.use_lm and lm is None:
            raise EcdcError("LM coding was asked for but no LM was given")
        self.metadata, self.lm, self.progress = metadata, lm, progress
        self.config = metadata.config
        self.run = _byte_run(metadata.num_codebooks, self.config.bits_per_codebook)
        self.pending: list[np.ndarray] = []

    def begin(self, scale: Optional[float]) -> bytes:
        """The segment's scale, when the model stores one."""
        if not self.config.normalize:
            return b""
        if scale is None:
            raise EcdcError(f"{self.metadata.model} stores a scale per segment, got None")
        check_scale(scale, "cannot write the segment")
        return _SCALE.pack(scale)

    def codes(self, codes: np.ndarray) -> bytes:
        """More frames ``[K, n]`` of the segment; returns the bytes they complete."""
        self.pending.append(codes)
        if self.metadata.use_lm:
            return b""
        held = np.concatenate(self.pending, axis=1) if len(self.pending) > 1 else self.pending[0]
        ready = held.shape[1] - held.shape[1] % self.run
        self.pending = [held[:, ready:]] if ready < held.shape[1] else []
        return pack_codes(held[:, :ready], self.config.bits_per_codebook) if ready else b""

    def end(self) -> bytes:
        """The rest of the segment's codes."""
        if not self.pending:
            return b""
        held, self.pending = np.concatenate(self.pending, axis=1), []
        if self.metadata.use_lm:
            return lm_encode(self.lm, held, self.progress)
        return pack_codes(held, self.config.bits_per_codebook)

    def write_segment(self, segment: Segment) -> bytes:
        """A whole segment's bytes: its scale (when the model stores one), then its codes."""
        return self.begin(segment.scale) + self.codes(segment.codes) + self.end()

    def write_segments(self, segments: Sequence[Segment]) -> bytes:
        """The bytes of whole segments; LM coding evaluates the streams of equal-length segments together."""
        if not self.metadata.use_lm or len(segments) < 2 or self.pending:
            return b"".join(self.write_segment(segment) for segment in segments)
        out = []
        for run in segment_runs(segments, lambda segment: segment.codes.shape):
            streams = lm_encode_segments(self.lm, [segment.codes for segment in run], self.progress)
            out += [self.begin(segment.scale) + stream for segment, stream in zip(run, streams)]
        return b"".join(out)


def iter_segment_chunks(data: bytes, metadata: EcdcMetadata, offset: int, lm: Optional[EntropyLM] = None,
                        progress: Optional[tqdm] = None, chunk_frames: Optional[int] = None,
                        ) -> Iterator[tuple[Optional[float], Iterator[np.ndarray]]]:
    """Each segment's scale and its codes ``[K, n]`` in runs of about ``chunk_frames`` frames (``None``: one run
    per segment; an LM-coded segment always comes whole), read from ``offset`` only as the caller gets to them.

    The LM is checked at once, and so is the length a bit-packed file claims: its payload size follows from the
    header, so a file too short for it fails here rather than after minutes of decoding. Every size is checked
    against the bytes present before anything is allocated.
    """
    if metadata.use_lm:
        if lm is None:
            raise EcdcError("the file is LM-coded; an LM is needed to read it")
        if lm.n_q < metadata.num_codebooks or lm.card != metadata.config.bins:
            raise EcdcError(f"the LM ({lm.n_q} codebooks of {lm.card}) cannot decode {metadata.num_codebooks} "
                            f"codebooks of {metadata.model}")
        counts = list(segment_frame_counts(metadata.config, metadata.audio_length))
        coded = len(data) - offset - (_SCALE.size * len(counts) if metadata.config.normalize else 0)
        held = max_symbols(8 * coded, lm.card, len(counts)) // metadata.num_codebooks
        if sum(counts) > held:
            seconds = metadata.audio_length / metadata.config.sample_rate
            raise EcdcError(f"the file ends early: its header claims {seconds:.1f} s of audio ({sum(counts)} frames "
                            f"of {metadata.num_codebooks} codebooks), and its {len(data) - offset} bytes of LM-coded "
                            f"codes can hold at most {held} frames")
    else:
        needed = packed_payload_bytes(metadata)
        if offset + needed > len(data):
            seconds = metadata.audio_length / metadata.config.sample_rate
            raise EcdcError(f"the file ends early: its header claims {seconds:.1f} s of audio, whose {needed} bytes of "
                            f"codes would follow the header; {len(data) - offset} bytes do")
    return _segment_chunks(memoryview(data), metadata, offset, lm, progress, chunk_frames)


def packed_file_bytes(metadata: EcdcMetadata) -> int:
    """Size of the bit-packed file (no LM) of the audio that ``metadata`` describes: what LM coding has to beat."""
    return len(write_header(dataclasses.replace(metadata, use_lm=False))) + packed_payload_bytes(metadata)


def packed_payload_bytes(metadata: EcdcMetadata) -> int:
    """Bytes after the header of a bit-packed file: each segment's scale (when the model stores one) and codes."""
    config = metadata.config
    scale = _SCALE.size if config.normalize else 0
    bits = metadata.num_codebooks * config.bits_per_codebook
    return sum(scale + (frames * bits + 7) // 8 for frames in segment_frame_counts(config, metadata.audio_length))


def _segment_chunks(view: memoryview, metadata: EcdcMetadata, offset: int, lm: Optional[EntropyLM],
                    progress: Optional[tqdm], chunk_frames: Optional[int],
                    ) -> Iterator[tuple[Optional[float], Iterator[np.ndarray]]]:
    config = metadata.config
    bits, n_q = config.bits_per_codebook, metadata.num_codebooks
    run = _byte_run(n_q, bits)

    def codes_of(frames: int) -> Iterator[np.ndarray]:
        nonlocal offset
        if metadata.use_lm:
            codes, offset = lm_decode(lm, view, offset, n_q, frames, progress)
            yield codes
            return
        chunk = frames if chunk_frames is None else max(run, chunk_frames - chunk_frames % run)
        for start in range(0, frames, chunk):
            codes, offset = unpack_codes(view, offset, n_q, min(chunk, frames - start), bits)
            yield codes

    for index, frames in enumerate(segment_frame_counts(config, metadata.audio_length)):
        scale = None
        if config.normalize:
            if offset + _SCALE.size > len(view):
                raise EcdcError(f"the file ends early: the scale of segment {index} is missing at offset {offset}")
            (scale,) = _SCALE.unpack_from(view, offset)
            check_scale(scale, f"segment {index} (offset {offset})")
            offset += _SCALE.size
        chunks = codes_of(frames)
        yield scale, chunks
        deque(chunks, maxlen=0)  # codes the caller left unread: the next segment starts after them


def iter_segments(data: bytes, metadata: EcdcMetadata, offset: int, lm: Optional[EntropyLM] = None,
                  progress: Optional[tqdm] = None) -> Iterator[Segment]:
    """Each coded segment from ``offset`` on, read as the caller gets to it (the checks of ``iter_segment_chunks``,
    the LM's at once)."""
    return (Segment(next(chunks), scale)
            for scale, chunks in iter_segment_chunks(data, metadata, offset, lm, progress))


# ---- whole files ------------------------------------------------------------------------------------------------
def write_ecdc(metadata: EcdcMetadata, segments: Sequence[Segment], lm: Optional[EntropyLM] = None,
               show_progress: bool = False) -> bytes:
    """The bytes of an ``.ecdc`` file for coded segments (``lm`` is required when ``metadata.use_lm``)."""
    expected = list(segment_frame_counts(metadata.config, metadata.audio_length))
    shapes = [s.codes.shape for s in segments]
    if shapes != [(metadata.num_codebooks, frames) for frames in expected]:
        raise EcdcError(f"segments shaped {shapes} do not fit {metadata}: expected {metadata.num_codebooks} codebooks "
                        f"and frames {expected}")
    with lm_progress(metadata, "LM coding", show_progress) as bar:
        writer = SegmentWriter(metadata, lm, bar)
        return write_header(metadata) + writer.write_segments(segments)


def _metadata_size(data: bytes) -> int:
    """The metadata length the fixed header announces, once magic, version and length are checked."""
    if len(data) < _HEADER.size:
        raise EcdcError(f"not an .ecdc file: {len(data)} bytes is shorter than the {_HEADER.size}-byte header")
    magic, version, size = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise EcdcError(f"not an .ecdc file: magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise EcdcError(f"unsupported .ecdc version {version}; this reader knows version {VERSION}")
    if size > MAX_METADATA_BYTES:
        raise EcdcError(f"metadata length {size} bytes exceeds the {MAX_METADATA_BYTES}-byte limit")
    return size


def read_metadata(data: bytes) -> tuple[EcdcMetadata, int]:
    """The validated metadata and the offset of the first segment."""
    size = _metadata_size(data)
    end = _HEADER.size + size
    if end > len(data):
        present = len(data) - _HEADER.size
        raise EcdcError(f"the file ends inside its metadata ({size} bytes announced, {present} present)")
    return EcdcMetadata.from_json(bytes(data[_HEADER.size:end])), end


def max_payload_bytes(metadata: EcdcMetadata) -> int:
    """The most bytes after the header that a decoder of this file can read: the exact payload of bit-packed codes;
    for LM-coded ones, each segment's scale and at most 24 bits a code (``entropy.max_stream_bytes``)."""
    if not metadata.use_lm:
        return packed_payload_bytes(metadata)
    config = metadata.config
    scale = _SCALE.size if config.normalize else 0
    return sum(scale + max_stream_bytes(frames * metadata.num_codebooks)
               for frames in segment_frame_counts(config, metadata.audio_length))


def read_file(handle: BinaryIO) -> bytes:
    """The bytes of an ``.ecdc`` file that its decoding needs, read header first from a binary file.

    Nothing past the 9-byte header is read before its magic, version and metadata length are checked, and nothing
    past the metadata before it is validated; then at most ``max_payload_bytes``, whatever follows. A large file that
    is not an ``.ecdc`` (or whose tail is not its payload) fails or stops there, in memory and time of its claim.
    """
    head = handle.read(_HEADER.size)
    head += handle.read(_metadata_size(head))
    metadata, _ = read_metadata(head)
    data, limit = bytearray(head), len(head) + max_payload_bytes(metadata)
    while len(data) < limit:  # in pieces: one read of the limit would allocate it whole, however short the file
        piece = handle.read(min(_READ_BYTES, limit - len(data)))
        if not piece:
            break
        data += piece
    return bytes(data)


def read_ecdc(data: bytes, lm: Optional[EntropyLM] = None,
              show_progress: bool = False) -> tuple[EcdcMetadata, list[Segment]]:
    """Parse a whole file into its metadata and coded segments (``lm`` is required for LM-coded files)."""
    metadata, offset = read_metadata(data)
    with lm_progress(metadata, "LM decoding", show_progress) as bar:
        return metadata, list(iter_segments(data, metadata, offset, lm, bar))
