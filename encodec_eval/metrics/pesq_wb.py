"""PESQ wide-band (ITU-T P.862.2) at 16 kHz through the ``pesq`` package (ludlows)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from encodec_eval.metrics.base import Metric, NotScorable, package_version, register


class PesqWideband(Metric):
    column = "pesq_wb@16k"
    sample_rate = 16000
    higher_is_better = True
    needs = frozenset({"speech"})
    min_seconds = 0.25  # the P.862 code needs at least a quarter second of signal
    # P.862.2 maps the raw score, limited to [-0.5, 4.5], through 0.999 + 4 / (1 + exp(-1.3669 x + 3.8224)).
    floor = 0.999 + 4 / (1 + math.exp(1.3669 * 0.5 + 3.8224))
    ceiling = 0.999 + 4 / (1 + math.exp(-1.3669 * 4.5 + 3.8224))

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
        from pesq import PesqError, pesq

        if not np.any(degraded):
            # P.862 aligns levels by the signals' power: a silent output makes it divide by zero ("cannot convert
            # float NaN to integer" from inside the package)
            raise NotScorable("decoded output is silent (all samples zero): PESQ's level alignment is undefined")
        try:
            return pesq(sample_rate, reference, degraded, "wb")
        except PesqError as exc:  # silence (NoUtterancesError), too short, ...
            raise NotScorable(f"pesq: {type(exc).__name__}: {exc}") from exc

    def implementation(self) -> dict[str, Any]:
        return {"implementation": "pesq (ludlows, ITU-T P.862.2 reference code)", "version": package_version("pesq"),
                "mode": "wb", "output": "MOS-LQO"}


register(PesqWideband())
