"""Real-time factors: warmed up, repeated, median, at one thread and at all threads.

RTF here is processing time divided by audio duration (lower is faster; 0.1 = ten times faster than real time).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from typing import Callable, Iterator

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


def median_seconds(call: Callable[[], object], repeats: int, threads: int,
                   synchronize: Callable[[], None] = lambda: None) -> float:
    """Median wall time of ``repeats`` calls at ``threads`` threads (the caller has already warmed ``call`` up).
    ``synchronize`` waits for the device a call queued work on (a GPU), inside the timed span."""
    if repeats < 1:
        return float("nan")
    times = []
    with torch_threads(threads), torch.inference_mode():
        for _ in range(repeats):
            synchronize()
            start = time.perf_counter()
            call()
            synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


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
