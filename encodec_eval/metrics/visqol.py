"""ViSQOL v3 through ``visqol-python``: audio mode at 48 kHz (SVR model) and speech mode at 16 kHz (lattice model).

These are the two configurations Google ships as defaults; the package's bundled model files are used, and the
speech mode insists on the lattice (TFLite) mapper rather than falling back silently to the polynomial one.
"""

from __future__ import annotations

import contextlib
import functools
import io
from pathlib import Path
from typing import Any

import numpy as np

from encodec_eval.metrics.base import Metric, package_version, register


@functools.lru_cache(maxsize=None)
def _api(mode: str):
    from visqol import VisqolApi

    api = VisqolApi()
    if mode == "speech":
        api.create(mode="speech", use_lattice_model=True)
    else:
        api.create(mode="audio")
    return api


def _model_file(mode: str) -> str:
    import visqol

    folder = Path(visqol.__file__).parent / "model"
    pattern = "lattice_*.tflite" if mode == "speech" else "libsvm_nu_svr_model.txt"
    return ", ".join(sorted(p.name for p in folder.glob(pattern)))


class Visqol(Metric):
    higher_is_better = True
    min_seconds = 1.0  # ViSQOL patches are about half a second; shorter signals give no stable patch set

    def __init__(self, mode: str, sample_rate: int):
        self.mode = mode
        self.sample_rate = sample_rate
        self.column = f"visqol_{mode}@{sample_rate // 1000}k"
        self.needs = frozenset({"speech"}) if mode == "speech" else frozenset()

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
        api = _api(self.mode)
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints progress notes per call
            result = api.measure_from_arrays(reference.astype(np.float64), degraded.astype(np.float64), sample_rate)
        return result.moslqo

    def implementation(self) -> dict[str, Any]:
        return {"implementation": "visqol-python (pure-Python port of google/visqol v3)",
                "version": package_version("visqol-python"), "mode": self.mode, "model": _model_file(self.mode),
                "search_window": 60, "output": "MOS-LQO"}


register(Visqol("audio", 48000))
register(Visqol("speech", 16000))
