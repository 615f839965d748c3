"""The one timing helper: repeats, interleaving, wall against CPU seconds, threads restored."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import torch

from encodec_eval.run.timing import time_call, time_calls


def test_calls_are_interleaved_in_alternating_order_and_each_repeat_is_kept():
    order: list[str] = []
    timings = time_calls({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3)
    assert order == ["a", "b", "b", "a", "a", "b"]  # other load on the machine slows both alike
    assert all(len(t.wall_seconds) == len(t.cpu_seconds) == 3 for t in timings.values())


WAIT_AND_WORK = """
import json, time
from encodec_eval.run.timing import time_call

def busy():  # 30 ms of this process's CPU, however busy the machine is
    end = time.process_time() + 0.03
    while time.process_time() < end:
        pass

sleeping, working = time_call(lambda: time.sleep(0.03), 2), time_call(busy, 2)
print(json.dumps({"sleeping": [sleeping.min_wall, sleeping.min_cpu],
                  "working": [working.min_wall, working.median_wall, max(working.wall_seconds), working.min_cpu]}))
"""


def test_wall_and_cpu_seconds_tell_waiting_from_working():
    # In a fresh process: CPU seconds are the whole process's, and in this long-lived test process the thread pools
    # of earlier torch work may still spin for a while (OpenMP's wait policy), billing CPU to a sleeping call.
    done = subprocess.run([sys.executable, "-c", WAIT_AND_WORK], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    sleeping_wall, sleeping_cpu = found["sleeping"]
    working_wall, working_median, working_max, working_cpu = found["working"]
    assert sleeping_wall >= 0.03 and sleeping_cpu < 0.01  # waiting costs no CPU
    assert working_cpu >= 0.03 and working_wall >= 0.9 * working_cpu
    assert working_wall <= working_median <= working_max


def test_threads_are_set_for_the_timing_and_restored_and_no_repeats_give_nan():
    before = torch.get_num_threads()
    seen: list[int] = []
    timing = time_call(lambda: seen.append(torch.get_num_threads()), 2, threads=1)
    assert seen == [1, 1] and torch.get_num_threads() == before
    assert not torch.is_inference_mode_enabled()
    empty = time_call(lambda: None, 0)
    assert math.isnan(empty.median_wall) and math.isnan(empty.min_cpu) and timing.min_wall >= 0
