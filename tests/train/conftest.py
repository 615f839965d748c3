"""A tiny training corpus made in the test, and a tiny-model settings override that keeps training steps fast."""

import csv

import numpy as np
import pytest
import soundfile as sf

from codec.encodec.train.data import MANIFEST_FIELDS, MANIFEST_NAME

# A 4-filter, LSTM-free model with hop 16 and two 16-entry codebooks; shapes stay those of EnCodec.
TINY = {
    "model_overrides": {"n_filters": 4, "dimension": 8, "lstm": 0, "ratios": [4, 4], "bins": 16,
                        "target_bandwidths": [6.0, 12.0], "kmeans_iters": 2},
    "adversary_options": {"msstft": {"filters": 4}, "stft": {"filters": 4}, "mpd": {"filters": 2},
                          "msd": {"filters": 4}},
    "mel_scales": [5, 6, 7],
    "batch_size": 2,
    "segment_seconds": 0.1,
    "log_every": 1,
    "checkpoint_every": 1000,
}


def tiny(**changes):
    settings = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key].update(value)
        else:
            settings[key] = value
    return settings


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Six short files: harmonic tones (music), a formant-like buzz (speech), noise bursts (general)."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    sr = 16000
    t = np.arange(sr) / sr
    files = []
    for i in range(6):
        if i % 3 == 0:
            category, wav = "music", sum(np.sin(2 * np.pi * 220 * (i + 1) * k * t) / k for k in range(1, 5))
        elif i % 3 == 1:
            pulse = (np.sin(2 * np.pi * 110 * t) > 0.95).astype(float)
            category, wav = "speech", np.convolve(pulse, np.hanning(40), "same") * np.sin(2 * np.pi * 3 * t)
        else:
            category, wav = "general", rng.standard_normal(sr) * (t % 0.25 < 0.1)
        files.append((f"{category}/item{i}.flac", category, (0.3 * wav / np.abs(wav).max()).astype(np.float32)))
    return write_corpus(root, files, sr)


def write_corpus(root, files, sample_rate: int):
    """Write ``(relative path, category, mono float32 audio)`` files and their manifest into ``root``."""
    rows = []
    for path, category, wav in files:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / path, wav, sample_rate)
        rows.append({"path": path, "category": category, "source": "test", "package": "synthetic",
                     "original_path": "-", "license": "CC0", "synthetic": 1, "sample_rate": sample_rate,
                     "channels": 1, "seconds": len(wav) / sample_rate})
    with (root / MANIFEST_NAME).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS, delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return root
