"""Confidence intervals shared by the benchmark summaries and the listening-test reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class Interval:
    """A mean with the bounds of its confidence interval; NaN where it cannot be computed.

    ``n`` counts the finite values behind the mean; ``n_missing`` counts the values left out because they were
    NaN or infinite (an infinite score cannot enter a mean without making it meaningless).
    """

    mean: float
    low: float
    high: float
    n: int
    method: str
    n_missing: int = 0


def _clean(values: ArrayLike) -> tuple[np.ndarray, int]:
    """The finite values, and how many were not (NaN, +inf or -inf)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    keep = np.isfinite(arr)
    return arr[keep], int(arr.size - keep.sum())


def t_interval(values: ArrayLike, confidence: float = 0.95) -> Interval:
    """Student-t interval of the mean: the interval BS.1534-3 asks for."""
    from scipy import stats

    x, missing = _clean(values)
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "t", missing)
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, float("nan"), float("nan"), int(x.size), "t", missing)
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return Interval(mean, mean - half, mean + half, int(x.size), "t", missing)


def bootstrap_interval(values: ArrayLike, confidence: float = 0.95, n_boot: int = 2000,
                       clusters: Optional[Sequence] = None, seed: int = 0,
                       weights: Optional[ArrayLike] = None) -> Interval:
    """Percentile bootstrap of the mean; with ``clusters`` it resamples whole clusters (e.g. participants); with
    ``weights`` the mean is weighted (e.g. bitrates by item duration: total bits over total seconds, so that a
    one-sample item does not count as much as a minute)."""
    raw = np.asarray(values, dtype=np.float64).ravel()
    w_raw = np.ones_like(raw) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    keep = np.isfinite(raw) & np.isfinite(w_raw)
    x, w = raw[keep], w_raw[keep]
    missing = int(raw.size - keep.sum())
    method = ("bootstrap" if clusters is None else "cluster-bootstrap") + ("" if weights is None else ", weighted")
    if x.size == 0 or w.sum() <= 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, method, missing)
    mean = float(x.mean()) if weights is None else float((w * x).sum() / w.sum())
    if x.size < 2:
        return Interval(mean, float("nan"), float("nan"), int(x.size), method, missing)
    rng = np.random.default_rng(seed)
    if clusters is None:
        idx = rng.integers(0, x.size, size=(n_boot, x.size))
        boots = x[idx].mean(axis=1) if weights is None else (w * x)[idx].sum(axis=1) / w[idx].sum(axis=1)
    else:
        labels = np.asarray(clusters, dtype=object).ravel()[keep]
        uniq, inverse = np.unique(labels.astype(str), return_inverse=True)
        sums = np.bincount(inverse, weights=w * x, minlength=uniq.size)
        counts = np.bincount(inverse, weights=w, minlength=uniq.size)
        pick = rng.integers(0, uniq.size, size=(n_boot, uniq.size))
        boots = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    return Interval(mean, float(low), float(high), int(x.size), method, missing)


def paired_difference_interval(a: ArrayLike, b: ArrayLike, confidence: float = 0.95, n_boot: int = 2000,
                               seed: int = 0) -> Interval:
    """Percentile bootstrap of the mean of ``a - b`` over pairs (``a[i]`` and ``b[i]`` scored on the same item),
    resampling whole pairs. Pairs where either value is NaN or infinite are left out and counted in ``n_missing``.
    """
    first = np.asarray(a, dtype=np.float64).ravel()
    second = np.asarray(b, dtype=np.float64).ravel()
    if first.shape != second.shape:
        raise ValueError(f"paired values need equal lengths, got {first.size} and {second.size}")
    both = np.isfinite(first) & np.isfinite(second)
    interval = bootstrap_interval((first - second)[both], confidence, n_boot, seed=seed)
    return Interval(interval.mean, interval.low, interval.high, interval.n, "paired bootstrap",
                    int(first.size - both.sum()))
