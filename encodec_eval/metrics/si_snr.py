"""Scale-invariant signal-to-noise ratio: mean removed, whole signal, in dB, higher is better (not negated)."""

from __future__ import annotations

from typing import Any

import numpy as np

from encodec_eval.metrics.base import Metric, NotScorable, register


def si_snr_db(reference: np.ndarray, degraded: np.ndarray) -> float:
    """SI-SNR of ``degraded`` against ``reference`` (1-D, equal length), computed in float64.

    Edge cases, so that no nonsense reaches a table: a constant (or silent) degraded signal has no target and no
    noise, and is not scorable (NaN with the reason), never the perfect score its zero noise would suggest. A
    degraded signal equal to the reference up to gain and offset scores ``+inf``; one orthogonal to it scores
    ``-inf``. Both are true values, kept in the rows and left out of the summaries' means (see
    ``encodec_eval.report.summary``).
    """
    ref = np.asarray(reference, dtype=np.float64)
    deg = np.asarray(degraded, dtype=np.float64)
    ref = ref - ref.mean()
    deg = deg - deg.mean()
    ref_energy = float(ref @ ref)
    if ref_energy == 0.0:
        raise NotScorable("reference is silent (zero energy after mean removal)")
    if not np.any(deg):
        raise NotScorable("decoded output is constant or silent (zero energy after mean removal)")
    target = (deg @ ref) / ref_energy * ref
    noise = deg - target
    target_energy, noise_energy = float(target @ target), float(noise @ noise)
    if target_energy == 0.0:
        return float("-inf")  # no component along the reference at all
    if noise_energy == 0.0:
        return float("inf")  # the reference itself, up to gain and offset
    return 10.0 * np.log10(target_energy / noise_energy)


class SiSnr(Metric):
    column = "si_snr_db"
    sample_rate = None
    higher_is_better = True

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
        return si_snr_db(reference, degraded)

    def explain_infinite(self, value: float) -> str:
        if value > 0:
            return "+inf: decoded equals the reference up to gain and offset (no noise at all)"
        return "-inf: decoded has no component along the reference"

    def implementation(self) -> dict[str, Any]:
        return {"implementation": "encodec_eval.metrics.si_snr (numpy, float64)",
                "definition": "zero-mean, whole signal, 10*log10(|s_t|^2/|e|^2), positive is better, no alignment"}


register(SiSnr())
