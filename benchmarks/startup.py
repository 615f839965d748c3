"""Where ``encodec-bench`` spends its time before the first row, and how long a small run waits for it.

    .venv/bin/python benchmarks/startup.py [--repeats 3] [--out benchmarks/results] [--code LABEL=PATH ...]

Two measurements on the embedded default set, each in fresh processes, as a user meets them:

1. ``end_to_end``: a 4-row run (one item per category; ``opus@6``, then ``encodec:24khz@6``; every default metric;
   ``--repeats 1``, two workers) launched as ``python -m encodec_eval.cli``. From the launch: when the first job
   started (its row's ``job_started_unix``), when the first row reached ``rows.jsonl`` and when the command ended.
   The first job is the longest item (the pool takes the longest first), so the first row also waits for one job.
2. ``phases``: the steps before a first row, timed one after the other, in a fresh interpreter as the bench
   process takes them (start of Python, importing the command, loading the data set, describing every codec of the
   default run for run.json, the environment record) and in a fresh interpreter as a spawned pool worker takes
   them (its imports, building each codec of the default run, each default metric's first call on a 3 s item).

``--code LABEL=PATH`` (repeatable) measures other checkouts' code (e.g. ``before=/tmp/base``, a copy of the
commit before a change) with this environment's packages, interleaved with each other, so that a before/after
comparison sees the same machine under the same load; the default is this checkout, labelled ``current``. Results:
``NAME.json`` (every repeat, the medians, the machine and its load) and ``NAME.csv`` (medians) in ``--out``;
``--skip-end-to-end`` measures the phases only. Phases carry wall seconds and, as ``cpu: <step>``, the CPU seconds
of the process in the step: on a shared machine the CPU seconds say how much work a step is.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPECS = ["encodec:24khz@1.5", "encodec:24khz@3", "encodec:24khz@6", "encodec:24khz@12", "opus@1.5", "opus@3",
                 "opus@6", "opus@12"]
RUNS = {"opus@6": ["--codecs", "opus", "--bw", "6"], "encodec:24khz@6": ["--codecs", "encodec", "--bw", "6"]}


def _env(code: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1"}


def end_to_end(code: Path, codec_args: list[str]) -> dict[str, float]:
    """Seconds from launch to the first job's start, to the first row on disk, and to the end of the command."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        launched = time.time()
        process = subprocess.Popen(
            [sys.executable, "-m", "encodec_eval.cli", *codec_args, "--limit-per-category", "1", "--repeats", "1",
             "--workers", "2", "--no-progress", "--out", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(code), cwd=tmp)
        first_row = None
        rows_path = out / "rows.jsonl"
        while process.poll() is None:
            if first_row is None and rows_path.is_file() and rows_path.stat().st_size:
                first_row = time.time() - launched
            time.sleep(0.02)
        ended = time.time() - launched
        stderr = process.stderr.read()
        if process.returncode != 0:
            raise RuntimeError(f"encodec-bench failed ({process.returncode}): {stderr[-2000:]}")
        rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    first = min(rows, key=lambda row: row["job_started_unix"])
    return {"first_job_started_s": first["job_started_unix"] - launched, "first_row_s": first_row or ended,
            "first_job_s": first["worker_seconds"], "command_s": ended, "rows": len(rows)}


class _Laps(dict):
    """Wall seconds of each step since the previous one, and the CPU seconds of this process in it (``cpu: ``
    entries): on a machine shared with other work, CPU seconds say how much work a step is, wall seconds how long
    it took there."""

    def __init__(self) -> None:
        super().__init__()
        self.last = (time.perf_counter(), time.process_time())

    def __call__(self, name: str) -> None:
        now = (time.perf_counter(), time.process_time())
        self[name], self[f"cpu: {name}"] = now[0] - self.last[0], now[1] - self.last[1]
        self.last = now


def _phases_main() -> dict[str, float]:
    """The bench process's steps before it hands out jobs (run in a fresh interpreter by ``phases``)."""
    lap = _Laps()
    import encodec_eval.cli  # noqa: F401 - what the console script imports first
    lap("import encodec_eval.cli")
    from encodec_eval.data import load_dataset
    from encodec_eval.run.environment import environment, row_versions
    from encodec_eval.run.evaluate import describe_codec

    load_dataset(None, 1)
    lap("load the data set")
    for spec in DEFAULT_SPECS:
        describe_codec(spec)
    lap("describe the codecs (builds them)")
    environment()
    row_versions()
    lap("environment and versions")
    return lap


def _phases_worker() -> dict[str, float]:
    """A spawned pool worker's steps before and during its first job (run in a fresh interpreter)."""
    lap = _Laps()
    import encodec_eval.run.runner  # noqa: F401 - what unpickling the pool's initializer imports
    lap("worker: import the runner")
    from codec import audio
    from encodec_eval.data import default_data_dir
    from encodec_eval.metrics import DEFAULT_METRICS, get_metric
    from encodec_eval.run.evaluate import CODECS

    for spec in DEFAULT_SPECS:
        CODECS.get(spec)
    lap("worker: build the codecs")
    wav, sr = audio.load(default_data_dir() / "speech_clean" / "cmu_arctic_a0007_16k.wav")
    wav = wav[:, : 3 * sr]
    decoded = wav + 0.01 * (wav[:, ::-1] if wav.shape[-1] else wav)
    for column in DEFAULT_METRICS:
        get_metric(column).measure(wav, sr, decoded, sr, "speech_clean")
        lap(f"worker: first {column}")
    return lap


def phases(code: Path) -> dict[str, float]:
    """Every step's seconds, plus the interpreter's own start (``python -c pass``)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=_env(code))
    laps = {"start Python": time.perf_counter() - started}
    for which in ("main", "worker"):
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--phase", which], check=True,
                              capture_output=True, text=True, env=_env(code))
        laps.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return laps


def _medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(sample[key] for sample in samples), 3) for key in samples[0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for the results")
    parser.add_argument("--code", action="append", default=[], metavar="LABEL=PATH",
                        help="a checkout whose code to measure, under a label (default: current=this checkout)")
    parser.add_argument("--skip-end-to-end", action="store_true", help="measure the phases only")
    parser.add_argument("--name", default="startup", help="results file names: NAME.json and NAME.csv")
    parser.add_argument("--phase", choices=("main", "worker"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(_phases_main() if args.phase == "main" else _phases_worker()))
        return
    sys.path.insert(0, str(ROOT))
    from benchmarks.machine import machine_info

    codes = dict(text.split("=", 1) for text in args.code) if args.code else {"current": str(ROOT)}
    load_before = os.getloadavg()
    samples: dict[str, dict[str, list[dict[str, float]]]] = {label: {} for label in codes}
    for _ in range(args.repeats):  # interleaved, so that other work on the machine slows every measurement alike
        for label, code in codes.items():
            samples[label].setdefault("phases", []).append(phases(Path(code)))
            for name, codec_args in ({} if args.skip_end_to_end else RUNS).items():
                samples[label].setdefault(f"end_to_end {name}", []).append(end_to_end(Path(code), codec_args))
    medians = {label: {name: _medians(values) for name, values in measured.items()}
               for label, measured in samples.items()}
    record = {"codes": codes, "repeats": args.repeats, "medians": medians, "samples": samples,
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "machine": machine_info()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    table = [{"label": label, "measurement": name, "step": step, "median_seconds": value}
             for label, measured in medians.items() for name, values in measured.items()
             for step, value in values.items()]
    with open(args.out / f"{args.name}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    for label, measured in medians.items():
        for name, values in measured.items():
            print(f"{label} {name}: " + ", ".join(f"{step} {value:.2f}" for step, value in values.items()))
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}; written to {args.out}")


if __name__ == "__main__":
    main()
