"""Training segments drawn with the paper's mixing strategy (section 4.1) from a corpus manifest.

Per segment, one of four strategies: a single music source (p 0.32), a single non-music source (p 0.32), a mixture of
two sources from everything (p 0.24), a mixture of three non-music sources (p 0.12). Each file is normalised (RMS
-20 dBFS), each source gets a random gain in [-10, 6] dB, and segments that would clip are rejected and redrawn.
All randomness comes from one numpy Generator whose state goes into checkpoints, so a resumed run draws the same
segments as an uninterrupted one.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

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


class BatchLoader:
    """Training batches drawn by background processes (``num_workers``), pinned and prefetched, in a fixed order.

    Batch k is drawn from its own generator, seeded ``(seed, k)``, so the batches do not depend on how many workers
    draw them or in which order they finish, and a resumed run continues from the next batch index (its
    ``state_dict``). Call it like ``SegmentSampler.batch``.
    """

    def __init__(self, sampler: SegmentSampler, batch_size: int, num_workers: int, seed: int = 0,
                 pin_memory: bool = False, prefetch_factor: int = 4) -> None:
        if num_workers < 1:
            raise ValueError(f"BatchLoader needs at least one worker, got {num_workers}; draw in the loop instead")
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.prefetch_factor = prefetch_factor
        self.draws = _SeededBatches(sampler, batch_size, seed)
        self.next_index = 0
        self._iterator: Optional[Iterator[torch.Tensor]] = None

    def __call__(self, batch_size: int) -> torch.Tensor:
        if batch_size != self.batch_size:
            raise ValueError(f"this loader draws batches of {self.batch_size}, asked for {batch_size}")
        if self._iterator is None:
            loader = torch.utils.data.DataLoader(
                self.draws, batch_size=None, sampler=itertools.count(self.next_index), num_workers=self.num_workers,
                pin_memory=self.pin_memory, prefetch_factor=self.prefetch_factor, persistent_workers=False)
            self._iterator = iter(loader)
        batch = next(self._iterator)
        self.next_index += 1
        return batch

    def state_dict(self) -> dict:
        return {"next_batch": self.next_index}

    def load_state_dict(self, state: dict) -> None:
        if "next_batch" not in state:
            raise ValueError("this sampler state comes from a run that drew batches in the loop (num_workers 0); "
                             "resume it with num_workers 0")
        self.next_index = int(state["next_batch"])
        self._iterator = None  # restart the workers at the saved index


class _SeededBatches(torch.utils.data.Dataset):
    """Batch k of a ``SegmentSampler``, drawn from a generator seeded (seed, k) (in whichever worker asks)."""

    def __init__(self, sampler: SegmentSampler, batch_size: int, seed: int) -> None:
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed

    def __getitem__(self, index: int) -> torch.Tensor:
        self.sampler.rng = np.random.default_rng([self.seed, index])
        return self.sampler.batch(self.batch_size)


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
