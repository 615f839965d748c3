"""Overfitting one clip: the smallest learning test of a training recipe.

A recipe that cannot fit a single short clip with a tiny model cannot train a codec. The tests in
``tests/train/test_learning.py`` and the one-knob diagnosis in ``benchmarks/learning_diagnosis.py`` both train with
the real ``Trainer`` (losses, balancer, RVQ, commitment) on batches of one clip (whole, or random crops of it), then
score that clip with the collapse monitor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ... import audio
from .config import TrainConfig
from .monitor import ProbeMonitor
from .trainer import Trainer

SHIPPED_RECIPE = Path(__file__).resolve().parents[1] / "weights" / "encodec_eval_24khz.train.yaml"

# The tiny model of the learning tests and the diagnosis: SEANet at 8 filters with the full 320x hop, a 32-dim latent,
# no LSTM, and eight 16-entry codebooks (4 bits each: 0.3 kbps per codebook at 75 Hz), so that one codebook cannot
# carry a 1 s clip and quality has room to rise with the bandwidth; small enough to train on one CPU thread in tests.
TINY_MODEL = {"n_filters": 8, "dimension": 32, "lstm": 0, "bins": 16, "target_bandwidths": [0.3, 2.4],
              "threshold_ema_dead_code": 0.1}
TINY_BATCH = {"batch_size": 4, "segment_seconds": 0.25, "log_every": 1000, "checkpoint_every": 100_000}


def load_clip(path: Path | str, seconds: float, offset_seconds: float = 0.75, sample_rate: int = 24000,
              rms: float = 0.1) -> torch.Tensor:
    """``seconds`` of a mono file from ``offset_seconds`` on, at ``sample_rate``, scaled to ``rms``, as [1, T]."""
    wav, sr = audio.load(path)
    start = int(offset_seconds * sample_rate)
    wav = audio.convert(wav, sr, sample_rate, 1)[:, start: start + int(seconds * sample_rate)]
    if wav.shape[-1] < int(seconds * sample_rate):
        raise ValueError(f"{path}: shorter than {offset_seconds + seconds} s")
    clip = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    return clip * (rms / clip.square().mean().sqrt())


def tiny_config(recipe: TrainConfig, **changes: Any) -> TrainConfig:
    """``recipe`` with the tiny model and batch of the learning tests (``TINY_MODEL``, ``TINY_BATCH``), every
    bandwidth of the tiny model trained, and ``changes`` on top."""
    data = recipe.to_dict()
    data.update({"model_overrides": dict(TINY_MODEL), "bandwidths": None, **TINY_BATCH, **changes})
    return TrainConfig.from_dict(data)


def overfit_clip(config: TrainConfig, clip: torch.Tensor, steps: int, out_dir: Path | str,
                 crop_samples: Optional[int] = None, seed: int = 0) -> dict[str, float]:
    """Train ``steps`` steps on ``clip`` ([C, T]) and return the monitor's row (latent statistics, SI-SNR with the
    quantizer bypassed and per bandwidth) measured on the whole clip.

    Each batch holds ``config.batch_size`` copies of the clip, or, with ``crop_samples``, crops of that length at
    random offsets. Crops keep the decoder from memorising one fixed code sequence: it must decode whatever
    window it is given, so the bits it receives matter and quality can rise with the bandwidth."""
    if clip.dim() != 2:
        raise ValueError(f"clip must be [C, T], got shape {tuple(clip.shape)}")
    if crop_samples is not None and not 0 < crop_samples <= clip.shape[-1]:
        raise ValueError(f"crop_samples must be in 1..{clip.shape[-1]}, got {crop_samples}")
    rng = torch.Generator().manual_seed(seed)

    def batches(size: int) -> torch.Tensor:
        if crop_samples is None:
            return clip.unsqueeze(0).expand(size, -1, -1).clone()
        starts = torch.randint(clip.shape[-1] - crop_samples + 1, (size,), generator=rng).tolist()
        return torch.stack([clip[:, start: start + crop_samples] for start in starts])

    trainer = Trainer(config, batches, out_dir)
    trainer.fit(steps=steps)
    return ProbeMonitor(clip.unsqueeze(0), config.resolved_bandwidths()).measure(trainer.model)
