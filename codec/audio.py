"""Audio I/O, resampling and channel conversion, in one place.

soundfile reads and writes, soxr resamples: neither needs torchaudio, whose current PyPI wheels are CUDA-only and
whose I/O moved to torchcodec. Audio is ``float32`` shaped ``[channels, samples]`` throughout the project. Both are
imported where they are used, so that models run where they are not installed (a GPU machine with audio in memory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


class AudioError(ValueError):
    """Audio that cannot be read, or that is not fit for the operation asked of it."""


def load(path: Union[str, Path]) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``[channels, samples]`` and its sample rate."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{path}: cannot read audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    return np.ascontiguousarray(data.T), int(sr)


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


def _as_numpy(wav: ArrayLike) -> np.ndarray:
    if isinstance(wav, torch.Tensor):
        return wav.detach().cpu().numpy().astype(np.float32, copy=False)
    return np.asarray(wav, dtype=np.float32)
