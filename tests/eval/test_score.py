"""Scoring a model in memory through the harness's rows: what the ablation runner and the training curves use."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.encodec.model import EncodecModel
from codec.encodec.train.config import TrainConfig
from encodec_eval.run.evaluate import RunOptions
from encodec_eval.run.score import AudioItem, ScoreError, model_codec, score
from tests.train.conftest import tiny


def _model() -> EncodecModel:
    torch.manual_seed(0)
    return EncodecModel(TrainConfig.from_dict(dict(tiny(), name="scored")).encodec_config().with_(kmeans_init=False))


def _tone(seconds: float, rate: int = 16000) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate))[None].astype(np.float32)


def test_a_model_in_memory_gets_harness_rows_cropped_and_untimed():
    items = [AudioItem.of("music/tone", "music", _tone(1.0), 16000, Path("memory"))]
    options = RunOptions(metrics=("si_snr_db", "mel_distance@24k"), repeats=0, score_seconds=0.5)
    (row,) = score(model_codec(_model(), 6.0, "tiny test model"), "encodec:scored@6", items, options)
    assert row["status"] == "ok" and row["codec_variant"] == "scored" and row["kbps_nominal"] == 6.0
    assert row["item_seconds"] == 0.5 and row["conversion"].startswith("16000Hz/1ch -> 24000Hz/1ch")
    assert row["item_sha256"] == hashlib.sha256(_tone(1.0).tobytes()).hexdigest()
    assert math.isfinite(row["si_snr_db"]) and row["mel_distance@24k"] > 0
    assert row["codec_info"]["weights"] == "path: tiny test model" and row["payload_bytes"] > 0
    assert math.isnan(row["encode_rtf_1thread"]) and "not timed" in row["nan_reasons"]["encode_rtf_1thread"]


def test_an_item_that_cannot_be_scored_stops_the_score_and_is_named():
    broken = _tone(0.5)
    broken[0, 100] = np.nan
    items = [AudioItem.of("music/ok", "music", _tone(0.5), 16000, Path("memory")),
             AudioItem.of("music/broken", "music", broken, 16000, Path("memory"))]
    with pytest.raises(ScoreError, match=r"1 of 2 items not scored: music/broken: error: AudioError"):
        score(model_codec(_model(), 6.0, "tiny"), "encodec:scored@6", items, RunOptions(metrics=("si_snr_db",),
                                                                                        repeats=0))
