"""How fast a run went: audio seconds processed per second of wall time, for the run, per codec and per stage.

Each row carries the seconds of its stages (``stage_s_codec``, ``stage_s_timing``, ``stage_s_<metric>``...) and
when its job started and ended. From these and the session's wall time: the run's throughput on all its workers,
each stage's single-core throughput and share of the busy time, how busy the workers were, and the idle tail (the
time between the first worker running out of jobs and the last job ending).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Optional, Sequence

from encodec_eval.run.timing import STAGE_PREFIX

DEFINITIONS = {
    "audio_seconds_per_wall_second": "seconds of items processed (each codec spec x item counts once) per second of "
                                     "the session's wall time, all workers together",
    "audio_seconds_per_stage_second": "seconds of items a stage processed per second spent in it by one worker "
                                      "(one core): its single-core throughput",
    "worker_busy_fraction": "seconds workers spent in jobs / (wall seconds x workers); the rest is start-up, "
                            "the idle tail and waiting for results",
    "startup_seconds": "from handing out the jobs to the first job starting (starting the worker processes)",
    "idle_tail_seconds": "from the first worker running out of jobs to the last job ending",
    "stage timing_wait": "a worker waiting for the timing lock (pool workers time one at a time)",
}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def throughput(rows: Sequence[dict[str, Any]], wall_seconds: float, workers: int,
               started_unix: Optional[float] = None) -> dict[str, Any]:
    """The throughput record of one session's rows (see ``DEFINITIONS``); ``started_unix``: when the session's
    jobs were handed out (before the pool started)."""
    first_job = min((r["job_started_unix"] for r in rows if _finite(r.get("job_started_unix"))), default=float("nan"))
    audio = sum(r["item_seconds"] for r in rows if _finite(r.get("item_seconds")))
    busy = sum(r["worker_seconds"] for r in rows if _finite(r.get("worker_seconds")))
    last_end_per_worker: dict[Any, float] = {}
    for r in rows:
        if _finite(r.get("job_finished_unix")):
            key = (r.get("host"), r.get("pid"))
            last_end_per_worker[key] = max(last_end_per_worker.get(key, 0.0), r["job_finished_unix"])
    ends = sorted(last_end_per_worker.values())
    stages: dict[str, dict[str, float]] = {}
    for r in rows:
        for column, value in r.items():
            if column.startswith(STAGE_PREFIX) and _finite(value):
                stage = stages.setdefault(column[len(STAGE_PREFIX):], {"seconds": 0.0, "audio_seconds": 0.0})
                stage["seconds"] += value
                stage["audio_seconds"] += r["item_seconds"]
    per_codec: dict[str, dict[str, float]] = {}
    for r in rows:
        if _finite(r.get("item_seconds")):
            entry = per_codec.setdefault(r["codec_spec"], {"items": 0, "audio_seconds": 0.0, "codec_seconds": 0.0,
                                                           "job_seconds": 0.0})
            entry["items"] += 1
            entry["audio_seconds"] += r["item_seconds"]
            entry["codec_seconds"] += r.get(f"{STAGE_PREFIX}codec", 0.0) or 0.0
            entry["job_seconds"] += r.get("worker_seconds", 0.0) or 0.0
    for entry in per_codec.values():
        entry["audio_seconds_per_codec_second"] = _ratio(entry["audio_seconds"], entry["codec_seconds"])
        entry["audio_seconds_per_job_second"] = _ratio(entry["audio_seconds"], entry["job_seconds"])
    for stage in stages.values():
        stage["audio_seconds_per_stage_second"] = _ratio(stage["audio_seconds"], stage["seconds"])
        stage["share_of_busy"] = _ratio(stage["seconds"], busy)
    return {
        "rows": len(rows), "workers": workers, "wall_seconds": wall_seconds, "audio_seconds": audio,
        "audio_seconds_per_wall_second": _ratio(audio, wall_seconds),
        "worker_busy_fraction": _ratio(busy, wall_seconds * workers),
        "startup_seconds": first_job - started_unix if started_unix is not None else float("nan"),
        "idle_tail_seconds": ends[-1] - ends[0] if len(ends) > 1 else 0.0,
        "per_codec": per_codec,
        "per_stage": dict(sorted(stages.items(), key=lambda kv: -kv[1]["seconds"])),
        "definitions": DEFINITIONS,
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def write_csv(record: dict[str, Any], path: Path) -> Path:
    """throughput.csv: one row for the run, one per codec spec, one per stage."""
    rows = [{"scope": "run", "name": "all", "audio_seconds": record["audio_seconds"],
             "seconds": record["wall_seconds"], "audio_seconds_per_second": record["audio_seconds_per_wall_second"],
             "share_of_busy": record["worker_busy_fraction"], "what": "wall time, all workers"}]
    rows += [{"scope": "codec", "name": spec, "audio_seconds": e["audio_seconds"], "seconds": e["codec_seconds"],
              "audio_seconds_per_second": e["audio_seconds_per_codec_second"], "share_of_busy": float("nan"),
              "what": "encode+decode (scored pass), one core"} for spec, e in record["per_codec"].items()]
    rows += [{"scope": "stage", "name": name, "audio_seconds": s["audio_seconds"], "seconds": s["seconds"],
              "audio_seconds_per_second": s["audio_seconds_per_stage_second"], "share_of_busy": s["share_of_busy"],
              "what": "one core"} for name, s in record["per_stage"].items()]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
