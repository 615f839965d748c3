"""``--resume`` continues a run as run.json recorded it, and says which option differs when one does."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd

from encodec_eval.cli import main
from encodec_eval.run.evaluate import CODECS
from tests.eval.conftest import PLUGIN


def _start(small_manifest, out):
    return main(["--plugins", PLUGIN, "--codecs", "toymulaw", "--bw", "64", "--metrics", "si_snr_db,stoi@10k",
                 "--data", str(small_manifest), "--limit-per-category", "1", "--repeats", "0", "--workers", "1",
                 "--no-progress", "--out", str(out)])


def test_resume_needs_only_the_run_folder(small_manifest, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert _start(small_manifest, out) == 0
    rows = out / "rows.jsonl"
    rows.write_text("\n".join(rows.read_text().splitlines()[:1]) + "\n")  # as if it had stopped after one row
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # run.json recorded the data as an absolute path
    assert main(["--out", str(out), "--resume", "--no-progress", "--workers", "1"]) == 0
    assert "cannot resume" not in capsys.readouterr().err
    finished = pd.read_json(rows, lines=True)
    assert len(finished) == 2 and set(finished["codec_spec"]) == {"toymulaw@64"}
    assert {"si_snr_db", "stoi@10k"} <= set(finished.columns)
    info = json.loads((out / "run.json").read_text())
    assert os.path.isabs(info["config"]["data"]) and len(info["resumed"]) == 1


def test_resume_names_the_option_that_differs(small_manifest, tmp_path, capsys):
    out = tmp_path / "run"
    assert _start(small_manifest, out) == 0
    capsys.readouterr()
    assert main(["--out", str(out), "--resume", "--metrics", "si_snr_db"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume: the metrics differ (--metrics)" in err and "si_snr_db,stoi@10k" in err
    other = tmp_path / "other"
    shutil.copytree(small_manifest.parent, other)
    (other / "small.csv").write_text("path,category\nspeech_clean/cmu_arctic_a0007_16k.wav,speech_clean\n")
    assert main(["--out", str(out), "--resume", "--data", str(other / "small.csv")]) == 2
    err = capsys.readouterr().err
    assert "cannot resume: the data differ (--data, --limit-per-category)" in err and str(other) in err


def test_resume_keeps_the_weights_the_run_started_with(small_manifest, tmp_path, capsys, monkeypatch):
    """--weights is an option of the run: a resumed run used the default weights, and its rows of one codec spec
    mixed two models while run.json named only the second."""
    monkeypatch.delenv("ENCODEC_EVAL_WEIGHTS", raising=False)  # --weights sets it for the workers
    out = tmp_path / "run"
    start = ["--codecs", "encodec", "--bw", "1.5", "--metrics", "si_snr_db", "--data", str(small_manifest),
             "--limit-per-category", "1", "--repeats", "0", "--workers", "1", "--no-progress", "--out", str(out)]
    assert main([*start, "--weights", "random"]) == 0  # not the default (trained weights where there are some)
    rows = out / "rows.jsonl"
    rows.write_text("\n".join(rows.read_text().splitlines()[:1]) + "\n")  # as if it had stopped after one row
    monkeypatch.delenv("ENCODEC_EVAL_WEIGHTS", raising=False)  # a new command in a new shell, a new process:
    monkeypatch.setattr(CODECS, "built", {})  # its codecs are built afresh
    assert main(["--out", str(out), "--resume", "--no-progress", "--workers", "1"]) == 0
    finished = pd.read_json(rows, lines=True)
    assert len(finished) == 2
    assert {info["weights_source"] for info in finished["codec_info"]} == {"random"}
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["weights"] == "random"
    assert info["codecs"]["encodec:24khz@1.5"]["weights_source"] == "random"
    # other weights than the run's are refused, with both named
    monkeypatch.setattr(CODECS, "built", {})
    capsys.readouterr()
    assert main(["--out", str(out), "--resume", "--weights", "project"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume: the weights differ (--weights): the run coded encodec:24khz@1.5 with random:" in err
    assert "this command with project:" in err
