"""Scale-invariant signal-to-noise ratio: mean removed, whole signal, in dB, higher is better (not negated)."""

from __future__ import annotations

from typing import Any

import numpy as np

from encodec_eval.metrics.base import Metric, NotScorable, register


def si_snr_db(reference: np.ndarray, degraded: np.ndarray) -> float:
    """SI-SNR of ``degraded`` against ``reference`` (1-D, equal length), computed in float64."""
    ref = np.asarray(reference, dtype=np.float64)
    deg = np.asarray(degraded, dtype=np.float64)
    ref = ref - ref.mean()
    deg = deg - deg.mean()
    ref_energy = float(ref @ ref)
    if ref_energy == 0.0:
        raise NotScorable("reference is silent (zero energy after mean removal)")
    target = (deg @ ref) / ref_energy * ref
    noise = deg - target
    target_energy, noise_energy = float(target @ target), float(noise @ noise)
    if noise_energy == 0.0:
        return float("inf")
    if target_energy == 0.0:
        return float("-inf")
    return 10.0 * np.log10(target_energy / noise_energy)


class SiSnr(Metric):
    column = "si_snr_db"
    sample_rate = None
    higher_is_better = True

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
        return si_snr_db(reference, degraded)

    def implementation(self) -> dict[str, Any]:
        return {"implementation": "encodec_eval.metrics.si_snr (numpy, float64)",
                "definition": "zero-mean, whole signal, 10*log10(|s_t|^2/|e|^2), positive is better, no alignment"}


register(SiSnr())
