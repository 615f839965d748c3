"""Where the public metric test vectors live (never copied into the repository) and their expected values."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV_VAR = "ENCODEC_EVAL_VECTORS"


def vectors_dir() -> Optional[Path]:
    """$ENCODEC_EVAL_VECTORS, else ../shared/data/vectors beside the repository; None when absent."""
    for candidate in (os.environ.get(ENV_VAR), REPO.parent / "shared" / "data" / "vectors"):
        if candidate and (Path(candidate) / "EXPECTED.tsv").is_file():
            return Path(candidate)
    return None


def require_vectors() -> Path:
    found = vectors_dir()
    if found is None:
        pytest.skip(f"metric test vectors absent: set {ENV_VAR} or place them at {REPO.parent}/shared/data/vectors "
                    "(public ViSQOL/PESQ test data, not shipped in this repository)")
    return found


def expected_rows() -> list[dict[str, str]]:
    found = vectors_dir()
    if found is None:
        return []
    with open(found / "EXPECTED.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))
