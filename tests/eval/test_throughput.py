"""Throughput of a run: stage seconds in every row, the session record in run.json and throughput.csv, the pool's
longest-first order, and workers that score instead of waiting for the timing lock."""

from __future__ import annotations

import json
import math
import threading

import pandas as pd
import pytest

from encodec_eval.data import load_dataset
from encodec_eval.run.evaluate import RunOptions, evaluate, timing_set
from encodec_eval.run.plan import Job
from encodec_eval.run.runner import longest_first, run
from encodec_eval.run.throughput import throughput
from tests.eval.test_run import METRICS, _config

STAGES = ("load", "codec", "timing", "delay", *METRICS)


def test_rows_and_run_json_carry_the_throughput(small_manifest, tmp_path, capsys):
    out = run(_config(small_manifest, tmp_path / "run", bitrates=[64]))
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    for row in rows:
        stages = {s: row[f"stage_s_{s}"] for s in STAGES}
        assert all(value > 0 for value in stages.values()), stages
        assert row["worker_seconds"] >= sum(stages.values())
        assert row["job_finished_unix"] - row["job_started_unix"] == pytest.approx(row["worker_seconds"], abs=1e-3)
    [record] = json.loads((out / "run.json").read_text())["throughput"]
    audio = sum(r["item_seconds"] for r in rows)
    assert record["rows"] == 2 and record["workers"] == 1
    assert record["audio_seconds"] == pytest.approx(audio)
    assert record["audio_seconds_per_wall_second"] == pytest.approx(audio / record["wall_seconds"])
    assert 0 < record["worker_busy_fraction"] <= 1
    assert set(record["per_stage"]) == set(STAGES)
    codec = record["per_codec"]["toymulaw@64"]
    assert codec["audio_seconds_per_codec_second"] == pytest.approx(audio / sum(r["stage_s_codec"] for r in rows))
    table = pd.read_csv(out / "throughput.csv")
    assert list(table["scope"].unique()) == ["run", "codec", "stage"]
    assert set(table[table["scope"] == "stage"]["name"]) == set(STAGES)
    assert "audio seconds per wall second" in capsys.readouterr().out
    # A resumed session adds its own record, counting only the rows it produced.
    run(_config(small_manifest, tmp_path / "run", bitrates=[64, 128], resume=True))
    records = json.loads((out / "run.json").read_text())["throughput"]
    assert [r["rows"] for r in records] == [2, 2]


def _row(pid: int, start: float, end: float, seconds: float, **stages: float) -> dict:
    return {"pid": pid, "host": "h", "codec_spec": "c@6", "item_seconds": seconds, "job_started_unix": start,
            "job_finished_unix": end, "worker_seconds": end - start,
            **{f"stage_s_{k}": v for k, v in stages.items()}}


def test_throughput_arithmetic():
    rows = [_row(1, 0, 6, 30, codec=1, visqol=5), _row(2, 0, 3, 10, codec=1, visqol=2),
            _row(2, 3, 5, 10, codec=1, visqol=1)]
    record = throughput(rows, wall_seconds=8, workers=2, started_unix=-1)
    assert record["audio_seconds_per_wall_second"] == 50 / 8
    assert record["worker_busy_fraction"] == 11 / 16
    assert record["idle_tail_seconds"] == 1  # worker 2 ran out of jobs at 5, the last ended at 6
    assert record["startup_seconds"] == 1
    assert record["per_stage"]["visqol"]["audio_seconds_per_stage_second"] == 50 / 8
    assert list(record["per_stage"]) == ["visqol", "codec"]  # the biggest share first
    assert record["per_codec"]["c@6"]["audio_seconds_per_codec_second"] == 50 / 3
    assert math.isnan(throughput(rows[:1], 0, 1)["audio_seconds_per_wall_second"])


def test_pool_hands_out_the_longest_items_first(small_manifest, tmp_path):
    items = load_dataset(str(small_manifest)).items
    jobs = [Job("toymulaw@64", item) for item in sorted(items, key=lambda i: i.item_id)]  # till (2.7 s) first
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    lost = Job("toymulaw@64", type(items[0])("lost", broken, "general", ""))
    ordered = longest_first([lost, *jobs])
    assert [j.item.item_id for j in ordered] == ["speech_clean/cmu_arctic_a0007_16k", "general/sonicpi_perc_till",
                                                 "lost"]


@pytest.mark.parametrize("lock_busy", [False, True])
def test_a_worker_scores_while_another_times(small_manifest, lock_busy):
    import tests.eval.toy_codec  # noqa: F401 - registers the toy codec

    item = load_dataset(str(small_manifest)).items[0]
    lock = threading.Lock()
    if lock_busy:
        lock.acquire()
        threading.Timer(0.5, lock.release).start()
    row = evaluate(Job("toymulaw@64", item), RunOptions(METRICS, repeats=1), lock)
    assert row["status"] == "ok", row["error"]
    order = [column[len("stage_s_"):] for column in row if column.startswith("stage_s_")]
    if lock_busy:  # metrics first, then the wait for the lock, then the timing
        assert order.index(METRICS[-1]) < order.index("timing_wait") < order.index("timing")
        assert row["stage_s_timing_wait"] > 0
    else:
        assert order.index("timing") < order.index("delay") and "timing_wait" not in order
    assert not lock.locked()


def test_only_the_timing_set_is_timed_and_on_its_excerpt(small_manifest):
    import tests.eval.toy_codec  # noqa: F401 - registers the toy codec

    speech, general = load_dataset(str(small_manifest)).items  # 4.0 s and 2.7 s
    assert timing_set([speech, general], 1) == {speech.item_id, general.item_id}
    assert timing_set([speech, general], 0) == frozenset()
    options = RunOptions(METRICS, repeats=1, timed_items=frozenset({speech.item_id}), timing_seconds=1.5)
    timed = evaluate(Job("toymulaw@64", speech), options)
    assert timed["rtf_excerpt_seconds"] == pytest.approx(1.5) and 0 < timed["encode_rtf_1thread"] < 1
    assert "encode_rtf_1thread" not in timed["nan_reasons"]
    untimed = evaluate(Job("toymulaw@64", general), options)
    assert untimed["status"] == "ok" and math.isnan(untimed["encode_rtf_allthreads"])
    assert untimed["nan_reasons"]["decode_rtf_1thread"].startswith("not timed: RTF is measured on the timing set")
    assert "stage_s_timing" not in untimed and math.isfinite(untimed["si_snr_db"])
