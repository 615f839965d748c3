"""Non-intrusive MOS predictors from Microsoft's ``speechmos`` wheel: DNSMOS P.835 (SIG, BAK, OVRL), DNSMOS P.808
and PLCMOS v2. Their ONNX models ship inside the wheel, so nothing is downloaded.

Each predictor scores one signal, so each is registered twice: ``dnsmos_ovrl@16k`` scores the decoded audio and
``dnsmos_ovrl@16k_ref`` the reference, and a row shows what the codec cost (the drop) beside what the recording
was worth to begin with. The models were trained on 16 kHz mono speech: both signals are mixed to mono and
resampled to 16 kHz (soxr HQ, as ``librosa.load(sr=16000)`` in the authors' scripts), and items outside the speech
categories are NaN with the reason. The package refuses samples beyond +-1; they are clipped, as a 16-bit file or
a sound card would.

Reproducibility: DNSMOS is deterministic. PLCMOS averages 15 "rater" embeddings drawn from numpy's global random
generator on every call; here the generator is seeded (``PLCMOS_SEED``) for the call and restored afterwards, so a
signal always gets the same score. Every model file's sha256, the package version and its licence (read from the
installed wheel) go into ``run.json`` through ``implementation()``.
"""

from __future__ import annotations

import functools
import hashlib
from contextlib import contextmanager
from importlib import metadata, resources
from typing import Any, Callable, Iterator

import numpy as np

from codec.audio import convert
from encodec_eval.metrics.base import Metric, Score, is_speech, package_version, register, unfit_input

SAMPLE_RATE = 16000
PACKAGE = "speechmos"
PLCMOS_SEED = 0
#: DNSMOS fills its 9.01 s window by repeating a shorter clip; below a second that is mostly repetition.
MIN_SECONDS = 1.0
DNSMOS_FILES = ("dnsmos_models/sig_bak_ovr.onnx", "dnsmos_models/model_v8.onnx")
PLCMOS_FILES = ("plcmos_models/plcmos_v2.onnx",)
REFERENCE_SUFFIX = "_ref"


def model_sha256(relative: str) -> str:
    """sha256 of a model file inside the installed package ('not installed' when it is absent)."""
    try:
        path = resources.files(PACKAGE).joinpath(relative)
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (ModuleNotFoundError, FileNotFoundError):
        return "not installed"


def package_licence() -> dict[str, str]:
    """The licence as the installed wheel states it: its classifier and the first lines of its licence file."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        return {"licence": "not installed"}
    classifiers = [c.split("::")[-1].strip() for c in dist.metadata.get_all("Classifier") or [] if "License" in c]
    licence_files = [f for f in dist.files or () if "LICENSE" in f.name.upper()]
    text = licence_files[0].read_text().split("\n") if licence_files else []
    heading = " ".join(line.strip() for line in text[:4] if line.strip())
    return {"licence": ", ".join(classifiers) or "not stated", "licence_file": heading or "none in the wheel",
            "licence_note": "the ONNX model files ship inside this wheel, under its licence"}


@functools.lru_cache(maxsize=1)
def _dnsmos() -> Callable[[np.ndarray], dict[str, float]]:
    from speechmos import dnsmos

    return lambda audio: dnsmos.run(audio, SAMPLE_RATE)


@functools.lru_cache(maxsize=1)
def _plcmos() -> Callable[[np.ndarray], dict[str, float]]:
    from speechmos import plcmos

    return lambda audio: plcmos.run(audio, SAMPLE_RATE)


@contextmanager
def _seeded_numpy(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@functools.lru_cache(maxsize=8)
def _predict(model: str, samples: bytes) -> dict[str, float]:
    """All of one model's outputs for one 16 kHz signal; cached, so the four DNSMOS columns share one pass."""
    audio = np.frombuffer(samples, dtype=np.float32)
    if model == "plcmos":
        with _seeded_numpy(PLCMOS_SEED):
            return dict(_plcmos()(audio))
    return dict(_dnsmos()(audio))


class MosPredictor(Metric):
    """One output of a non-intrusive predictor, on the decoded audio or (``on_reference``) on the reference."""

    sample_rate = SAMPLE_RATE
    higher_is_better = True
    needs = frozenset({"speech"})
    min_seconds = MIN_SECONDS

    def __init__(self, name: str, model: str, output: str, on_reference: bool = False) -> None:
        self.model, self.output, self.on_reference = model, output, on_reference
        self.column = f"{name}@16k" + (REFERENCE_SUFFIX if on_reference else "")
        self.silence_subject = "the reference" if on_reference else "the decoded audio"

    def measure(self, reference: np.ndarray, reference_sr: int, degraded: np.ndarray, degraded_sr: int,
                category: str = "", known_delay_seconds: float = 0.0) -> Score:
        """Score one signal (the decoded one, or the reference): mono, 16 kHz, clipped to +-1 (``score`` sees it as
        both of its arguments). A pair that no metric may score (a truncated, padded or out-of-range output, see
        ``unfit_input``) is NaN here too, the reference's column included, so that a row never shows a drop
        against an output that was not judged."""
        if not is_speech(category):
            return Score(float("nan"), f"speech quality predictor, item category is {category!r}")
        unfit = unfit_input(reference, reference_sr, degraded, degraded_sr, known_delay_seconds)
        if unfit is not None:
            return Score(float("nan"), unfit)
        signal, rate = (reference, reference_sr) if self.on_reference else (degraded, degraded_sr)
        mono = np.ascontiguousarray(convert(signal, rate, SAMPLE_RATE, 1).reshape(-1), dtype=np.float32)
        if mono.size / SAMPLE_RATE < self.min_seconds:
            return Score(float("nan"), f"too short: {mono.size / SAMPLE_RATE:.3f} s < {self.min_seconds} s")
        return self.checked_score(mono, mono, SAMPLE_RATE)

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
        """The predictor on ``degraded`` alone (``measure`` passes the signal it scores as both)."""
        clipped = np.clip(degraded, -1.0, 1.0).astype(np.float32)
        return _predict(self.model, clipped.tobytes())[self.output]

    def implementation(self) -> dict[str, Any]:
        files = DNSMOS_FILES if self.model == "dnsmos" else PLCMOS_FILES
        out = {"implementation": f"{PACKAGE} (Microsoft {'DNSMOS' if self.model == 'dnsmos' else 'PLCMOS v2'})",
               "version": package_version(PACKAGE), "onnxruntime": package_version("onnxruntime"),
               "librosa": package_version("librosa"), "output": self.output,
               "scored_signal": "reference" if self.on_reference else "decoded",
               "input": "mono mix, soxr HQ to 16 kHz, clipped to +-1",
               "model_sha256": {name: model_sha256(name) for name in files}, **package_licence()}
        if self.model == "plcmos":
            out["rater_embeddings"] = f"15 draws from numpy's global generator, seeded with {PLCMOS_SEED} per call"
        return out


PREDICTORS = (("dnsmos_sig", "dnsmos", "sig_mos"), ("dnsmos_bak", "dnsmos", "bak_mos"),
              ("dnsmos_ovrl", "dnsmos", "ovrl_mos"), ("dnsmos_p808", "dnsmos", "p808_mos"),
              ("plcmos", "plcmos", "plcmos"))
for _name, _model, _output in PREDICTORS:
    register(MosPredictor(_name, _model, _output))
    register(MosPredictor(_name, _model, _output, on_reference=True))
