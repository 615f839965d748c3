"""What a benchmark ran on: every results file carries this, so ratios can be compared across machines."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from encodec_eval.run.environment import environment


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """The toolkit's environment record (versions, git commit) plus CPU model, memory, threads and current load."""
    memory_gb = float("nan")
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        pass
    return {
        **environment(),
        "cpu": cpu_model(),
        "memory_gb": round(memory_gb, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        # other work on the machine slows every timing; the ratios, measured in one run, suffer less
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
