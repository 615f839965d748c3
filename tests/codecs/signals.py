"""Helpers for the codec tests: short excerpts of real items, time alignment and SNR."""

from pathlib import Path

import numpy as np
from scipy.signal import correlate

from codec import audio

DATA = Path(__file__).resolve().parents[2] / "encodec_eval" / "data" / "default"


def excerpt(relative: str, seconds: float = 4.0, start: float = 0.0) -> tuple[np.ndarray, int]:
    wav, sr = audio.load(DATA / relative)
    begin = int(start * sr)
    return np.ascontiguousarray(wav[:, begin:begin + int(seconds * sr)]), sr


def lag_of(reference: np.ndarray, decoded: np.ndarray, max_lag: int) -> int:
    """Lag (samples) at which ``decoded`` best matches ``reference``: positive = decoded is late."""
    ref, out = reference.mean(0), decoded.mean(0)
    full = correlate(out, ref, mode="full", method="fft")
    centre = len(ref) - 1
    window = full[centre - max_lag:centre + max_lag + 1]
    return int(np.argmax(window)) - max_lag


def snr_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - decoded) ** 2)))
