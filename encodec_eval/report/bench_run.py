"""An ``encodec-bench`` run to analyse: where it is, what its rows say about their own numbers, and its rate-quality
curves with bootstrap intervals."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from encodec_eval.report.paper_keys import PaperCompareError
from encodec_eval.report.plots import curve_label
from encodec_eval.report.stats import bootstrap_interval
from encodec_eval.run.sanity import SEPARATOR

#: Weights sources that are Meta's EnCodec (the official files, or their Hugging Face copy).
META_WEIGHTS = ("official", "hf")


def user_path(text: str) -> Optional[Path]:
    """A path given in an environment variable, as the user meant it: a relative one is read from the folder the
    command was started in (``$PWD``, which a Jupyter kernel inherits while its own working directory is the
    notebook's folder), or from the current folder where only that one holds it. None for ''."""
    if not text:
        return None
    path = Path(text).expanduser()
    if path.is_absolute():
        return path
    started = Path(os.environ.get("PWD") or Path.cwd()) / path
    here = Path.cwd() / path
    return here if not started.exists() and here.exists() else started


def locate_run(repo: Path, run_dir: str = "") -> tuple[Path, Path]:
    """(run.json, rows.csv) of the run to analyse: ``run_dir`` if given (relative to where the user stands, see
    :func:`user_path`), else the newest ``runs/*/`` folder, else the default run committed as
    ``benchmarks/results/default_run_{run.json,rows.csv}``."""
    folder = user_path(run_dir)
    if folder is not None:
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
            raise PaperCompareError(f"no {path.name} at {path.parent.absolute()}: give an encodec-bench run folder "
                                    "(ENCODEC_RUN_DIR, absolute or relative to where you started the notebook) "
                                    "or run `make bench`")
    return info, rows


def _info(value: Any) -> dict[str, Any]:
    if isinstance(value, str) and value.startswith("{"):
        return json.loads(value)
    return value if isinstance(value, dict) else {}


def described_codecs(rows: pd.DataFrame, codecs: Optional[Mapping[str, Any]] = None) -> dict[str, dict[str, Any]]:
    """Each codec spec's description: run.json's ``codecs`` where it has one, else its first row's ``codec_info``."""
    out = {spec: _info(value) for spec, value in (codecs or {}).items()}
    if "codec_info" in rows.columns:
        for spec, value in rows.dropna(subset=["codec_info"]).drop_duplicates("codec_spec")[
                ["codec_spec", "codec_info"]].itertuples(index=False):
            if not out.get(spec):
                out[spec] = _info(value)
    return out


def codec_labels(rows: pd.DataFrame, codecs: Optional[Mapping[str, Any]] = None) -> pd.Series:
    """Each row's curve label, with the weights in words where the codec has weights
    (``encodec:24khz (project's own, not Meta's weights)``), as the bench's summary and plot legends say it."""
    described = described_codecs(rows, codecs)
    return rows["codec_spec"].map(lambda spec: curve_label(spec, described.get(spec, {})))


def not_the_papers_model(rows: pd.DataFrame, codecs: Optional[Mapping[str, Any]] = None) -> str:
    """A sentence for figures that put our EnCodec beside the paper's numbers when ours did not run Meta's weights
    (the project's 16-channel model, random weights, a file): they are different models. '' when all were Meta's."""
    described = described_codecs(rows, codecs)
    others = {curve_label(spec, info): info.get("weights_in_words") or str(info.get("weights"))
              for spec, info in described.items()
              if info.get("weights") and str(info.get("weights_source", "")) not in META_WEIGHTS}
    if not others:
        return ""
    ours = "; ".join(f"{label}: {words}" for label, words in others.items())
    return (f"Different models: the paper's numbers are Meta's EnCodec (32 channels), ours are not ({ours}). "
            "Compare to see the gap, not as a reproduction.")


def run_caveats(rows: pd.DataFrame, codecs: Optional[Mapping[str, Any]] = None) -> list[str]:
    """What the rows themselves say a reader must know: the weights of each model codec that did not run Meta's
    (the project's own model, random or other weights), every distinct codec warning, and the sanity flags of the
    rows (``encodec_eval.run.sanity``) with their counts."""
    notes = []
    for spec, info in described_codecs(rows, codecs).items():
        weights = str(info.get("weights") or "")
        source = str(info.get("weights_source") or weights.replace(":", " ").split(" ")[0])  # "official: /x.th"
        if not weights or source in META_WEIGHTS:
            continue
        words = info.get("weights_in_words") or f"weights are {weights}"
        note = f"{spec}: {words}"
        if source == "random":
            note += " — its quality scores are those of an untrained network (bitrates and timings are still real)."
        notes.append(note)
    if "codec_warnings" in rows.columns:
        notes += [str(w) for w in rows["codec_warnings"].dropna().unique() if str(w).strip()]
    if "flags" in rows.columns:
        counted = Counter((spec, flag) for spec, text in zip(rows["codec_spec"], rows["flags"])
                          if isinstance(text, str) for flag in text.split(SEPARATOR) if flag)
        notes += [f"{spec}: FLAG {flag} ({count} item{'s' * (count > 1)})" for (spec, flag), count in counted.items()]
    return notes


def _duration_weighted(rows: pd.DataFrame, column: str) -> float:
    """Mean of ``column`` with each row weighted by its ``item_seconds`` (equal weights without that column)."""
    values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)
    weights = (pd.to_numeric(rows["item_seconds"], errors="coerce").to_numpy(dtype=float)
               if "item_seconds" in rows.columns else np.ones_like(values))
    keep = np.isfinite(values) & np.isfinite(weights)
    return float((values[keep] * weights[keep]).sum() / weights[keep].sum()) if weights[keep].sum() > 0 else np.nan


def rate_quality(rows: pd.DataFrame, metric: str, rate: str = "nominal_kbps",
                 by: Sequence[str] = ("category", "codec"), confidence: float = 0.95,
                 n_boot: int = 2000, measured: str = "kbps_measured") -> pd.DataFrame:
    """Mean of ``metric`` per group and bitrate with a percentile-bootstrap interval over items (NaN and infinite
    values left out and counted in ``n_missing``). Groups are per requested bitrate (``rate``); where the rows
    have a ``measured`` bitrate column, each group also gets its measured bitrate in ``kbps_measured`` (total bits
    over total seconds when rows carry ``item_seconds``), which the curves are drawn at: Opus asked for 1.5 kbps
    runs at about 4.4."""
    missing = [c for c in (metric, rate, *by) if c not in rows.columns]
    if missing:
        raise PaperCompareError(f"rows have no column(s) {missing}; available: {', '.join(rows.columns)}")
    out = []
    for keys, group in rows.groupby([*by, rate], sort=True, dropna=True):
        values = pd.to_numeric(group[metric], errors="coerce").to_numpy()
        interval = bootstrap_interval(values, confidence=confidence, n_boot=n_boot)
        record = {**dict(zip([*by, rate], keys)), "metric": metric, "mean": interval.mean, "low": interval.low,
                  "high": interval.high, "n": interval.n, "n_missing": interval.n_missing}
        if measured in group.columns:
            record["kbps_measured"] = _duration_weighted(group, measured)
        out.append(record)
    return pd.DataFrame(out)
