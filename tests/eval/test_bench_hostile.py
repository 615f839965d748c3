"""``encodec-bench`` under hostile conditions (issue 28, items 5, 6, 9, 10 and 11): decoded audio no metric can
judge, ``kill -9`` and ``--resume``, a full disk, folders it may not write, Ctrl-C and SIGTERM, and files that
differ only by their suffix.

The installed command runs in a subprocess wherever the process itself is what is tested; the test-only codecs of
``tests.eval.hostile_codecs`` misbehave on purpose.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from encodec_eval.run.folder import RunFolder
from encodec_eval.run.runner import RunConfig, run
from tests.conftest import REPO, kill_when, run_unprivileged
from tests.eval.conftest import PLUGIN

BENCH = Path(sys.executable).parent / "encodec-bench"
PLUGINS = f"{PLUGIN},tests.eval.hostile_codecs"
#: Row columns that a rerun must reproduce exactly (timings, process ids and clocks differ by nature).
STABLE = ("item_id", "category", "item_sha256", "codec_spec", "status", "error", "kbps_measured", "payload_bytes",
          "decoded_seconds", "decoded_peak", "delay_samples", "si_snr_db", "stoi@10k", "nan_reasons")


def _speech_items(folder: Path, count: int) -> Path:
    """``count`` noisy tones of 1 to 1.5 s at 16 kHz, and a CSV manifest of them (category speech_clean)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["path,category"]
    for index in range(count):
        n = 16000 + 800 * index
        t = np.arange(n) / 16000
        voiced = 0.3 * np.sin(2 * np.pi * (150 + 15 * index) * t) * np.sin(2 * np.pi * 2 * t)
        wav = voiced + 0.01 * rng.standard_normal(n)
        sf.write(folder / f"s{index:02d}.wav", wav.astype(np.float32), 16000, subtype="PCM_16")
        lines.append(f"s{index:02d}.wav,speech_clean")
    (folder / "set.csv").write_text("\n".join(lines) + "\n")
    return folder / "set.csv"


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def _argv(data: Path, out: Path, codecs: str = "toysleepy@64,toymulaw@128", *extra: str) -> list[str]:
    return [str(BENCH), "--plugins", PLUGINS, "--codecs", codecs, "--metrics", "si_snr_db,stoi@10k",
            "--data", str(data), "--out", str(out), "--repeats", "0", "--no-progress", *extra]


def _stable(rows: list[dict]) -> dict[str, dict]:
    return {f"{r['codec_spec']}|{r['item_id']}": {k: r.get(k) for k in STABLE} for r in rows}


# ---- 5, 6: decoded audio that no metric can judge ------------------------------------------------------------------
def test_a_truncated_or_huge_decoded_output_is_not_scored_and_says_why(small_manifest, tmp_path):
    """A decoded output half as long as the reference scored +inf SI-SNR ("equals the reference"), and one of 1e30
    samples 152 dB: every metric now gives NaN with the reason, and the row carries the decoded peak."""
    out = run(RunConfig(codecs=["toyhalf@64", "toyhuge@64", "toymulaw@64"], bitrates=None,
                        metrics=["si_snr_db", "pesq_wb@16k", "stoi@10k", "mel_distance@24k"], data=str(small_manifest),
                        out=str(tmp_path / "run"), repeats=0, progress=False, plugins=PLUGINS.split(",")))
    rows = {(r["codec_spec"], r["item_id"]): r for r in RunFolder(out).read_rows()}
    speech = "speech_clean/cmu_arctic_a0007_16k"
    for (spec, item), row in rows.items():
        assert row["status"] == "ok", row["error"]
        scored = [c for c in ("si_snr_db", "pesq_wb@16k", "stoi@10k", "mel_distance@24k")
                  if "speech" in item or c in ("si_snr_db", "mel_distance@24k")]
        for column in scored:
            if spec == "toymulaw@64":
                assert row[column] is not None and column not in row["nan_reasons"]
            elif spec == "toyhalf@64":
                assert row[column] is None and row["nan_reasons"][column].startswith("length mismatch: decoded ")
            else:
                assert row[column] is None and "beyond ±10 (full scale is ±1)" in row["nan_reasons"][column]
    assert rows[("toyhuge@64", speech)]["decoded_peak"] > 1e29
    assert rows[("toymulaw@64", speech)]["decoded_peak"] < 1
    summary = pd.read_csv(out / "summary.csv")
    cell = summary[(summary.codec_spec == "toyhalf@64") & (summary.category == "all")].iloc[0]
    assert cell["si_snr_db_n_missing"] == 2 and "length mismatch" in cell["si_snr_db_missing_reasons"]


