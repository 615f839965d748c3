"""Multi-scale mel distance (the audiotools / DAC / Codec-SUPERB definition), lower is better.

For each (window, mel bands) scale: magnitude STFT (Hann, hop = window / 4), a Slaney-area mel filterbank, then
``mean|log10(clamp(M, 1e-5)^2) - log10(clamp(M', 1e-5)^2)| + mean|M - M'|``; the scales are summed.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from encodec_eval.metrics.base import Metric, NotScorable, register

SCALES = ((2048, 150), (512, 80))
CLAMP = 1e-5
POWER = 2.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@functools.lru_cache(maxsize=None)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Triangular HTK-scale filters over 0..Nyquist, each normalised to unit area (Slaney norm): [n_mels, bins]."""
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array(sample_rate / 2)), n_mels + 2))
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - low) / (centre - low)
    falling = (high - bins[None]) / (high - centre)
    filters = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (high - low))
    return torch.from_numpy(filters.astype(np.float32))


def _mel(signal: torch.Tensor, sample_rate: int, window: int, n_mels: int) -> torch.Tensor:
    spec = torch.stft(signal, n_fft=window, hop_length=window // 4, window=torch.hann_window(window),
                      center=True, return_complex=True).abs()
    return mel_filterbank(sample_rate, window, n_mels) @ spec


def mel_distance(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """Sum over scales of log-mel L1 plus mel-magnitude L1 between two equal-length 1-D signals."""
    ref = torch.from_numpy(np.asarray(reference, dtype=np.float32))
    deg = torch.from_numpy(np.asarray(degraded, dtype=np.float32))
    total = 0.0
    for window, n_mels in SCALES:
        m_ref, m_deg = _mel(ref, sample_rate, window, n_mels), _mel(deg, sample_rate, window, n_mels)
        log_term = (m_ref.clamp(min=CLAMP).pow(POWER).log10() - m_deg.clamp(min=CLAMP).pow(POWER).log10()).abs()
        total += float(log_term.mean() + (m_ref - m_deg).abs().mean())
    return total


class MelDistance(Metric):
    column = "mel_distance@24k"
    sample_rate = 24000
    higher_is_better = False
    scores_silence = True
    floor = 0.0  # identical mel spectrograms

    def score(self, reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
        if reference.size < max(w for w, _ in SCALES):
            raise NotScorable(f"too short for a {max(w for w, _ in SCALES)}-sample window")
        return mel_distance(reference, degraded, sample_rate)

    def implementation(self) -> dict[str, Any]:
        return {"implementation": "encodec_eval.metrics.mel_distance (torch.stft)", "version": torch.__version__,
                "scales": [f"win{w}/mels{m}" for w, m in SCALES], "hop": "win/4", "window": "hann",
                "clamp": CLAMP, "pow": POWER, "terms": "L1 log10 mel + L1 mel magnitude"}


register(MelDistance())
