"""Run a plan: sequentially, over a process pool, or sharded over torchrun ranks, resuming finished rows.

Rows are appended to rows.jsonl as they finish (by rank 0 under torchrun, which gathers every rank's row after
each round of one job per rank), so an interrupted run loses at most the jobs in flight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib
import multiprocessing as mp
import os
import sys
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import soundfile as sf
from tqdm import tqdm

from codec.base import CodecError
from codec.files import why_unreadable
from codec.neural.catalogue import skipped_note, without_weights
from codec.signals import exit_with_parent, ignore_interrupts
from encodec_eval.data import Dataset, load_dataset
from encodec_eval.metrics import get_metric
from encodec_eval.run.environment import environment
from encodec_eval.run.evaluate import (
    CODECS,
    CodecBuildError,
    RunOptions,
    describe_codec,
    evaluate,
    resolve_device,
    timing_set,
)
from encodec_eval.run.folder import RunFolder, RunFolderError, new_run_dir
from encodec_eval.run.plan import Job, codec_specs, plan
from encodec_eval.run.throughput import throughput
from encodec_eval.run.throughput import write_csv as write_throughput_csv
from encodec_eval.run.timing import torch_threads

DEFINITIONS = {
    "rtf": "processing seconds / audio seconds (lower is faster), measured on the timing set only (`timing` below: "
           "the first items of each category, each on its first `rtf_excerpt_seconds`; other rows say 'not timed' "
           "in nan_reasons): one warm-up encode+decode of the excerpt, then the median of `timing_repeats` calls "
           "at 1 thread and at `threads_all` threads; pool workers take turns to time; `timing_load_avg_1min` is "
           "the machine's load when timing ended",
    "device": "where the codec computed: cpu, or a GPU with its name (--device); metrics always run on the CPU, "
              "and timings on a GPU wait for it to finish (torch.cuda.synchronize) inside the timed span",
    "kbps_nominal": "the bitrate asked for in the codec spec",
    "kbps_measured": "payload bytes * 8 / item seconds / 1000: every byte of the codec's bitstream as stored here "
                     "(EnCodec: the whole .ecdc file, header included; Opus: the raw packets, without the packet "
                     "lengths a container adds, about 0.4 kbps at 20 ms frames; MP3: the frames; Codec2: the packed "
                     "frames; the reference: its PCM)",
    "kbps_payload": "the coded audio alone: kbps_measured without file headers (EnCodec's .ecdc header; the "
                    "other codecs' payloads carry none, so there it equals kbps_measured); the bitrate to compare "
                    "codecs on, and the one the bitrate flag checks",
    "flags": "numbers not to take at face value (encodec_eval/run/sanity.py), joined by '; ': a payload bitrate "
             "more than 10 % from kbps_nominal, a metric at its floor or ceiling (not flagged for the reference), "
             "RTFs timed at a load average above the number of cores",
    "latency_ms": "algorithmic latency the codec declares",
    "decoded_peak": "largest sample magnitude of the decoded audio (full scale is 1); beyond 10 no metric scores it",
    "delay_ms": "lag of decoded vs reference by cross-correlation (positive = decoded late); reported, not corrected",
    "metrics": "both signals mixed to mono and converted to the metric's rate (soxr HQ), cropped to the shorter; "
               "NaN with the reason in nan_reasons when a metric cannot score an item (among others: samples beyond "
               "±10 in either signal, see decoded_peak, or durations further apart than the codec's latency); an "
               "infinite score (SI-SNR "
               "of an exact copy) stays in the row with its reason there; summaries leave NaN and infinite values "
               "out of means and count them in <column>_n_missing with <column>_missing_reasons",
    "stage_s_*": "wall seconds of one job's stages: load, codec (scored encode+decode), timing, timing_wait, delay, "
                 "one per metric; throughput in run.json and throughput.csv (encodec_eval/run/throughput.py)",
}


@dataclasses.dataclass
class RunConfig:
    """Everything the command line chooses."""

    codecs: Sequence[str]
    bitrates: Optional[Sequence[float]]
    metrics: Sequence[str]
    anchors: Sequence[str] = ()
    data: Optional[str] = None
    out: Optional[str] = None
    runs_dir: str = "runs"
    name: str = "bench"
    resume: bool = False
    retry_errors: bool = False
    device: str = "cpu"
    workers: int = 1
    repeats: int = 3
    timing_items_per_category: int = 2
    timing_seconds: float = 3.0
    keep_audio: bool = False
    limit_per_category: Optional[int] = None
    progress: bool = True
    plugins: Sequence[str] = ()
    compare_to: Sequence[str] = ()  # codec specs every other spec is compared with, item by item (report)
    weights: Optional[str] = None  # --weights as chosen (an absolute path for a file), for --resume


class PluginError(ImportError):
    """A --plugins module could not be imported."""


def import_plugins(modules: Sequence[str]) -> None:
    """Import modules that register extra codecs or metrics (called in the main process and in every worker)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise PluginError(f"cannot import plugin module {module!r}: {exc}") from exc


