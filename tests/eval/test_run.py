"""The run in-process: rows, unsupported bitrates, resume without redoing rows, the process pool, run.json."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pandas as pd
import pytest

from encodec_eval.run import runner
from encodec_eval.run.evaluate import CODECS
from encodec_eval.run.folder import RunFolder, RunFolderError
from encodec_eval.run.runner import RunConfig, report, run
from tests.eval.conftest import PLUGIN
from tests.eval.toy_codec import BROKEN_WEIGHTS_ENV

METRICS = ("si_snr_db", "pesq_wb@16k", "mel_distance@24k")


def _config(manifest, out, **overrides) -> RunConfig:
    settings = dict(codecs=["toymulaw"], bitrates=[16, 64, 128], metrics=list(METRICS), data=str(manifest),
                    out=str(out), repeats=1, workers=1, progress=False, plugins=[PLUGIN])
    settings.update(overrides)
    return RunConfig(**settings)


def test_rows_summary_and_run_json(small_manifest, tmp_path, capsys):
    out = run(_config(small_manifest, tmp_path / "run"))
    rows = RunFolder(out).read_rows()
    assert len(rows) == 6  # 3 bitrates x 2 items
    by_key = {(r["codec_spec"], r["item_id"]): r for r in rows}

    unsupported = by_key[("toymulaw@16", "general/sonicpi_perc_till")]
    assert unsupported["status"] == "unsupported" and "16.0 kbps" in unsupported["error"]
    assert unsupported["si_snr_db"] is None  # NaN in JSON

    speech = by_key[("toymulaw@128", "speech_clean/cmu_arctic_a0007_16k")]
    assert speech["status"] == "ok"
    assert speech["kbps_nominal"] == 128 and speech["kbps_measured"] == pytest.approx(128, rel=1e-3)
    assert speech["delay_samples"] == 3 and speech["latency_samples"] == 3  # the toy codec's 3-sample delay
    assert speech["conversion"] == "none"
    assert speech["pesq_wb@16k"] > 3.0 and speech["nan_reasons"] == {}
    for column in ("encode_rtf_1thread", "decode_rtf_1thread", "encode_rtf_allthreads", "decode_rtf_allthreads"):
        assert 0 < speech[column] < 1
    assert speech["versions"].startswith("git ") and "visqol-python 3.8.0" in speech["versions"]
    assert speech["timing_repeats"] == 1 and speech["timing_load_avg_1min"] >= 0
    general = by_key[("toymulaw@128", "general/sonicpi_perc_till")]
    assert general["conversion"] == "44100Hz/1ch -> 16000Hz/1ch (soxr HQ resampling)"
    assert general["pesq_wb@16k"] is None and "speech metric" in general["nan_reasons"]["pesq_wb@16k"]
    # More bits, better scores: the numbers are real measurements, not placeholders.
    low = by_key[("toymulaw@64", "speech_clean/cmu_arctic_a0007_16k")]
    assert low["pesq_wb@16k"] < speech["pesq_wb@16k"] and low["mel_distance@24k"] > speech["mel_distance@24k"]

    info = json.loads((out / "run.json").read_text())
    assert info["codecs"]["toymulaw@16"] == {"unsupported": "toymulaw: 16.0 kbps is not 16 kHz x 2..8 bits a sample"}
    assert info["metrics"]["pesq_wb@16k"]["version"] == "0.0.4"
    assert info["environment"]["packages"]["torch"].startswith("2.")
    assert info["data"]["sha256_verified"] is False and len(info["data"]["fingerprint_sha256"]) == 64
    assert info["rows_by_status"] == {"ok": 4, "unsupported": 2}

    frame = pd.read_csv(out / "rows.csv")
    assert len(frame) == 6 and frame["pesq_wb@16k"].dtype == float
    assert pd.read_json(out / "rows.jsonl", lines=True).shape[0] == 6
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["category"].unique()) == ["general", "speech_clean", "all"]
    cell = summary[(summary.category == "all") & (summary.codec_spec == "toymulaw@128")].iloc[0]
    assert cell["n_ok"] == 2 and cell["si_snr_db_n"] == 2
    assert cell["si_snr_db_ci_low"] <= cell["si_snr_db_mean"] <= cell["si_snr_db_ci_high"]
    assert cell["pesq_wb@16k_n"] == 1 and cell["pesq_wb@16k_n_missing"] == 1
    assert "unsupported" in summary[summary.codec_spec == "toymulaw@16"]["note"].iloc[0]
    assert (out / "plots" / "pesq_wb_at_16k.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "== category: speech_clean ==" in printed and "pesq_wb@16k" in printed
    assert "toymulaw@16: unsupported" in printed
    assert "codecs:\n  toymulaw@16: toymulaw: 16.0 kbps is not" in printed


def test_resume_redoes_only_missing_rows(small_manifest, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run(_config(small_manifest, out, bitrates=[64, 128]))
    folder = RunFolder(out)
    lines = folder.rows_path.read_text().splitlines()
    assert len(lines) == 4
    folder.rows_path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])  # interrupted mid-write
    report(folder)  # a partial run can be summarised as it stands
    assert len(pd.read_csv(out / "rows.csv")) == 2 and json.loads((out / "run.json").read_text())["rows"] == 2

    with pytest.raises(RunFolderError, match="already holds a run; pass --resume"):
        run(_config(small_manifest, out, bitrates=[64, 128]))
    with pytest.raises(RunFolderError, match="the metrics differ"):
        run(_config(small_manifest, out, bitrates=[64, 128], metrics=["si_snr_db"], resume=True))

    calls = []
    real_evaluate = runner.evaluate
    monkeypatch.setattr(runner, "evaluate", lambda job, *a, **k: calls.append(job.key) or real_evaluate(job, *a, **k))
    run(_config(small_manifest, out, bitrates=[64, 128], resume=True))
    kept = [json.loads(line) for line in lines[:2]]
    assert len(calls) == 2 and set(calls).isdisjoint({f"{r['codec_spec']}|{r['item_id']}" for r in kept})
    rows = folder.read_rows()
    assert len(rows) == 4 and rows[:2] == kept
    assert len({(r["codec_spec"], r["item_id"]) for r in rows}) == 4
    assert len(json.loads((out / "run.json").read_text())["resumed"]) == 1
    assert len(pd.read_csv(out / "rows.csv")) == 4


@pytest.mark.slow  # two spawned workers import torch and the metric libraries: about 30 s
def test_process_pool_gives_the_same_scores(small_manifest, tmp_path):
    serial = RunFolder(run(_config(small_manifest, tmp_path / "serial", bitrates=[64]))).read_rows()
    pooled = RunFolder(run(_config(small_manifest, tmp_path / "pool", bitrates=[64], workers=2))).read_rows()
    key = lambda r: r["item_id"]  # noqa: E731
    for a, b in zip(sorted(serial, key=key), sorted(pooled, key=key)):
        for column in METRICS:
            assert (a[column] is None and b[column] is None) or math.isclose(a[column], b[column], rel_tol=1e-9)
    assert all(r["timing_concurrent_processes"] == 2 for r in pooled)


def test_a_codec_that_cannot_be_built_is_reported_in_its_rows(small_manifest, tmp_path):
    out = run(_config(small_manifest, tmp_path / "run", codecs=["toybroken", "toymulaw"], bitrates=[128],
                      metrics=["si_snr_db"]))
    rows = RunFolder(out).read_rows()
    broken = [r for r in rows if r["codec"] == "toybroken"]
    assert len(broken) == 2 and all(r["status"] == "error" for r in broken)
    assert "cannot build the codec: RuntimeError: toybroken: libtoy.so failed to load" in broken[0]["error"]
    assert all(r["status"] == "ok" for r in rows if r["codec"] == "toymulaw")
    info = json.loads((out / "run.json").read_text())
    assert "libtoy.so failed to load" in info["codecs"]["toybroken@128"]["error"]


def test_retry_errors_reruns_failed_rows_only_when_asked(small_manifest, tmp_path, monkeypatch):
    out = tmp_path / "run"
    settings = dict(codecs=["toybroken", "toymulaw"], bitrates=[64], metrics=["si_snr_db"])
    run(_config(small_manifest, out, **settings))
    folder = RunFolder(out)
    assert sorted(r["status"] for r in folder.read_rows()) == ["error", "error", "ok", "ok"]

    monkeypatch.setenv(BROKEN_WEIGHTS_ENV, "installed")  # the weights arrive; a plain resume keeps the errors
    CODECS.built.clear()  # this process remembers the failed build, as a real resume in a new process would not
    run(_config(small_manifest, out, resume=True, **settings))
    assert sorted(r["status"] for r in folder.read_rows()) == ["error", "error", "ok", "ok"]
    run(_config(small_manifest, out, resume=True, retry_errors=True, **settings))
    rows = folder.read_rows()
    assert [r["status"] for r in rows] == ["ok"] * 4  # the retries supersede the error rows...
    assert len(folder.rows_path.read_text().splitlines()) == 6  # ...which rows.jsonl keeps as history
    assert len(pd.read_csv(out / "rows.csv")) == 4


def test_pool_workers_exit_when_the_bench_is_killed(small_manifest, tmp_path):
    psutil = pytest.importorskip("psutil")
    bench = subprocess.Popen([sys.executable, "-m", "encodec_eval.cli", "--codecs", "toymulaw", "--bw", "64,128",
                              "--plugins", PLUGIN, "--metrics", "si_snr_db,visqol_audio@48k",
                              "--data", str(small_manifest), "--out", str(tmp_path / "run"), "--workers", "2",
                              "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(bench.pid)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(parent.children(recursive=True)) < 3:  # 2 workers + tracker
        time.sleep(0.2)
    children = parent.children(recursive=True)
    assert len(children) >= 3, "the pool did not start"
    bench.kill()  # SIGKILL: the bench cannot shut its pool down
    bench.wait()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"still running after the bench was killed: {[p.cmdline()[-3:] for p in alive]}"


def test_a_run_from_an_older_version_resumes(small_manifest, tmp_path):
    """run.json written before the data record gained ``skipped``: still the same data, so the run resumes."""
    out = tmp_path / "run"
    run(_config(small_manifest, out, bitrates=[64], metrics=["si_snr_db"]))
    folder = RunFolder(out)
    info = folder.read_info()
    del info["data"]["skipped"]
    folder.write_info(info)
    run(_config(small_manifest, out, bitrates=[64, 128], metrics=["si_snr_db"], resume=True))
    assert len(folder.read_rows()) == 4
