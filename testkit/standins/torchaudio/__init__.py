"""Test-only stand-in for torchaudio.

The official ``encodec`` package, one of our test oracles, imports torchaudio at import time, and PyPI's torchaudio
for current torch is a CUDA-only build that fails to load here. This package gives the oracle the few functions it
uses (load, save, resampling, the spectrogram of its discriminator), built on soundfile, soxr and torch.stft. It is
put on ``sys.path`` by ``testkit/oracles.py`` only, never by the runtime.
"""

from __future__ import annotations

import soundfile as sf
import torch

from . import functional, transforms  # noqa: F401  (torchaudio.functional and .transforms are attributes)

__version__ = "0.0+standin"


def load(path, **_: object) -> tuple[torch.Tensor, int]:
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), sr


def save(path, wav: torch.Tensor, sample_rate: int, **_: object) -> None:
    sf.write(str(path), wav.detach().cpu().numpy().T, sample_rate, subtype="PCM_16")
