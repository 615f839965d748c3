"""Per category x codec x bitrate: means with 95 % bootstrap intervals over items, as a table and for the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from encodec_eval.report.stats import bootstrap_interval

ALL = "all"
EXTRA_COLUMNS = ("kbps_measured", "delay_ms", "encode_rtf_1thread", "decode_rtf_1thread", "encode_rtf_allthreads",
                 "decode_rtf_allthreads")


def _cell(values: pd.Series) -> dict[str, float]:
    """Mean, 95 % bootstrap bounds, count and NaN count; an infinite score (SI-SNR of an exact copy) makes the
    mean infinite and the interval undefined rather than being dropped."""
    numbers = pd.to_numeric(values.replace({"inf": np.inf, "-inf": -np.inf}), errors="coerce").to_numpy(dtype=float)
    scored = numbers[~np.isnan(numbers)]
    if np.isinf(scored).any():
        return {"mean": float(scored.mean()), "ci_low": float("nan"), "ci_high": float("nan"), "n": int(scored.size),
                "n_nan": int(numbers.size - scored.size)}
    interval = bootstrap_interval(scored)
    return {"mean": interval.mean, "ci_low": interval.low, "ci_high": interval.high, "n": interval.n,
            "n_nan": int(numbers.size - scored.size)}


def _note(group: pd.DataFrame, failed: pd.DataFrame) -> str:
    """The first failure, else the first codec warning (e.g. a bitrate it could not reach)."""
    if not failed.empty:
        return f"{failed['status'].iloc[0]}: {failed['error'].iloc[0]}"[:300]
    warned = group["codec_warnings"].dropna() if "codec_warnings" in group else pd.Series(dtype=str)
    warned = warned[warned != ""]
    return f"warning ({len(warned)} items): {warned.iloc[0]}"[:300] if not warned.empty else ""


def summarise(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per category (and 'all') x codec spec; rows that failed count in n_failed with their first error."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame()
    out = []
    for category in sorted(frame["category"].unique()) + [ALL]:
        part = frame if category == ALL else frame[frame["category"] == category]
        for spec, group in part.groupby("codec_spec", sort=False):
            ok = group[group["status"] == "ok"]
            failed = group[group["status"] != "ok"]
            record: dict[str, Any] = {
                "category": category, "codec": group["codec"].iloc[0], "codec_spec": spec,
                "kbps_nominal": group["kbps_nominal"].iloc[0], "n_items": len(group), "n_ok": len(ok),
                "n_failed": len(failed),
                "note": _note(group, failed),
            }
            for column in list(EXTRA_COLUMNS) + list(metrics):
                values = ok[column] if column in ok else pd.Series(dtype=float)
                for stat, value in _cell(values).items():
                    record[f"{column}_{stat}"] = value
            out.append(record)
    summary = pd.DataFrame(out)
    summary["_all_last"] = summary["category"] == ALL
    summary = summary.sort_values(["_all_last", "category", "codec", "kbps_nominal"], kind="stable", ignore_index=True)
    return summary.drop(columns="_all_last")


def _fmt(mean: float, low: float, high: float) -> str:
    if np.isnan(mean):
        return "nan"
    if np.isinf(mean):
        return str(mean)
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{mean:.3g}"
    return f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def format_summary(summary: pd.DataFrame, metrics: Sequence[str]) -> str:
    """Plain-text tables, one per category, every number labelled with what it is."""
    if summary.empty:
        return "no rows"
    lines = ["Means over items with 95 % percentile-bootstrap intervals (2000 resamples) [low, high];",
             "RTF = processing s / audio s at 1 thread (lower is faster); kbps = measured payload bitrate."]
    for category, part in summary.groupby("category", sort=False):
        table = pd.DataFrame({
            "codec@kbps": part["codec_spec"], "n_ok": part["n_ok"].astype(str) + "/" + part["n_items"].astype(str),
            "kbps_measured": part["kbps_measured_mean"].map(lambda v: f"{v:.3g}" if np.isfinite(v) else "nan"),
        })
        for column in metrics:
            table[column] = [_fmt(m, lo, hi) for m, lo, hi in
                             zip(part[f"{column}_mean"], part[f"{column}_ci_low"], part[f"{column}_ci_high"])]
        for column in ("encode_rtf_1thread", "decode_rtf_1thread"):
            table[column] = part[f"{column}_mean"].map(lambda v: f"{v:.3g}" if np.isfinite(v) else "nan")
        lines += ["", f"== category: {category} ==", table.to_string(index=False)]
        notes = part[part["note"] != ""]
        lines += [f"  {spec}: {note}" for spec, note in zip(notes["codec_spec"], notes["note"])]
    return "\n".join(lines)


def format_codecs(codecs: dict[str, dict[str, Any]]) -> str:
    """One line per codec spec: implementation and weights (or why it could not run), as recorded in run.json."""
    lines = ["codecs:"]
    for spec, info in codecs.items():
        facts = [str(info[key]) for key in ("unsupported", "error", "implementation", "weights") if key in info]
        lines.append(f"  {spec}: " + "; ".join(facts or [str(info.get("codec", "?"))]))
    return "\n".join(lines)


def print_summary(summary: pd.DataFrame, metrics: Sequence[str], run_dir: Path,
                  codecs: dict[str, dict[str, Any]]) -> None:
    print(format_summary(summary, metrics))
    print(format_codecs(codecs))
    print(f"\nrun folder: {run_dir} (rows.jsonl, rows.csv, summary.csv, plots/)")
