"""The project's one way to time a call: warmed up by the caller, repeated, wall and CPU seconds kept.

The harness's real-time factors and every speed benchmark under ``benchmarks/`` time through :func:`time_calls`.
Speeds are named by convention: ``rtf`` is processing time / audio duration (lower is faster; 0.1 = ten times
faster than real time), ``x_realtime`` is audio duration / processing time (higher is faster).
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Optional

import torch


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run a block with ``count`` intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def all_threads() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed call: wall clock, and the CPU time of this process (all its threads; with one thread,
    what the call cost without waiting for other processes on a shared machine). No calls: every statistic is NaN."""

    wall_seconds: tuple[float, ...]
    cpu_seconds: tuple[float, ...]

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall_seconds) if self.wall_seconds else math.nan

    @property
    def min_wall(self) -> float:
        return min(self.wall_seconds, default=math.nan)

    @property
    def min_cpu(self) -> float:
        return min(self.cpu_seconds, default=math.nan)


def time_calls(calls: Mapping[str, Callable[[], object]], repeats: int, threads: Optional[int] = None,
               synchronize: Callable[[], None] = lambda: None, autograd: bool = False) -> dict[str, Timing]:
    """Time each of ``calls`` ``repeats`` times (the caller has already warmed them up), in inference mode.

    Calls are interleaved, in alternating order from round to round, so that other work on the machine slows them
    alike when they are compared. ``threads`` sets torch's intra-op threads for the timing (None: as they are).
    ``synchronize`` waits for the device a call queued work on (a GPU), inside the timed span. Calls run in
    inference mode unless ``autograd`` (training steps, which backpropagate).
    """
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    with (torch_threads(threads) if threads is not None else contextlib.nullcontext()), \
            torch.inference_mode(not autograd):
        for round_ in range(max(repeats, 0)):
            for name in names if round_ % 2 == 0 else names[::-1]:
                synchronize()
                start_cpu, start = time.process_time(), time.perf_counter()
                calls[name]()
                synchronize()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return {name: Timing(tuple(wall[name]), tuple(cpu[name])) for name in names}


def time_call(call: Callable[[], object], repeats: int, threads: Optional[int] = None,
              synchronize: Callable[[], None] = lambda: None) -> Timing:
    """:func:`time_calls` for one call."""
    return time_calls({"call": call}, repeats, threads, synchronize)["call"]


class StageClock:
    """Wall seconds spent in each stage of one job (codec, timing, each metric...), for the throughput report."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def columns(self) -> dict[str, float]:
        """Row columns ``stage_s_<stage>``."""
        return {f"{STAGE_PREFIX}{name}": value for name, value in self.seconds.items()}


STAGE_PREFIX = "stage_s_"
