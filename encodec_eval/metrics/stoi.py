"""Short-time objective intelligibility (Taal et al. 2011) through ``pystoi``, at its native 10 kHz."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from encodec_eval.metrics.base import Metric, NotScorable, package_version, register


class Stoi(Metric):
    column = "stoi@10k"
    sample_rate = 10000
    higher_is_better = True
    needs = frozenset({"speech"})
    ceiling = 1.0  # a correlation: 1 when the degraded envelopes equal the reference's

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
        from pystoi import stoi

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = stoi(reference, degraded, sample_rate, extended=False)
        # pystoi answers 1e-5 with a warning when too few non-silent frames remain: that is not a score.
        for warning in caught:
            if "Not enough STFT frames" in str(warning.message):
                raise NotScorable("pystoi: not enough non-silent frames (it would return a placeholder 1e-5)")
        return value

    def implementation(self) -> dict[str, Any]:
        return {"implementation": "pystoi", "version": package_version("pystoi"), "extended": False}


register(Stoi())