def _distributed() -> tuple[int, int]:
    """(rank, world size); starts a gloo process group when launched by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=dt.timedelta(hours=6))
    return dist.get_rank(), dist.get_world_size()


def _broadcast(value: Any, world: int) -> Any:
    if world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _run_info(config: RunConfig, dataset: Dataset, specs: list[str], world: int,
              options: RunOptions) -> dict[str, Any]:
    return {
        "command": sys.argv,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": dataclasses.asdict(config),
        "codec_specs": specs,
        "codecs": {spec: describe_codec(spec, options.device) for spec in specs},
        "metrics": {column: get_metric(column).describe() for column in config.metrics},
        "data": dataset.describe(),
        "environment": environment(),
        "parallel": {"workers_per_process": config.workers, "torchrun_world_size": world},
        "timing": {"timed_items": sorted(options.timed_items or ()), "excerpt_seconds": options.timing_seconds,
                   "repeats": options.repeats},
        "definitions": DEFINITIONS,
        "neural_codecs_without_weights": without_weights(),
    }


def longest_first(jobs: Sequence[Job]) -> list[Job]:
    """Jobs ordered by their item's duration, longest first, so that the pool's last jobs are short ones and no
    long item (a 30 s ViSQOL, a slow codec) runs alone at the end while the other workers sit idle."""
    durations: dict[Path, float] = {}

    def duration(job: Job) -> float:
        if job.item.path not in durations:
            durations[job.item.path] = 0.0  # a FIFO would block sf.info for good; its row says why
            if why_unreadable(job.item.path) is None:
                try:
                    durations[job.item.path] = sf.info(str(job.item.path)).duration
                except (sf.LibsndfileError, RuntimeError, OSError):
                    pass
        return durations[job.item.path]
    return sorted(jobs, key=duration, reverse=True)


@contextlib.contextmanager
def _worker_pool(workers: int, plugins: Sequence[str], specs: Sequence[str], metrics: Sequence[str],
                 device: str) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` spawned processes, started at once so that their imports and warm-up (building the
    codecs, loading the metrics' models) overlap the bench's own set-up (hashing the data, describing the codecs)
    instead of following it. On an error the workers are ended at once: they hold no work yet, and a worker still
    starting when this process exits would fail to read its start-up arguments, with a traceback."""
    context = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                               initargs=(context.Lock(), tuple(plugins), tuple(specs), tuple(metrics), device))
    for _ in range(workers):  # each submission to a busy pool spawns one more worker
        pool.submit(_ready)
    try:
        yield pool
    except BaseException:  # a signal, a full disk: the queued jobs are dropped and the running ones stopped
        for process in list(pool._processes.values()):  # the executor has no public way to end its workers
            process.terminate()
        pool.shutdown(cancel_futures=True)
        raise
    pool.shutdown()


def _ready() -> None:
    """The task that starts a worker."""


def _pool_rows(pool: ProcessPoolExecutor, jobs: list[Job], options: RunOptions) -> Iterator[dict[str, Any]]:
    futures = [pool.submit(_worker_evaluate, job, options) for job in longest_first(jobs)]
    for future in as_completed(futures):
        yield future.result()


_WORKER_LOCK: Any = None


def _init_worker(lock: Any, plugins: tuple[str, ...], specs: tuple[str, ...], metrics: tuple[str, ...],
                 device: str) -> None:
    """Set a worker up: one torch thread, the plugins, then the codecs and metrics built before the first job.
    Warnings are not printed here: the bench process printed those of building the codecs once, and the warnings
    of coding an item go into its row (``codec_warnings``)."""
    global _WORKER_LOCK
    _WORKER_LOCK = lock
    exit_with_parent()
    ignore_interrupts()
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)
    import_plugins(plugins)
    for spec in specs:
        try:
            CODECS.get(spec, device)
        except (CodecError, CodecBuildError):
            pass  # each of its rows says why
    for column in metrics:
        get_metric(column).warm_up()


