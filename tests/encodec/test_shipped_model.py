"""The trained model shipped in codec/encodec/weights/: loads through the public API, is the default without official
weights, reaches the quality its model card records, and its LM lowers the measured bitrate losslessly."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from codec import audio
from codec.base import create
from codec.encodec import checkpoints
from codec.encodec import codec as adapter
from codec.encodec.bitstream import read_metadata
from codec.encodec.compress import compress, decompress, default_lm
from encodec_eval.data import load_dataset
from encodec_eval.metrics import get_metric

ROOT = Path(__file__).resolve().parents[2]
CARD_ROWS = ROOT / "benchmarks" / "results" / "model_card_rows.csv"
WEIGHTS = ROOT / "codec" / "encodec" / "weights"


@pytest.fixture
def without_official_weights(tmp_path, monkeypatch):
    """No official or Hugging Face weights on this machine; the shipped ones stay where the package put them."""
    for variable in ("ENCODEC_WEIGHTS", "HF_HUB_CACHE", "HF_HOME", "TORCH_HOME", "HOME"):
        monkeypatch.setenv(variable, str(tmp_path / "empty"))
    monkeypatch.delenv(adapter.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(checkpoints.PROJECT_WEIGHTS_ENV, raising=False)


@pytest.fixture(scope="module")
def card_row():
    """The model card's run: the 6 kbps row of one bundled clean-speech item."""
    rows = pd.read_csv(CARD_ROWS)
    rows = rows[(rows["codec_spec"] == "encodec:24khz-project@6") & (rows["category"] == "speech_clean")]
    return rows.sort_values("item_id").iloc[0]


def test_shipped_files_are_small_and_name_their_training():
    files = [checkpoints.find_project_checkpoint("encodec_eval_24khz"),
             checkpoints.find_project_checkpoint("encodec_eval_24khz", lm=True)]
    assert all(f is not None and f.parent == WEIGHTS for f in files)
    assert sum(f.stat().st_size for f in files) < 25e6
    payload = torch.load(files[0], map_location="cpu", weights_only=True)
    assert payload["inference_only"] and payload["metadata"]["trained_steps"] > 0
    model = checkpoints.load_model("encodec_eval_24khz")
    assert model.config.target_bandwidths == (1.5, 3.0, 6.0, 12.0) and model.config.n_filters == 16


def test_shipped_model_is_the_default_without_official_weights(without_official_weights, recwarn):
    codec = create("encodec@6")
    described = codec.describe()
    assert described["model"] == "encodec_eval_24khz"
    assert described["weights"].startswith("project: ") and described["weights"].endswith("encodec_eval_24khz.pt")
    assert described["weights_sha256"] == checkpoints.sha256_of(WEIGHTS / "encodec_eval_24khz.pt")
    assert not [w for w in recwarn if "RANDOMLY" in str(w.message)]


def test_round_trip_reaches_the_model_card_quality(without_official_weights, card_row):
    item = next(i for i in load_dataset().items if i.item_id == card_row["item_id"])
    wav, sr = item.load()
    codec = create("encodec@6")
    decoded, decoded_sr = codec.decode(codec.encode(wav, sr))
    for column, tolerance in (("si_snr_db", 0.05), ("mel_distance@24k", 0.01)):
        score = get_metric(column).measure(wav, sr, decoded, decoded_sr, item.category).value
        assert score == pytest.approx(card_row[column], abs=tolerance), column


def test_lm_lowers_the_measured_bitrate_losslessly(without_official_weights):
    model = checkpoints.load_model("encodec_eval_24khz")
    item = next(i for i in load_dataset().items if i.category == "speech_clean")
    wav, sr = item.load()
    wav = torch.from_numpy(audio.convert(wav, sr, 24000, 1)[:, : 3 * 24000])
    plain = compress(model, wav, bandwidth=6.0, sample_rate=24000)
    coded = compress(model, wav, bandwidth=6.0, use_lm=True, lm=default_lm(model.config), sample_rate=24000)
    assert len(coded) < 0.95 * len(plain)
    (a, _), (b, _) = decompress(plain), decompress(coded)
    np.testing.assert_array_equal(a.numpy(), b.numpy())  # same codes, so the same audio


def test_encodec_lm_file_is_the_apis_where_the_lm_pays(without_official_weights, tmp_path):
    model = checkpoints.load_model("encodec_eval_24khz")
    item = next(i for i in load_dataset().items if i.category == "speech_clean")
    wav, sr = item.load()
    source = tmp_path / "in.wav"
    audio.save(source, wav[:, : 3 * sr], sr, subtype="FLOAT")
    encodec = Path(sys.executable).parent / "encodec"
    env = dict(os.environ, OMP_NUM_THREADS="1", ENCODEC_WEIGHTS=str(tmp_path / "empty"),
               TORCH_HOME=str(tmp_path / "empty"))  # no official weights: the shipped model codes the file
    env.pop(checkpoints.PROJECT_WEIGHTS_ENV, None)
    done = subprocess.run([str(encodec), str(source), str(tmp_path / "out.ecdc"), "--lm"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "without the LM" not in done.stderr
    loaded, loaded_sr = audio.load(source)
    expected = compress(model, audio.convert(loaded, loaded_sr, 24000, 1), bandwidth=6.0, use_lm=True,
                        lm=default_lm(model.config), sample_rate=24000)
    assert (tmp_path / "out.ecdc").read_bytes() == expected


def test_encodec_command_falls_back_to_the_shipped_model(tmp_path):
    item = next(i for i in load_dataset().items if i.category == "speech_clean")
    wav, sr = item.load()
    source = tmp_path / "in.wav"
    audio.save(source, wav[:, : sr], sr)
    env = dict(os.environ, OMP_NUM_THREADS="1", ENCODEC_WEIGHTS=str(tmp_path / "empty"),
               TORCH_HOME=str(tmp_path / "empty"))
    env.pop(checkpoints.PROJECT_WEIGHTS_ENV, None)
    encodec = Path(sys.executable).parent / "encodec"
    done = subprocess.run([str(encodec), str(source), str(tmp_path / "out.ecdc"), "--lm"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "using the project's encodec_eval_24khz" in done.stderr
    assert read_metadata((tmp_path / "out.ecdc").read_bytes())[0].model == "encodec_eval_24khz"
    done = subprocess.run([str(encodec), str(tmp_path / "out.ecdc"), str(tmp_path / "back.wav")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    back, back_sr = audio.load(tmp_path / "back.wav")
    assert back_sr == 24000 and back.shape == (1, 24000)
