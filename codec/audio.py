"""Audio I/O, resampling and channel conversion, in one place.

soundfile reads and writes, soxr resamples: neither needs torchaudio, whose current PyPI wheels are CUDA-only and
whose I/O moved to torchcodec. Audio is ``float32`` shaped ``[channels, samples]`` throughout the project. Both are
imported where they are used, so that models run where they are not installed (a GPU machine with audio in memory).

Reading refuses what is not audio on the ±1 full scale rather than passing it on: NaN or infinite samples, and
samples beyond ±``MAX_PEAK`` (``check_peak``). Clipping those would hide the problem and turn the file into a
square wave that every codec and metric then scores as if it were the recording. It also refuses files that are
not what their header says (``open_audio``): a sample rate below ``MIN_SAMPLE_RATE``, a WAV whose data chunk
announces more than the file holds, or a file that ends before the samples its header announces (a truncated FLAC,
Ogg or MP3). What a header claims is never allocated up front: samples are read in blocks, so a FLAC claiming 2^36
samples over half a second costs half a second of memory and fails with a message, not a 256 GiB allocation.
"""

from __future__ import annotations

import math
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
import torch

from codec.files import MISSING, why_unreadable

ArrayLike = Union[np.ndarray, torch.Tensor]
#: The largest sample magnitude accepted when reading. Full scale is ±1; decoders (Vorbis) and float masters may go
#: a little beyond, which passes unchanged as in the official EnCodec. Beyond +20 dB (x10) the samples are not on a ±1
#: scale at all: floats written in 16-bit units (peaks near 32768), or corrupt data (a float WAV peaking at 1e30).
#: File suffixes taken for audio when a folder is searched (the benchmark's data sets, the tokenizer's inputs): the
#: formats libsndfile reads.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")
MAX_PEAK = 10.0
#: The lowest sample rate read as audio. Below it a file is not sound (a 1 Hz "WAV" of 8 samples is 8 seconds long),
#: and converting it to a codec's rate would multiply its samples by thousands.
MIN_SAMPLE_RATE = 1000
#: How far an MP3's decoded length may fall short of the length libsndfile announces: without a Xing/Info header
#: (LAME's library output, for one) that length is an estimate from the bitrate, about 0.5 % off for CBR files.
MP3_LENGTH_TOLERANCE = 0.02
_BLOCK_FRAMES = 1 << 18  # frames read at a time beyond what the header announces, or where it cannot be trusted
_PREALLOCATE_FRAMES = 1 << 25  # at most this much of a header's claim is allocated before the samples are seen
_WAV_DATA_CLAIM = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_UNKNOWN_WAV_LENGTHS = (0, 0xFFFFFFFF)  # what streaming writers put in the data chunk before they know the length


class AudioError(ValueError):
    """Audio that cannot be read, or that is not fit for the operation asked of it."""


