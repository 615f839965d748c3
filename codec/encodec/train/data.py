"""Training segments drawn with the paper's mixing strategy (section 4.1) from a corpus manifest.

Per segment, one of four strategies: a single music source (p 0.32), a single non-music source (p 0.32), a mixture of
two sources from everything (p 0.24), a mixture of three non-music sources (p 0.12). Each file is normalised (RMS
-20 dBFS), each source gets a random gain in [-10, 6] dB, and segments that would clip are rejected and redrawn.
All randomness comes from one numpy Generator whose state goes into checkpoints, so a resumed run draws the same
segments as an uninterrupted one.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ... import audio

MANIFEST_NAME = "manifest.tsv"
MANIFEST_FIELDS = ("path", "category", "source", "package", "original_path", "license", "synthetic",
                   "sample_rate", "channels", "seconds")
STRATEGIES = (("single_music", 0.32), ("single_other", 0.32), ("mix2_all", 0.24), ("mix3_other", 0.12))
TARGET_RMS = 0.1


class CorpusError(ValueError):
    """A training corpus that is missing, empty or unreadable."""


@dataclass(frozen=True)
class CorpusItem:
    path: Path
    category: str  # "speech", "music", "general", ...


def read_manifest(corpus_dir: Path | str) -> list[CorpusItem]:
    """Items listed in ``corpus_dir/manifest.tsv`` (paths relative to the corpus folder)."""
    corpus_dir = Path(corpus_dir)
    manifest = corpus_dir / MANIFEST_NAME
    if not manifest.is_file():
        raise CorpusError(f"{manifest}: no corpus manifest; build one with `python -m codec.encodec.train.corpus "
                          f"build --out {corpus_dir}`")
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    missing = [f for f in ("path", "category") if rows and f not in rows[0]]
    if missing:
        raise CorpusError(f"{manifest}: missing columns {missing}")
    items = [CorpusItem(corpus_dir / row["path"], row["category"]) for row in rows]
    if not items:
        raise CorpusError(f"{manifest}: the corpus lists no files")
    return items


class SegmentSampler:
    """Draws [B, C, T] training batches at the model's rate and channel count."""

    def __init__(self, items: Sequence[CorpusItem], sample_rate: int, channels: int, segment_seconds: float,
                 seed: int = 0, max_tries: int = 50) -> None:
        self.sample_rate, self.channels = sample_rate, channels
        self.length = int(round(segment_seconds * sample_rate))
        self.rng = np.random.default_rng(seed)
        self.max_tries = max_tries
        self.music: list[np.ndarray] = []
        self.other: list[np.ndarray] = []
        for item in items:
            wav = self._load(item.path)
            (self.music if item.category == "music" else self.other).append(wav)
        if not self.music and not self.other:
            raise CorpusError(f"no training file is at least {segment_seconds} s long")

    def _load(self, path: Path) -> np.ndarray:
        wav, sr = audio.load(path)
        wav = audio.convert(wav, sr, self.sample_rate, self.channels)
        rms = float(np.sqrt(np.mean(np.square(wav)))) if wav.size else 0.0
        if wav.shape[-1] < self.length or rms < 1e-5:
            wav = np.zeros((self.channels, 0), np.float32)
        else:
            wav = wav * (TARGET_RMS / rms)
        return np.ascontiguousarray(wav, dtype=np.float32)

    def _crop(self, pool: list[np.ndarray]) -> np.ndarray:
        usable = [w for w in pool if w.shape[-1] >= self.length]
        wav = usable[self.rng.integers(len(usable))]
        start = self.rng.integers(wav.shape[-1] - self.length + 1)
        gain = 10 ** (self.rng.uniform(-10.0, 6.0) / 20)
        return wav[:, start: start + self.length] * gain

    def _pools(self, strategy: str) -> tuple[list[np.ndarray], int]:
        music = [w for w in self.music if w.shape[-1]]
        other = [w for w in self.other if w.shape[-1]]
        everything = music + other
        # When a category is missing (a tiny corpus), fall back to whatever there is.
        table = {"single_music": (music or other, 1), "single_other": (other or music, 1),
                 "mix2_all": (everything, 2), "mix3_other": (other or music, 3)}
        return table[strategy]

    def segment(self) -> np.ndarray:
        """One [C, T] segment; redrawn while it clips or is silent."""
        names = [s for s, _ in STRATEGIES]
        probs = np.array([p for _, p in STRATEGIES])
        for _ in range(self.max_tries):
            strategy = names[self.rng.choice(len(names), p=probs / probs.sum())]
            pool, count = self._pools(strategy)
            if not pool:
                raise CorpusError("the corpus has no file long enough for one training segment")
            mix = sum(self._crop(pool) for _ in range(count))
            peak = float(np.abs(mix).max())
            if peak < 1.0 and float(np.sqrt(np.mean(np.square(mix)))) > 1e-4:
                return mix.astype(np.float32)
        raise CorpusError(f"no usable segment in {self.max_tries} draws (every draw clipped or was silent)")

    def batch(self, batch_size: int) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.segment() for _ in range(batch_size)]))

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


PROBES_PER_CATEGORY = 6
PROBE_SECONDS = 2.0
PROBE_SEED = 1234


def probe_segments(items: Sequence[CorpusItem], sample_rate: int, channels: int = 1,
                   per_category: int = PROBES_PER_CATEGORY, seconds: float = PROBE_SECONDS,
                   seed: int = PROBE_SEED) -> dict[str, np.ndarray]:
    """Fixed probe segments ``[per_category, C, T]`` per corpus category, drawn with the training mix (seed fixed), so
    learning curves and the collapse monitor of every run score the same audio."""
    rng = np.random.default_rng(seed)
    probes = {}
    for category in sorted({item.category for item in items}):
        pool = [item for item in items if item.category == category]
        pool = [pool[i] for i in rng.permutation(len(pool))[:40]]
        sampler = SegmentSampler(pool, sample_rate, channels, seconds, seed=seed)
        probes[category] = np.stack([sampler.segment() for _ in range(per_category)])
    return probes
