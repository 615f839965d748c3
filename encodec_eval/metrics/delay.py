"""Delay between reference and decoded audio, measured by cross-correlation and reported (never corrected)."""

from __future__ import annotations

import numpy as np

from codec.audio import convert


def measure_delay(reference: np.ndarray, reference_sr: int, degraded: np.ndarray, degraded_sr: int,
                  max_seconds: float = 0.5) -> tuple[int, float]:
    """Lag in samples (at ``degraded_sr``) and in ms by which ``degraded`` trails ``reference``; NaN if silent.

    Both are mixed to mono at the decoded rate; the lag maximising the cross-correlation within
    ``+-max_seconds`` wins. Positive means the decoded audio comes late.
    """
    from scipy import signal  # here, not at import: a second of every encodec-bench start-up, before any work

    ref = np.asarray(convert(reference, reference_sr, degraded_sr, 1), dtype=np.float64).reshape(-1)
    deg = np.asarray(degraded, dtype=np.float64).mean(axis=0)
    if not (np.any(ref) and np.any(deg)):
        return 0, float("nan")
    corr = signal.correlate(deg, ref, mode="full", method="fft")
    lags = signal.correlation_lags(deg.size, ref.size, mode="full")
    window = np.abs(lags) <= int(max_seconds * degraded_sr)
    lag = int(lags[window][np.argmax(corr[window])])
    return lag, 1000.0 * lag / degraded_sr