def load(path: Union[str, Path]) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``[channels, samples]`` and its sample rate.

    AudioError, naming the file once and the cause, when it cannot be opened (``check_readable``), is not what its
    header says or cannot be decoded (``open_audio``), holds no samples, or holds NaN, infinite or out-of-scale
    samples (``check_peak``: refused, not clipped).
    """
    path = Path(path)
    with open_audio(path) as handle:
        data = _read_all(handle, path)
    check_peak(data, str(path))
    return np.ascontiguousarray(data.T), int(handle.samplerate)


@contextmanager
def open_audio(path: Union[str, Path]) -> Iterator[Any]:
    """An open ``soundfile.SoundFile`` whose header passed the checks of ``load``: readable (``check_readable``),
    decodable (``read_error`` otherwise), at least ``MIN_SAMPLE_RATE``, announcing samples, and, for WAV, no data
    chunk that claims more than the file holds."""
    path = Path(path)
    check_readable(path)
    import soundfile as sf

    try:
        with quiet_decoders():
            handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise read_error(path, exc) from exc
    with handle:
        if handle.samplerate < MIN_SAMPLE_RATE:
            raise AudioError(f"{path}: its sample rate is {handle.samplerate} Hz, below the {MIN_SAMPLE_RATE} Hz "
                             "of any audio: a corrupt header, or not a sound file")
        if handle.frames <= 0:
            raise AudioError(f"{path}: the file holds no samples")
        _check_wav_length(handle, path)
        yield handle


def _check_wav_length(handle: Any, path: Path) -> None:
    """A WAV whose data chunk announces more bytes than follow is truncated, or its header is wrong: libsndfile reads
    what is there and only says so in its log ("data : 3200000 (should be 6400)")."""
    for claimed, present in _WAV_DATA_CLAIM.findall(handle.extra_info):
        claimed, present = int(claimed), int(present)
        if claimed > present and claimed not in _UNKNOWN_WAV_LENGTHS:
            bytes_per_second = present / max(handle.frames, 1) * handle.samplerate
            raise AudioError(f"{path}: its header announces {_duration(claimed / bytes_per_second)} of audio but the "
                             f"file holds {_duration(handle.frames / handle.samplerate)}: it is truncated, or its "
                             "header is wrong")


def _read_all(handle: Any, path: Path) -> np.ndarray:
    """Every frame as float32 ``[frames, channels]``, read in blocks into at most ``_PREALLOCATE_FRAMES`` of the
    announced length at first, so that a header's claim is never allocated before the samples are seen; AudioError
    when the file ends, or decoding fails, well before the frames its header announces."""
    import soundfile as sf

    announced = handle.frames
    data = np.empty((min(announced, _PREALLOCATE_FRAMES), handle.channels), np.float32)
    try:
        with quiet_decoders():
            read = handle.read(out=data).shape[0]
            blocks = [data[:read]]
            while read == data.shape[0] or len(blocks) > 1:  # filled: there may be more (an MP3's length is estimated)
                block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not block.shape[0]:
                    break
                blocks.append(block)
                read += block.shape[0]
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise ends_early(path, announced, handle.samplerate, exc) from exc
    tolerance = MP3_LENGTH_TOLERANCE * announced if handle.format == "MP3" else 0
    if announced - read > tolerance:
        raise ends_early(path, announced, handle.samplerate, held=read)
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def ends_early(path: Path, announced: int, sample_rate: int, exc: Optional[Exception] = None,
               held: Optional[int] = None) -> AudioError:
    """The AudioError of a file that ends before the frames its header announces: after ``held`` frames, or where
    decoding failed with ``exc`` (libsndfile's reason, e.g. "flac decoder lost sync")."""
    claim = f"{path}: its header announces {_duration(announced / sample_rate)} of audio"
    if held is not None:
        return AudioError(f"{claim} but the file holds {_duration(held / sample_rate)}: it is truncated, or its "
                          "header is wrong")
    reason = (getattr(exc, "error_string", None) or str(exc)).rstrip(".")
    return AudioError(f"{claim}, but decoding stopped early ({reason}): it is truncated, or its header is wrong")


@contextmanager
def quiet_decoders() -> Iterator[None]:
    """Send what C libraries print on the process's stderr to /dev/null for the block: libsndfile's MP3 decoder
    (libmpg123) prints "Note: Trying to resync..." and "Warning: Xing stream size off..." lines of its own around the
    one-line error a command prints. Python's ``sys.stderr`` is flushed first; nothing else writes meanwhile."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a daemon): nothing to quieten
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _duration(seconds: float) -> str:
    """``0.500 s``, ``25.0 min``, ``49.7 days``: a duration a reader takes in at a glance."""
    if seconds < 600:
        return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"
    if seconds < 3 * 86400:
        return f"{seconds / 60:.1f} min" if seconds < 36000 else f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def check_readable(path: Path) -> None:
    """AudioError with the OS's reason ("permission denied", "is a symlink loop", "does not exist", ...) when
    ``path`` cannot be opened; libsndfile would say "System error." for most of these."""
    reason = why_unreadable(path)
    if reason is not None:
        raise AudioError(f"{path}: {'no such audio file' if reason == MISSING else reason}")


def read_error(path: Path, exc: Exception) -> AudioError:
    """The AudioError for a readable file that soundfile cannot decode, with libsndfile's reason without the path
    it repeats ("Error opening '...': Format not recognised."). Its "not a regular file (possibly a pipe?)", which
    its MP3 decoder gives for bytes it cannot parse, is replaced: the file was checked to be a regular one."""
    if path.stat().st_size == 0:
        return AudioError(f"{path}: the file is empty (0 bytes)")
    reason = (getattr(exc, "error_string", None) or str(exc)).rstrip(".")
    if "possibly a pipe" in reason or "Format not recognised" in reason:
        reason = "not an audio format libsndfile decodes, or corrupt data"
    return AudioError(f"{path}: cannot read audio ({reason})")


def save(path: Union[str, Path], wav: ArrayLike, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write ``[channels, samples]`` audio; the format follows the file extension (WAV, FLAC, OGG)."""
    path = Path(path)
    data = _as_numpy(wav)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise AudioError(f"{path}: expected audio shaped [channels, samples], got {tuple(data.shape)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    import soundfile as sf

    sf.write(str(path), data.T, int(sample_rate), subtype=subtype)
    return path


def resample(wav: ArrayLike, from_sr: int, to_sr: int) -> ArrayLike:
    """Resample ``[..., samples]`` audio with soxr's high-quality filter; returns the input's type."""
    if from_sr <= 0 or to_sr <= 0:
        raise AudioError(f"sample rates must be positive, got {from_sr} -> {to_sr}")
    if from_sr == to_sr:
        return wav
    is_tensor = isinstance(wav, torch.Tensor)
    data = _as_numpy(wav)
    lead = data.shape[:-1]
    flat = data.reshape(-1, data.shape[-1])
    import soxr

    out = soxr.resample(np.ascontiguousarray(flat.T), from_sr, to_sr, quality="HQ").T
    out = np.ascontiguousarray(out, dtype=np.float32).reshape(*lead, -1)
    if is_tensor:
        return torch.from_numpy(out).to(device=wav.device)
    return out


def convert_channels(wav: ArrayLike, channels: int) -> ArrayLike:
    """Mono to stereo by copying, stereo or more to mono by averaging; ``[..., channels, samples]``."""
    have = wav.shape[-2]
    if have == channels:
        return wav
    if channels == 1:
        return wav.mean(-2, keepdims=True) if isinstance(wav, np.ndarray) else wav.mean(-2, keepdim=True)
    if have == 1:
        reps = [1] * (wav.ndim - 2) + [channels, 1]
        return np.tile(wav, reps) if isinstance(wav, np.ndarray) else wav.repeat(*reps)
    raise AudioError(f"cannot convert {have} channels to {channels}")


def convert(wav: ArrayLike, from_sr: int, to_sr: int, channels: int) -> ArrayLike:
    """Resample and change the channel count, in the order that costs least."""
    if wav.shape[-2] > channels:
        return resample(convert_channels(wav, channels), from_sr, to_sr)
    return convert_channels(resample(wav, from_sr, to_sr), channels)


def check_finite(wav: ArrayLike, what: str = "audio") -> None:
    """Reject empty audio and NaN or Inf samples with a message that says which."""
    if wav.shape[-1] == 0:
        raise AudioError(f"{what} is empty (0 samples)")
    finite = torch.isfinite(wav).all() if isinstance(wav, torch.Tensor) else np.isfinite(wav).all()
    if not bool(finite):
        raise AudioError(f"{what} contains NaN or Inf samples")


def check_peak(wav: np.ndarray, what: str = "audio") -> None:
    """Refuse NaN or infinite samples, and samples beyond ±``MAX_PEAK``, naming the peak: such files are not audio
    on the ±1 scale the codecs and metrics assume, and clipping them would score a square wave as the recording."""
    if wav.size == 0:
        return
    peak = float(np.max(np.abs(wav)))
    if not math.isfinite(peak):
        raise AudioError(f"{what} contains NaN or Inf samples")
    if peak > MAX_PEAK:
        raise AudioError(f"{what} has samples up to {peak:.3g} in magnitude, beyond the ±{MAX_PEAK:g} accepted (full "
                         "scale is ±1): corrupt data, or floats in 16-bit units; scale it to ±1 first")


def _as_numpy(wav: ArrayLike) -> np.ndarray:
    if isinstance(wav, torch.Tensor):
        return wav.detach().cpu().numpy().astype(np.float32, copy=False)
    return np.asarray(wav, dtype=np.float32)
