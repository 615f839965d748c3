"""Run a plan: sequentially, over a process pool, or sharded over torchrun ranks, resuming finished rows.

Rows are appended to rows.jsonl as they finish (by rank 0 under torchrun, which gathers every rank's row after
each round of one job per rank), so an interrupted run loses at most the jobs in flight.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import soundfile as sf
from tqdm import tqdm

from codec.files import why_unreadable
from codec.neural.catalogue import skipped_note, without_weights
from codec.signals import exit_with_parent, ignore_interrupts
from encodec_eval.data import Dataset, load_dataset
from encodec_eval.metrics import get_metric
from encodec_eval.run.environment import environment
from encodec_eval.run.evaluate import RunOptions, describe_codec, evaluate, resolve_device, timing_set
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
    "kbps_measured": "payload bytes * 8 / item seconds / 1000 (every byte the codec emits for the item)",
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
    def duration(job: Job) -> float:
        if why_unreadable(job.item.path) is not None:  # a FIFO would block sf.info for good; its row says why
            return 0.0
        try:
            return sf.info(str(job.item.path)).duration
        except (sf.LibsndfileError, RuntimeError, OSError):
            return 0.0
    return sorted(jobs, key=duration, reverse=True)


def _pool_rows(jobs: list[Job], options: RunOptions, workers: int, plugins: Sequence[str]) -> Iterator[dict[str, Any]]:
    context = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    lock = context.Lock()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                               initargs=(lock, tuple(plugins)))
    finished = False
    try:
        futures = [pool.submit(_worker_evaluate, job, options) for job in longest_first(jobs)]
        for future in as_completed(futures):
            yield future.result()
        finished = True
    finally:
        if not finished:  # a signal, a full disk: the queued jobs are dropped and the running ones stopped
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


_WORKER_LOCK: Any = None


def _init_worker(lock: Any, plugins: tuple[str, ...]) -> None:
    global _WORKER_LOCK
    _WORKER_LOCK = lock
    exit_with_parent()
    ignore_interrupts()
    import torch

    torch.set_num_threads(1)
    import_plugins(plugins)


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


def run(config: RunConfig) -> Optional[Path]:
    """Run the benchmark and write the run folder; returns its path on rank 0 (None on other ranks)."""
    import_plugins(config.plugins)
    rank, world = _distributed()
    dataset = load_dataset(config.data, config.limit_per_category)
    if dataset.skipped and rank == 0:
        print(f"encodec-bench: {len(dataset.skipped)} path(s) under {dataset.root} skipped (e.g. "
              f"{dataset.skipped[0].path}: {dataset.skipped[0].why}); run.json data.skipped lists each and why",
              file=sys.stderr)
    specs = codec_specs(config.codecs, config.bitrates, config.anchors)
    for column in config.metrics:
        get_metric(column)
    options = RunOptions(tuple(config.metrics), config.repeats, config.keep_audio,
                         concurrent_processes=max(1, config.workers) * world,
                         timed_items=timing_set(dataset.items, config.timing_items_per_category),
                         timing_seconds=config.timing_seconds, device=resolve_device(config.device))
    setup = None
    if rank == 0:
        path = Path(config.out) if config.out else new_run_dir(Path(config.runs_dir), config.name)
        folder = RunFolder(path)
        with torch_threads(1):
            folder.create(_run_info(config, dataset, specs, world, options), resume=config.resume)
        setup = (str(path), sorted(folder.done_keys(retry_errors=config.retry_errors)))
    path_text, done = _broadcast(setup, world)
    folder = RunFolder(Path(path_text))
    jobs = plan(specs, dataset, set(done))
    options = dataclasses.replace(options, run_dir=path_text)

    started, started_unix = time.perf_counter(), time.time()
    workers = 1
    if world > 1:
        rows = _sharded_rows(jobs, options, rank, world)
        workers = world
    elif config.workers > 1 and len(jobs) > 1:
        workers = min(config.workers, len(jobs))
        rows = _pool_rows(jobs, options, workers, config.plugins)
    else:
        rows = (evaluate(job, options) for job in jobs)
    bar = tqdm(total=len(jobs), desc="encodec-bench", unit="row", disable=rank != 0 or not config.progress)
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
        _record_throughput(folder, session_rows, time.perf_counter() - started, workers, started_unix)
    report(folder, finished=True)
    return folder.path


def _record_throughput(folder: RunFolder, rows: list[dict[str, Any]], wall_seconds: float, workers: int,
                       started_unix: float) -> None:
    """This session's throughput into run.json (a list: one record per session of a resumed run) and
    throughput.csv (the latest session)."""
    record = {"started_unix": started_unix, **throughput(rows, wall_seconds, workers, started_unix)}
    info = folder.read_info()
    info["throughput"] = info.get("throughput", []) + [record]
    folder.write_info(info)
    with folder.writing("throughput.csv"):
        write_throughput_csv(record, folder.path / "throughput.csv")
    print(f"throughput: {record['audio_seconds_per_wall_second']:.2f} audio seconds per wall second "
          f"({record['audio_seconds']:.0f} s of items in {wall_seconds:.0f} s, {workers} worker(s), busy "
          f"{100 * record['worker_busy_fraction']:.0f} %, start-up {record['startup_seconds']:.1f} s, "
          f"idle tail {record['idle_tail_seconds']:.1f} s)")


def report(folder: RunFolder, finished: bool = False) -> None:
    """rows.csv, summary.csv, plots and the printed tables from the rows on disk (also for a partial run)."""
    from encodec_eval.report.plots import curve_key, write_plots
    from encodec_eval.report.summary import print_summary, summarise, weights_tag

    info = folder.read_info()
    metrics = info["config"]["metrics"]
    all_rows = folder.read_rows()
    if not all_rows:
        raise RunFolderError(f"{folder.path}: no rows yet")
    folder.write_csv(all_rows)
    summary = summarise(all_rows, metrics)
    with folder.writing("summary.csv"):
        summary.to_csv(folder.path / "summary.csv", index=False)
    legend = {curve_key(spec): f"{curve_key(spec)} ({weights_tag(described)} weights)"
              for spec, described in info.get("codecs", {}).items() if weights_tag(described)}
    with folder.writing("plots"):
        write_plots(summary, metrics, folder.path / "plots", legend)
    info.update(rows=len(all_rows),
                rows_by_status={s: sum(r["status"] == s for r in all_rows) for s in {r["status"] for r in all_rows}})
    if finished:
        info["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    folder.write_info(info)
    print_summary(summary, metrics, folder.path, info.get("codecs", {}))
    if info.get("neural_codecs_without_weights"):
        print(skipped_note(info["neural_codecs_without_weights"]))
