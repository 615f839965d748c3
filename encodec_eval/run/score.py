"""Score one codec, or a model in memory, on a list of items: the harness's rows, without a run folder.

The ablation runner and the training curves score through here, so they share the harness's per-row path
(:func:`encodec_eval.run.evaluate.evaluate`): its conversion to the codec's format, real bitstreams, cropping of
frame padding, metrics with NaN and a reason, and its timing. ``encodec-bench`` calls ``evaluate`` itself, one job
per worker.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from codec.base import Codec
from codec.encodec.codec import EncodecCodec, Weights, state_sha256
from codec.encodec.model import EncodecModel
from encodec_eval.data import Item
from encodec_eval.run.evaluate import RunOptions, evaluate
from encodec_eval.run.plan import Job


class ScoreError(RuntimeError):
    """An item could not be scored (its row's status is not ok); the message names the items and why."""


@dataclass(frozen=True, eq=False)
class AudioItem(Item):
    """Audio already in memory (e.g. probe segments of a training corpus), scored like a data set's file.

    ``path`` says where the audio came from; ``sha256`` is that of the float32 samples (see :meth:`of`)."""

    audio: np.ndarray = field(default_factory=lambda: np.zeros((1, 0), np.float32), repr=False)
    sample_rate: int = 0

    @classmethod
    def of(cls, item_id: str, category: str, audio: np.ndarray, sample_rate: int, source: Path) -> "AudioItem":
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        return cls(item_id, source, category, hashlib.sha256(samples.tobytes()).hexdigest(), samples, sample_rate)

    def load(self) -> tuple[np.ndarray, int]:
        return self.audio, self.sample_rate


def model_codec(model: EncodecModel, kbps: float, label: str) -> EncodecCodec:
    """A model in memory (trained, or being trained) as the harness's EnCodec codec at ``kbps``: the same bitstream,
    decoding and row columns as ``encodec-bench --codecs encodec``. ``label`` names the weights in the rows."""
    model.eval()
    return EncodecCodec(Weights(model, "path", label, state_sha256(model)), kbps)


def score(codec: Codec, spec: str, items: Sequence[Item], options: RunOptions) -> list[dict[str, Any]]:
    """One harness row per item for ``codec`` (``spec`` labels the rows, e.g. ``encodec:disc_msstft@6``).

    Raises ScoreError when any item fails: a table of means over the items that happened to work would hide it."""
    rows = [evaluate(Job(spec, item), options, codec=codec) for item in items]
    failed = [f"{row['item_id']}: {row['status']}: {row['error']}" for row in rows if row["status"] != "ok"]
    if failed:
        raise ScoreError(f"{spec}: {len(failed)} of {len(rows)} items not scored: " + "; ".join(failed))
    return rows
