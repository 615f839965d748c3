"""What a metric is: a named column with a declared sample rate, channel policy and needs, and a registry of them.

Each metric converts both signals itself (explicitly, with ``codec.audio.convert``), crops them to the shorter one
without shifting either (delay is measured and reported elsewhere, never corrected), and returns NaN plus the reason
whenever it cannot give a real score: a metric never invents a value.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Optional

import numpy as np

from codec.audio import convert


class MetricError(ValueError):
    """A metric was asked for by a name that does not exist, or was used wrongly."""


class NotScorable(Exception):
    """Raised inside ``Metric.score`` when the item cannot be scored; the message becomes the NaN reason."""


@dataclass(frozen=True)
class Score:
    """One metric on one item: a finite value, or a NaN or infinite value and why."""

    value: float
    reason: Optional[str] = None


def package_version(name: str) -> str:
    """Installed version of a distribution, or 'not installed'."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


class Metric(abc.ABC):
    """A full-reference quality metric on mono audio at ``sample_rate`` (None: the reference's own rate)."""

    column: str
    sample_rate: Optional[int]
    higher_is_better: bool
    needs: frozenset = frozenset()  # "speech": scored only on items whose category is speech
    channels: int = 1  # multichannel audio is mixed down by averaging
    min_seconds: float = 0.0
    scores_silence: bool = False  # most metrics are undefined (or answer a placeholder) on a silent reference
    #: The lowest and highest values the metric can give (None: unbounded). A score there says that the metric
    #: saturated, not how good the audio is; rows and summaries flag it (``encodec_eval.run.sanity``).
    floor: Optional[float] = None
    ceiling: Optional[float] = None

    @abc.abstractmethod
    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
        """Score two equal-length 1-D float32 signals; raise ``NotScorable`` for a NaN with a reason."""

    @abc.abstractmethod
    def implementation(self) -> dict[str, Any]:
        """Package, version and settings: recorded in run.json so a score can be traced and reproduced."""

    def describe(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "sample_rate": self.sample_rate or "reference rate",
            "channels": f"{self.channels} (mean downmix)",
            "needs": sorted(self.needs),
            "higher_is_better": self.higher_is_better,
            "min_seconds": self.min_seconds,
            "floor": self.floor,
            "ceiling": self.ceiling,
            **self.implementation(),
        }

    def measure(self, reference: np.ndarray, reference_sr: int, degraded: np.ndarray, degraded_sr: int,
                category: str = "") -> Score:
        """Bring both ``[channels, samples]`` signals to this metric's rate and channels, then score them."""
        if "speech" in self.needs and not is_speech(category):
            return Score(float("nan"), f"speech metric, item category is {category!r}")
        rate = self.sample_rate or reference_sr
        ref = _mono(convert(reference, reference_sr, rate, self.channels))
        deg = _mono(convert(degraded, degraded_sr, rate, self.channels))
        n = min(ref.size, deg.size)
        if n / rate < self.min_seconds:
            return Score(float("nan"), f"too short: {n / rate:.3f} s < {self.min_seconds} s")
        ref, deg = ref[:n], deg[:n]
        if not (np.isfinite(ref).all() and np.isfinite(deg).all()):
            return Score(float("nan"), "non-finite samples (NaN or Inf) in the audio")
        if not self.scores_silence and not np.any(ref):
            return Score(float("nan"), "reference is silent (all samples zero)")
        try:
            value = float(self.score(ref, deg, rate))
        except NotScorable as exc:
            return Score(float("nan"), str(exc))
        except Exception as exc:  # a failure is a NaN with its cause, never a made-up score
            return Score(float("nan"), f"failed: {type(exc).__name__}: {exc}")
        if np.isnan(value):
            return Score(value, "the metric returned NaN")
        if np.isinf(value):
            return Score(value, self.explain_infinite(value))
        return Score(value)

    def warm_up(self) -> None:  # noqa: B027 - a hook: most metrics load nothing before their first call
        """Load what the first call would (models, libraries), so that a pool worker does it before its first
        job, while the bench is still setting up."""

    def explain_infinite(self, value: float) -> str:
        """Why a score is infinite: kept in the row, left out of the summaries' means (with this reason)."""
        return f"unbounded score ({value}) for this pair of signals"


def is_speech(category: str) -> bool:
    """Speech metrics (PESQ, STOI, ViSQOL speech) run on categories named speech*, e.g. speech_clean."""
    return category.lower().startswith("speech")


def _mono(wav: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(wav, dtype=np.float32).reshape(-1))


_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Make a metric selectable by its column name."""
    _REGISTRY[metric.column] = metric
    return metric


def known_metrics() -> list[str]:
    return list(_REGISTRY)


def get_metric(column: str) -> Metric:
    """The metric behind a column name; an unknown name lists the known ones."""
    if column not in _REGISTRY:
        raise MetricError(f"unknown metric {column!r}; known metrics: {', '.join(_REGISTRY)}")
    return _REGISTRY[column]
