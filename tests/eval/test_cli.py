"""The installed ``encodec-bench`` end to end on a small real subset, and its clear errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
import torch

from encodec_eval.cli import main
from encodec_eval.run.folder import RunFolder
from encodec_eval.run.runner import RunConfig, run
from tests.eval.conftest import PLUGIN
from tests.eval.vectors import REPO

BENCH = Path(sys.executable).parent / "encodec-bench"


def _bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    if not BENCH.exists():
        pytest.fail(f"{BENCH} is not installed: run scripts/setup.sh (pip install -e .)")
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(BENCH), *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def test_end_to_end_on_a_small_subset(small_manifest, tmp_path):
    out = tmp_path / "run"
    done = _bench("--plugins", PLUGIN, "--codecs", "toymulaw", "--bw", "64,128", "--anchors", "reference",
                  "--metrics", "si_snr_db,visqol_audio@48k,pesq_wb@16k", "--data", str(small_manifest),
                  "--out", str(out), "--repeats", "1", "--workers", "1", "--keep-audio", "--no-progress")
    assert done.returncode == 0, done.stderr
    for name in ("run.json", "rows.jsonl", "rows.csv", "summary.csv", "plots"):
        assert (out / name).exists(), name
    rows = pd.read_json(out / "rows.jsonl", lines=True)
    assert sorted(rows["codec_spec"].unique()) == ["reference", "toymulaw@128", "toymulaw@64"]
    assert (rows["status"] == "ok").all() and len(rows) == 6
    reference = rows[rows.codec_spec == "reference"]
    assert (reference["si_snr_db"] > 40).all()  # 16-bit PCM of the input: only quantisation noise
    assert (reference["delay_samples"] == 0).all()
    assert rows["visqol_audio@48k"].between(1, 5).all()

    csv_rows = pd.read_csv(out / "rows.csv")
    assert set(csv_rows.columns) >= {"item_id", "category", "codec_spec", "kbps_nominal", "kbps_measured",
                                     "encode_rtf_1thread", "decode_rtf_allthreads", "latency_ms", "delay_ms",
                                     "si_snr_db", "visqol_audio@48k", "pesq_wb@16k", "nan_reasons", "conversion"}
    info = json.loads((out / "run.json").read_text())
    assert info["command"][1:3] == ["--plugins", PLUGIN]
    assert info["metrics"]["visqol_audio@48k"]["implementation"].startswith("visqol-python")

    # Decoded audio is kept per codec spec, next to the reference: what the MUSHRA app reads.
    for _, row in rows.iterrows():
        decoded = out / row["decoded_audio"]
        assert decoded.is_file() and (out / row["reference_audio"]).is_file()
        assert sf.info(str(decoded)).samplerate == row["decoded_sample_rate"]
    assert (out / "audio" / "toymulaw@64" / "speech_clean" / "cmu_arctic_a0007_16k.wav").is_file()

    assert "== category: speech_clean ==" in done.stdout and "95 %" in done.stdout
    assert "pesq_wb@16k" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--codecs", "nosuchcodec"], "unknown codec 'nosuchcodec'"),
    (["--metrics", "pesq"], "unknown metric 'pesq'"),
    (["--data", "/nonexistent/folder"], "no such data folder"),
    (["--resume"], "--resume and --report-only need --out"),
    (["--report-only", "--out", "/nonexistent/run"], "cannot read"),
    (["--plugins", "no_such_module_xyz"], "cannot import plugin module 'no_such_module_xyz'"),
    (["--weights", "/nonexistent/weights.th"], "neither a source"),
    (["--retry-errors"], "--retry-errors needs --resume"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "mps"], "encodec-bench runs codecs on cpu or cuda"),
    *([] if torch.cuda.is_available() else [(["--device", "cuda"], "this machine has no CUDA GPU")]),
])
def test_bad_arguments_fail_with_a_clear_message(args, message, capsys):
    """The same ``main`` as the console script, in-process: each error is exit status 2 and one clear line."""
    assert main(["--plugins", PLUGIN, "--codecs", "toymulaw", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--bw", "6,fast"], "--bw expects kbps numbers"),
    (["--repeats", "-1"], "expected an integer >= 0"),
    (["--workers", "0"], "expected a positive integer"),
])
def test_bad_numbers_are_argparse_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_weights_flag_reaches_the_encodec_adapter(monkeypatch, tmp_path):
    """--weights picks the EnCodec weights for the whole run; rows name them."""
    import torch

    from codec.base import create
    from codec.encodec.checkpoints import save_project
    from codec.encodec.codec import WEIGHTS_ENV
    from codec.encodec.config import EncodecConfig
    from codec.encodec.model import EncodecModel

    monkeypatch.setenv(WEIGHTS_ENV, "auto")  # registers the undo, so the value main() sets does not leak
    torch.manual_seed(0)
    path = save_project(EncodecModel(EncodecConfig.encodec_24khz().with_(n_filters=4, lstm=0)), tmp_path / "w.pt")
    assert main(["--weights", str(path), "--list"]) == 0
    assert os.environ[WEIGHTS_ENV] == str(path)
    described = create("encodec:24khz@6").describe()
    assert str(path) in str(described) and "random" not in str(described.get("weights", ""))


def _device_run(small_manifest, out, device):
    run(RunConfig(codecs=["encodec:24khz-random", "toymulaw"], bitrates=[6, 128], metrics=["si_snr_db"],
                  data=str(small_manifest), out=str(out), repeats=1, workers=1, progress=False, plugins=[PLUGIN],
                  device=device))
    return {(r["codec_spec"], r["item_id"]): r for r in RunFolder(out).read_rows() if r["status"] == "ok"}


def test_rows_name_the_device_they_ran_on(small_manifest, tmp_path):
    rows = _device_run(small_manifest, tmp_path / "run", "cpu")
    assert {r["device"] for r in rows.values()} == {"cpu"} and len(rows) == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; CPU-only CI has none")
def test_encodec_runs_on_the_gpu_and_scores_as_on_the_cpu(small_manifest, tmp_path):
    on_cpu = _device_run(small_manifest, tmp_path / "cpu", "cpu")
    on_gpu = _device_run(small_manifest, tmp_path / "gpu", "cuda")
    assert on_gpu.keys() == on_cpu.keys()
    for key, row in on_gpu.items():
        expected = "cuda:0 (" if key[0].startswith("encodec") else "cpu"
        assert row["device"].startswith(expected)  # the CPU-only codec stays on the CPU
        assert row["si_snr_db"] == pytest.approx(on_cpu[key]["si_snr_db"], abs=0.05)
