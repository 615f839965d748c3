"""What a metric is: a named column with a declared sample rate, channel policy and needs, and a registry of them.

Each metric converts both signals itself (explicitly, with ``codec.audio.convert``), crops them to the shorter one
without shifting either (delay is measured and reported elsewhere, never corrected), and returns NaN plus the reason
whenever it cannot give a real score: a metric never invents a value. Before anything else, both signals must be
finite audio within ±``MAX_PEAK`` (the rule every command applies when it reads audio), and their durations must
agree within the codec's known delay: a decoded output half as long as its reference is a defect to report, not a
signal to score on its first half.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Optional

import numpy as np

from codec.audio import MAX_PEAK, convert


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
    silence_subject: str = "reference"  # the signal whose silence makes the score undefined, in NaN reasons
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
                category: str = "", known_delay_seconds: float = 0.0) -> Score:
        """Bring both ``[channels, samples]`` signals to this metric's rate and channels, then score them.

        ``known_delay_seconds``: how much longer or shorter than the reference the degraded signal may be (the
        codec's declared latency); one sample at the lower rate is always allowed for rate conversion."""
        if "speech" in self.needs and not is_speech(category):
            return Score(float("nan"), f"speech metric, item category is {category!r}")
        unfit = unfit_input(reference, reference_sr, degraded, degraded_sr, known_delay_seconds)
        if unfit is not None:
            return Score(float("nan"), unfit)
        rate = self.sample_rate or reference_sr
        ref = _mono(convert(reference, reference_sr, rate, self.channels))
        deg = _mono(convert(degraded, degraded_sr, rate, self.channels))
        n = min(ref.size, deg.size)
        if n / rate < self.min_seconds:
            return Score(float("nan"), f"too short: {n / rate:.3f} s < {self.min_seconds} s")
        return self.checked_score(ref[:n], deg[:n], rate)

    def checked_score(self, ref: np.ndarray, deg: np.ndarray, rate: int) -> Score:
        """``score`` on two signals already at the metric's rate and length, as a Score: NaN with the reason for
        non-finite or silent input and for a failure, the reason of an infinite value."""
        if not (np.isfinite(ref).all() and np.isfinite(deg).all()):
            return Score(float("nan"), "non-finite samples (NaN or Inf) in the audio")
        if not self.scores_silence and not np.any(ref):
            return Score(float("nan"), f"{self.silence_subject} is silent (all samples zero)")
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


def unfit_input(reference: np.ndarray, reference_sr: int, degraded: np.ndarray, degraded_sr: int,
                known_delay_seconds: float = 0.0) -> Optional[str]:
    """Why no metric can score this pair, or None: NaN or infinite samples, samples beyond ±``MAX_PEAK`` (1e30
    gave an SI-SNR of 152 dB and PESQ 4.64 of ``reference * 1e30`` against itself), or durations that differ by
    more than ``known_delay_seconds`` plus one sample (the crop to the shorter signal hid a truncated output)."""
    for name, wav in (("reference", reference), ("decoded", degraded)):
        data = np.asarray(wav)
        if data.size == 0:
            return f"{name} audio is empty"
        peak = float(np.max(np.abs(data)))
        if not np.isfinite(peak):
            return f"non-finite samples (NaN or Inf) in the {name} audio"
        if peak > MAX_PEAK:
            return (f"{name} audio has samples up to {peak:.3g}, beyond ±{MAX_PEAK:g} (full scale is ±1): not audio "
                    "on the scale metrics assume")
    reference_seconds = np.asarray(reference).shape[-1] / reference_sr
    degraded_seconds = np.asarray(degraded).shape[-1] / degraded_sr
    allowed = known_delay_seconds + 1.0 / min(reference_sr, degraded_sr)
    if abs(degraded_seconds - reference_seconds) > allowed:
        return (f"length mismatch: decoded {degraded_seconds:.3f} s, reference {reference_seconds:.3f} s, more apart "
                f"than the codec's known delay ({1000 * known_delay_seconds:g} ms): a truncated or padded output")
    return None


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