def _worker_evaluate(job: Job, options: RunOptions) -> dict[str, Any]:
    return evaluate(job, options, _WORKER_LOCK)


def _sharded_rows(jobs: list[Job], options: RunOptions, rank: int, world: int) -> Iterator[dict[str, Any]]:
    """Rank r takes jobs r, r+world, ... of the longest-first order; after each round rank 0 gathers its rows."""
    import torch.distributed as dist

    mine = longest_first(jobs)[rank::world]  # a round pairs items of similar length: short waits at its gather
    rounds = -(-len(jobs) // world)
    for index in range(rounds):
        row = evaluate(mine[index], options) if index < len(mine) else None
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(row, gathered, dst=0)
        if rank == 0:
            yield from (r for r in gathered if r is not None)


def check_codecs(specs: Sequence[str], device: str) -> None:
    """Stop before any work when a codec's files are missing (EnCodec without its weights): every row of it would
    be an error, after minutes spent on the others. A codec that cannot do what its spec asks (``unsupported``)
    or fails to build for another reason is left to its rows, which say why."""
    for spec in specs:
        try:
            CODECS.get(spec, device)
        except CodecBuildError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                raise CodecError(f"{exc}; nothing was run") from exc
        except CodecError:
            pass


def failed_specs(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Codec specs none of whose rows succeeded, each with its most frequent error: a run whose result for a codec
    is nothing but errors must not look like a success (the command exits non-zero)."""
    by_spec: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_spec.setdefault(row["codec_spec"], []).append(row)
    failed = {}
    for spec, spec_rows in by_spec.items():
        if not any(row["status"] == "ok" for row in spec_rows):
            errors = Counter(f"{row['status']}: {str(row.get('error', '')).split(' | ')[0]}" for row in spec_rows)
            failed[spec] = errors.most_common(1)[0][0]
    return failed


def run(config: RunConfig) -> Optional[Path]:
    """Run the benchmark and write the run folder; returns its path on rank 0 (None on other ranks)."""
    entered = time.perf_counter()
    import_plugins(config.plugins)
    rank, world = _distributed()
    specs = codec_specs(config.codecs, config.bitrates, config.anchors)
    for column in config.metrics:
        get_metric(column)
    device = resolve_device(config.device)
    dataset = load_dataset(config.data, config.limit_per_category)  # before the pool: a wrong --data stops at once
    if dataset.skipped and rank == 0:
        print(f"encodec-bench: {len(dataset.skipped)} path(s) under {dataset.root} skipped (e.g. "
              f"{dataset.skipped[0].path}: {dataset.skipped[0].why}); run.json data.skipped lists each and why",
              file=sys.stderr)
    path = Path(config.out) if config.out else new_run_dir(Path(config.runs_dir), config.name)
    if rank == 0:
        RunFolder(path).check_writable()  # before the workers start: they would be ended mid-start
    setup = {"start and load the data set": time.perf_counter() - entered}
    use_pool = world == 1 and config.workers > 1
    with (_worker_pool(config.workers, config.plugins, specs, config.metrics, device) if use_pool
          else contextlib.nullcontext()) as pool:
        setup["start the workers"] = time.perf_counter() - entered - sum(setup.values())
        check_codecs(specs, device)
        setup["build the codecs"] = time.perf_counter() - entered - sum(setup.values())
        options = RunOptions(tuple(config.metrics), config.repeats, config.keep_audio,
                             concurrent_processes=max(1, config.workers) * world,
                             timed_items=timing_set(dataset.items, config.timing_items_per_category),
                             timing_seconds=config.timing_seconds, device=device)
        shared = None
        if rank == 0:
            folder = RunFolder(path)
            with torch_threads(1):
                folder.create(_run_info(config, dataset, specs, world, options), resume=config.resume)
            shared = (str(path), sorted(folder.done_keys(retry_errors=config.retry_errors)))
        path_text, done = _broadcast(shared, world)
        folder = RunFolder(Path(path_text))
        jobs = plan(specs, dataset, set(done))
        options = dataclasses.replace(options, run_dir=path_text)
        setup["write run.json and plan"] = time.perf_counter() - entered - sum(setup.values())

        started, started_unix = time.perf_counter(), time.time()
        workers = 1
        if world > 1:
            rows = _sharded_rows(jobs, options, rank, world)
            workers = world
        elif pool is not None and jobs:
            workers = min(config.workers, len(jobs))
            rows = _pool_rows(pool, jobs, options)
        else:
            rows = (evaluate(job, options) for job in jobs)
        bar = tqdm(total=len(jobs), desc="encodec-bench", unit="row",
                   disable=True if rank != 0 or not config.progress else None)  # None: only on a terminal
        session_rows = []
        with torch_threads(1):
            for row in rows:
                session_rows.append(row)
                folder.append_row(row)
                bar.set_postfix_str(f"{row['codec_spec']} {row['item_id']} {row['status']}", refresh=False)
                bar.update()
        bar.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    if rank != 0:
        return None

    if session_rows:
        _record_throughput(folder, session_rows, time.perf_counter() - started, workers, started_unix, setup)
    report(folder, finished=True, compare_to=config.compare_to)
    return folder.path


def _record_throughput(folder: RunFolder, rows: list[dict[str, Any]], wall_seconds: float, workers: int,
                       started_unix: float, setup: dict[str, float]) -> None:
    """This session's throughput into run.json (a list: one record per session of a resumed run) and
    throughput.csv (the latest session), with the seconds of each set-up step before the jobs were handed out."""
    record = {"started_unix": started_unix, "setup_seconds": setup,
              **throughput(rows, wall_seconds, workers, started_unix)}
    info = folder.read_info()
    info["throughput"] = info.get("throughput", []) + [record]
    folder.write_info(info)
    with folder.writing("throughput.csv"):
        write_throughput_csv(record, folder.path / "throughput.csv")
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in setup.items())
    print(f"throughput: {record['audio_seconds_per_wall_second']:.2f} audio seconds per wall second "
          f"({record['audio_seconds']:.0f} s of items in {wall_seconds:.0f} s, {workers} worker(s), busy "
          f"{100 * record['worker_busy_fraction']:.0f} %, set-up {sum(setup.values()):.1f} s ({steps}), then "
          f"{record['startup_seconds']:.1f} s to the first job, idle tail {record['idle_tail_seconds']:.1f} s)")


PAIRED_CSV = "paired.csv"


def report(folder: RunFolder, finished: bool = False, compare_to: Optional[Sequence[str]] = None) -> None:
    """rows.csv, summary.csv, plots and the printed tables from the rows on disk (also for a partial run).

    ``compare_to``: codec specs of the run that every other spec is compared with item by item
    (``encodec_eval.report.paired``), printed and written to ``paired.csv``; None: those the run was started with.
    """
    import pandas as pd

    from encodec_eval.report.paired import DEFINITIONS as PAIRED_DEFINITIONS
    from encodec_eval.report.paired import against_baseline, format_against_baseline
    from encodec_eval.report.plots import curve_key, curve_label, write_plots
    from encodec_eval.report.summary import print_summary, summarise

    info = folder.read_info()
    metrics = info["config"]["metrics"]
    baselines = list(info["config"].get("compare_to") or () if compare_to is None else compare_to)
    all_rows = folder.read_rows()
    if not all_rows:
        raise RunFolderError(f"{folder.path}: no rows yet")
    known = list(dict.fromkeys(row["codec_spec"] for row in all_rows))
    unknown = [spec for spec in baselines if spec not in known]
    if unknown:
        raise RunFolderError(f"--compare-to {', '.join(unknown)}: not a codec spec of this run ({', '.join(known)})")
    folder.write_csv(all_rows)
    summary = summarise(all_rows, metrics)
    with folder.writing("summary.csv"):
        summary.to_csv(folder.path / "summary.csv", index=False)
    legend = {curve_key(spec): curve_label(spec, described) for spec, described in info.get("codecs", {}).items()}
    with folder.writing("plots"):
        write_plots(summary, metrics, folder.path / "plots", legend)
    paired = [against_baseline(all_rows, baseline, metrics) for baseline in baselines]
    if paired:
        with folder.writing(PAIRED_CSV):
            pd.concat(paired, ignore_index=True).to_csv(folder.path / PAIRED_CSV, index=False)
        info["definitions"] = {**info.get("definitions", {}), **{f"paired.csv {key}": text for key, text in
                                                                  PAIRED_DEFINITIONS.items()}}
    info.update(rows=len(all_rows),
                rows_by_status={s: sum(r["status"] == s for r in all_rows) for s in {r["status"] for r in all_rows}})
    if finished:
        info["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    folder.write_info(info)
    print_summary(summary, metrics, folder.path, info.get("codecs", {}))
    if info.get("neural_codecs_without_weights"):
        print(skipped_note(info["neural_codecs_without_weights"]))
    for table in paired:
        print("\n" + format_against_baseline(table))
    if paired:
        print(f"paired differences: {folder.path / PAIRED_CSV}")
