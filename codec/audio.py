"""Audio I/O, resampling and channel conversion, in one place.

soundfile reads and writes, soxr resamples: neither needs torchaudio, whose current PyPI wheels are CUDA-only and
whose I/O moved to torchcodec. Audio is ``float32`` shaped ``[channels, samples]`` throughout the project. Both are
imported where they are used, so that models run where they are not installed (a GPU machine with audio in memory).

Reading refuses what is not audio on the ±1 full scale rather than passing it on: NaN or infinite samples, and
samples beyond ±``MAX_PEAK`` (``check_peak``). Clipping those would hide the problem and turn the file into a
square wave that every codec and metric then scores as if it were the recording.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Union

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


class AudioError(ValueError):
    """Audio that cannot be read, or that is not fit for the operation asked of it."""


def load(path: Union[str, Path]) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``[channels, samples]`` and its sample rate.

    AudioError, naming the file once and the cause, when it cannot be opened (``check_readable``), cannot be decoded
    (``read_error``), holds no samples, or holds NaN, infinite or out-of-scale samples (``check_peak``: refused, not
    clipped).
    """
    path = Path(path)
    check_readable(path)
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise read_error(path, exc) from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    check_peak(data, str(path))
    return np.ascontiguousarray(data.T), int(sr)


def check_readable(path: Path) -> None:
    """AudioError with the OS's reason ("permission denied", "is a symlink loop", "does not exist", ...) when
    ``path`` cannot be opened; libsndfile would say "System error." for most of these."""
    reason = why_unreadable(path)
    if reason is not None:
        raise AudioError(f"{path}: {'no such audio file' if reason == MISSING else reason}")


def read_error(path: Path, exc: Exception) -> AudioError:
    """The AudioError for a readable file that soundfile cannot decode, with libsndfile's reason without the path
    it repeats ("Error opening '...': Format not recognised.")."""
    if path.stat().st_size == 0:
        return AudioError(f"{path}: the file is empty (0 bytes)")
    reason = getattr(exc, "error_string", None) or str(exc)
    return AudioError(f"{path}: cannot read audio ({reason.rstrip('.')})")


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