# ---- 10: kill -9 and --resume ---------------------------------------------------------------------------------------
def test_resume_after_kill_9_at_three_random_points_loses_and_repeats_nothing(tmp_path):
    """Killed three times at random row counts (a row may be half-written when it dies), each time resumed: no row
    lost or duplicated, and every row equals the uninterrupted run's."""
    data = _speech_items(tmp_path / "data", 10)
    whole = tmp_path / "whole"
    done = subprocess.run(_argv(data, whole, "toysleepy@64,toymulaw@128", "--workers", "1"), env=_env(),
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr
    expected = _stable(RunFolder(whole).read_rows())
    assert len(expected) == 20

    out = tmp_path / "killed"
    points = sorted(random.Random(28).sample(range(1, 19), 3))
    for number, rows in enumerate(points):
        resume = ["--resume"] if number else []
        kill_when(_argv(data, out, "toysleepy@64,toymulaw@128", "--workers", "1", *resume), out / "rows.jsonl", rows,
                  env=_env(), cwd=REPO)
    done = subprocess.run(_argv(data, out, "toysleepy@64,toymulaw@128", "--workers", "1", "--resume"), env=_env(),
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lines = []
    for line in (out / "rows.jsonl").read_text().splitlines():
        row = json.loads(line)  # torn lines were dropped when the run resumed
        lines.append(f"{row['codec_spec']}|{row['item_id']}")
    assert sorted(lines) == sorted(set(lines)), "a row was written twice"
    assert _stable(RunFolder(out).read_rows()) == expected
    assert len(pd.read_csv(out / "rows.csv")) == 20


# ---- 9, 11: a full disk -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kib,stage", [(72, "rows"), (160, "plots")])
def test_a_full_disk_is_one_line_and_the_rows_written_stay(small_manifest, tmpfs, kib, stage):
    """The run folder on a disk that fills while rows are appended, or later while plots are drawn: two
    ``OSError: [Errno 28]`` tracebacks before; one line naming the file now, and the rows written so far intact."""
    disk = tmpfs(kib)
    out = disk / "run"
    done = subprocess.run(_argv(small_manifest, out, "toymulaw@64,toymulaw@128,toymulaw@32", "--workers", "1",
                                "--metrics", "si_snr_db,stoi@10k,mel_distance@24k,pesq_wb@16k"),
                          env=_env(), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"encodec-bench: error: cannot write {out}"), last
    assert last.endswith(f"no space left on the device; the rows finished so far are kept in {out / 'rows.jsonl'}")
    rows = RunFolder(out).read_rows()
    assert rows and all(row["status"] == "ok" for row in rows)
    if stage == "plots":
        assert len(rows) == 6 and "plots" in last


# ---- 11: folders it may not write --------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--out", "--runs-dir"])
def test_a_run_folder_it_may_not_write_is_one_line(shared_tmp, option):
    data = _speech_items(shared_tmp / "data", 1)
    for path in (shared_tmp / "data").iterdir():
        path.chmod(0o644)
    locked = shared_tmp / "locked"
    locked.mkdir(mode=0o555)
    target = locked / "run"
    argv = _argv(data, target, "toymulaw@64")
    if option == "--runs-dir":
        argv[argv.index("--out"): argv.index("--out") + 2] = ["--runs-dir", str(locked)]
    done = run_unprivileged(argv, env=_env(HOME=str(shared_tmp), MPLCONFIGDIR=str(shared_tmp)), cwd=REPO)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"encodec-bench: error: cannot write {locked}/") and last.endswith(": permission denied")


# ---- 11: Ctrl-C and SIGTERM --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_bench_with_one_line(tmp_path, sig, status):
    """Ctrl-C printed an 18-line KeyboardInterrupt traceback, SIGTERM a "leaked semaphore" warning. Ctrl-C reaches
    the whole process group, so the signal goes to the group here, workers included."""
    data = _speech_items(tmp_path / "data", 6)
    out = tmp_path / "run"
    process = subprocess.Popen(_argv(data, out, "toysleepy@64", "--workers", "2"), env=_env(), cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not ((out / "rows.jsonl").is_file() and (out / "rows.jsonl").read_text()) and process.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, process.stderr.read()
        os.killpg(process.pid, sig)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == status, err
    assert err.strip() == (f"encodec-bench: stopped by {signal.Signals(sig).name}; the rows finished so far are kept "
                           "in rows.jsonl; --resume goes on")


# ---- 11: files that differ only by suffix ------------------------------------------------------------------------
def test_files_that_differ_only_by_suffix_are_two_items_everywhere(tmp_path):
    """a.wav and a.flac shared the item id "a": rows.jsonl kept both, rows.csv, summary.csv and run.json one, and a
    resume after an interruption never coded the second."""
    data = tmp_path / "data"
    data.mkdir()
    wav = (0.2 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    sf.write(data / "a.wav", wav, 16000)
    sf.write(data / "a.flac", wav[::-1].copy(), 16000)
    sf.write(data / "b.wav", wav, 16000)
    out = tmp_path / "run"
    config = dict(codecs=["toymulaw@64"], bitrates=None, metrics=["si_snr_db"], data=str(data), out=str(out),
                  repeats=0, progress=False, plugins=[PLUGIN])
    run(RunConfig(**config))
    folder = RunFolder(out)
    assert sorted(r["item_id"] for r in folder.read_rows()) == ["a.flac", "a.wav", "b"]
    assert len(pd.read_csv(out / "rows.csv")) == 3 and json.loads((out / "run.json").read_text())["rows"] == 3
    summary = pd.read_csv(out / "summary.csv")
    assert summary[summary.category == "all"]["n_ok"].iloc[0] == 3
    lines = folder.rows_path.read_text().splitlines()
    folder.rows_path.write_text(lines[0] + "\n")  # as if killed after the first row
    run(RunConfig(**{**config, "resume": True}))
    assert sorted(r["item_id"] for r in folder.read_rows()) == ["a.flac", "a.wav", "b"]
    assert math.isfinite(next(r for r in folder.read_rows() if r["item_id"] == "a.flac")["si_snr_db"])
