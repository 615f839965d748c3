"""Versions of everything and the machine a run used: recorded in run.json so results can be cited and compared."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from encodec_eval.metrics.base import package_version

PACKAGES = ("encodec-eval", "torch", "numpy", "scipy", "soundfile", "soxr", "pesq", "pystoi", "visqol-python",
            "ai-edge-litert", "pandas", "matplotlib", "opuslib", "lameenc", "encodec", "transformers")


def git_commit(path: Path) -> str:
    """The repository commit (with ``-dirty`` when files differ), or 'unknown' outside a checkout."""
    try:
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# The packages whose versions every row carries (the full list is in run.json).
ROW_PACKAGES = ("encodec-eval", "torch", "numpy", "soxr", "visqol-python", "pesq", "pystoi", "opuslib")


@functools.lru_cache(maxsize=None)
def row_versions() -> str:
    """Compact versions for each row: the project's git commit and the packages that shape the numbers."""
    packages = ", ".join(f"{name} {package_version(name)}" for name in ROW_PACKAGES)
    return f"git {git_commit(Path(__file__).resolve().parents[2])}; {packages}"


def environment() -> dict[str, Any]:
    import soundfile
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "torch_threads_default": torch.get_num_threads(),
        "libsndfile": soundfile.__libsndfile_version__,
        "git_commit": git_commit(Path(__file__).resolve().parents[2]),
        "packages": {name: package_version(name) for name in PACKAGES},
    }
