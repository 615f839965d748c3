"""An ``encodec-bench`` run to analyse: where it is, what its rows say about their own numbers, and its rate-quality
curves with bootstrap intervals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from encodec_eval.report.paper_keys import PaperCompareError
from encodec_eval.report.stats import bootstrap_interval


def locate_run(repo: Path, run_dir: str = "") -> tuple[Path, Path]:
    """(run.json, rows.csv) of the run to analyse: ``run_dir`` if given, else the newest ``runs/*/`` folder, else the
    default run committed as ``benchmarks/results/default_run_{run.json,rows.csv}``."""
    if run_dir:
        folder = Path(run_dir)
        info, rows = folder / "run.json", folder / "rows.csv"
    else:
        newest = sorted((repo / "runs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
        if newest:
            info, rows = newest[-1], newest[-1].parent / "rows.csv"
        else:
            info = repo / "benchmarks" / "results" / "default_run_run.json"
            rows = repo / "benchmarks" / "results" / "default_run_rows.csv"
    for path in (info, rows):
        if not path.is_file():
            raise PaperCompareError(f"no {path.name} at {path.parent}: give an encodec-bench run folder "
                                    "(ENCODEC_RUN_DIR) or run `make bench`")
    return info, rows


def run_caveats(rows: pd.DataFrame) -> list[str]:
    """What the rows themselves say a reader must know: the weights each model codec used (flagging untrained ones)
    and every distinct codec warning."""
    notes = []
    if "codec_info" in rows.columns:
        for spec, info in rows.drop_duplicates("codec_spec").set_index("codec_spec")["codec_info"].items():
            weights = json.loads(info).get("weights") if isinstance(info, str) and info.startswith("{") else None
            if weights and "random" in str(weights).lower():
                notes.append(f"{spec}: weights are {weights} — its quality scores are those of an untrained network "
                             "(bitrates and timings are still real).")
    if "codec_warnings" in rows.columns:
        notes += [str(w) for w in rows["codec_warnings"].dropna().unique() if str(w).strip()]
    return notes


def rate_quality(rows: pd.DataFrame, metric: str, rate: str = "nominal_kbps",
                 by: Sequence[str] = ("category", "codec"), confidence: float = 0.95,
                 n_boot: int = 2000) -> pd.DataFrame:
    """Mean of ``metric`` per group and bitrate with a percentile-bootstrap interval over items (NaN and infinite
    values left out and counted in ``n_missing``)."""
    missing = [c for c in (metric, rate, *by) if c not in rows.columns]
    if missing:
        raise PaperCompareError(f"rows have no column(s) {missing}; available: {', '.join(rows.columns)}")
    out = []
    for keys, group in rows.groupby([*by, rate], sort=True, dropna=True):
        values = pd.to_numeric(group[metric], errors="coerce").to_numpy()
        interval = bootstrap_interval(values, confidence=confidence, n_boot=n_boot)
        out.append({**dict(zip([*by, rate], keys)), "metric": metric, "mean": interval.mean,
                    "low": interval.low, "high": interval.high, "n": interval.n,
                    "n_missing": interval.n_missing})
    return pd.DataFrame(out)
