"""``--resume`` continues a run as run.json recorded it, and says which option differs when one does."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd

from encodec_eval.cli import main
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
