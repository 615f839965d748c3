"""ViSQOL v3 through ``visqol-python``: audio mode at 48 kHz (SVR model) and speech mode at 16 kHz (lattice model).

These are the two configurations Google ships as defaults; the package's bundled model files are used, and the
speech mode insists on the lattice (TFLite) mapper rather than falling back silently to the polynomial one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from encodec_eval.metrics.base import Metric, package_version, register


class _ReferenceSpectrograms:
    """The package's gammatone spectrogram builder, reusing the reference's whole-signal spectrogram.

    A benchmark scores one item against every codec and bitrate, and each ViSQOL call builds the reference's
    spectrogram again: about a fifth of a 48 kHz call. The package has no API to pass a reference in once, so its
    manager's builder is wrapped: ``score`` names the reference before each call, and a build of exactly that
    signal is served from the last few references built. Other builds (the degraded signal, the many short patches
    of the fine alignment) pass straight through. Reused results are read-only, so an in-place change by the
    package would raise rather than corrupt a later score.
    """

    def __init__(self, builder: Any, size: int = 4) -> None:
        self.builder = builder
        self.size = size
        self.built: OrderedDict[tuple, Any] = OrderedDict()
        self.reference: Optional[tuple] = None
        self.hits = 0

    @staticmethod
    def _key(data: np.ndarray, sample_rate: int) -> tuple:
        return data.size, sample_rate, hashlib.blake2b(data.tobytes(), digest_size=16).digest()

    def expect(self, reference: np.ndarray, sample_rate: int) -> None:
        self.reference = self._key(reference, sample_rate)

    def build(self, signal: Any, window: Any) -> Any:
        if self.reference is None or signal.data.size != self.reference[0]:
            return self.builder.build(signal, window)
        signal_key = self._key(signal.data, signal.sample_rate)
        if signal_key != self.reference:
            return self.builder.build(signal, window)
        key = (signal_key, window.size, window.overlap)
        if key in self.built:
            self.hits += 1
            self.built.move_to_end(key)
            return self.built[key]
        spectrogram = self.builder.build(signal, window)
        spectrogram.data.setflags(write=False)
        self.built[key] = spectrogram
        if len(self.built) > self.size:
            self.built.popitem(last=False)
        return spectrogram


#: What TensorFlow Lite's C++ runtime prints to the process's stderr when the speech model loads (once per
#: process, so once per pool worker): a note for its developers, not for a reader of the bench's output.
_RUNTIME_NOTES = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


@contextlib.contextmanager
def _without_runtime_notes() -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 in the block, then pass it on without the lines in
    ``_RUNTIME_NOTES``: real errors still reach stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True)
                    if line.strip() not in _RUNTIME_NOTES]
            if kept:
                os.write(2, b"".join(kept))


@functools.lru_cache(maxsize=None)
def _api(mode: str):
    from visqol import VisqolApi

    api = VisqolApi()
    if mode == "speech":
        with _without_runtime_notes():
            api.create(mode="speech", use_lattice_model=True)
    else:
        api.create(mode="audio")
    manager = getattr(api, "_manager", None)  # visqol-python internals: without them, every call builds anew
    if manager is not None and getattr(manager, "spect_builder", None) is not None:
        manager.spect_builder = _ReferenceSpectrograms(manager.spect_builder)
    return api


def _model_file(mode: str) -> str:
    import visqol

    folder = Path(visqol.__file__).parent / "model"
    pattern = "lattice_*.tflite" if mode == "speech" else "libsvm_nu_svr_model.txt"
    return ", ".join(sorted(p.name for p in folder.glob(pattern)))


class Visqol(Metric):
    higher_is_better = True
    floor, ceiling = 1.0, 5.0  # both quality mappers clip their MOS-LQO to [1, 5]
    min_seconds = 1.0  # ViSQOL patches are about half a second; shorter signals give no stable patch set

    def __init__(self, mode: str, sample_rate: int):
        self.mode = mode
        self.sample_rate = sample_rate
        self.column = f"visqol_{mode}@{sample_rate // 1000}k"
        self.needs = frozenset({"speech"}) if mode == "speech" else frozenset()

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
        api = _api(self.mode)
        reference = reference.astype(np.float64)
        builder = getattr(getattr(api, "_manager", None), "spect_builder", None)
        if isinstance(builder, _ReferenceSpectrograms):
            builder.expect(reference, sample_rate)
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints progress notes per call
            result = api.measure_from_arrays(reference, degraded.astype(np.float64), sample_rate)
        return result.moslqo

    def warm_up(self) -> None:
        _api(self.mode)

    def implementation(self) -> dict[str, Any]:
        return {"implementation": "visqol-python (pure-Python port of google/visqol v3)",
                "version": package_version("visqol-python"), "mode": self.mode, "model": _model_file(self.mode),
                "search_window": 60, "output": "MOS-LQO"}


register(Visqol("audio", 48000))
register(Visqol("speech", 16000))
