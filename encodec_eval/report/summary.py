"""Per category x codec x bitrate: means with 95 % bootstrap intervals over items, as a table and for the terminal."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from encodec_eval.metrics import MetricError, get_metric
from encodec_eval.metrics.base import is_speech
from encodec_eval.report.stats import bootstrap_interval

ALL = "all"
EXTRA_COLUMNS = ("kbps_measured", "delay_ms", "encode_rtf_1thread", "decode_rtf_1thread", "encode_rtf_allthreads",
                 "decode_rtf_allthreads")


#: Columns averaged with each item weighted by its duration: a bitrate over a set is its total bits over its total
#: seconds, and a 1-sample item's container overhead (1920 kbps) must not weigh as much as a minute of audio.
DURATION_WEIGHTED = ("kbps_measured",)


def _cell(rows: pd.DataFrame, column: str) -> dict[str, Any]:
    """Mean, 95 % bootstrap bounds and count over the finite scores; NaN and infinite scores are left out and
    counted in ``n_missing``, with their reasons (``missing_reasons``: "count x reason" joined by "; "). An
    infinite score (SI-SNR of an exact copy, a metric that overflowed) would make a mean meaningless."""
    values = rows[column] if column in rows else pd.Series(dtype=float)
    numbers = pd.to_numeric(values.replace({"inf": np.inf, "-inf": -np.inf}), errors="coerce").to_numpy(dtype=float)
    weights = None
    if column in DURATION_WEIGHTED and "item_seconds" in rows:
        weights = pd.to_numeric(rows["item_seconds"], errors="coerce").to_numpy(dtype=float)
    interval = bootstrap_interval(numbers, weights=weights)
    reasons = rows["nan_reasons"] if "nan_reasons" in rows and column in rows else pd.Series([{}] * numbers.size)
    why: Counter[str] = Counter()
    for number, recorded in zip(numbers, reasons):
        if not np.isfinite(number):
            reason = recorded.get(column) if isinstance(recorded, dict) else None
            why[reason or f"{number} (no reason recorded)"] += 1
    return {"mean": interval.mean, "ci_low": interval.low, "ci_high": interval.high, "n": interval.n,
            "n_missing": interval.n_missing,
            "missing_reasons": "; ".join(f"{count} x {reason}" for reason, count in why.most_common())}


def _note(group: pd.DataFrame, failed: pd.DataFrame) -> str:
    """Every distinct failure with its count (most frequent first), else the first codec warning (e.g. a bitrate
    the codec could not reach)."""
    if not failed.empty:
        messages = (failed["status"] + ": " + failed["error"].fillna("").map(lambda e: e.split(" | ")[0][:200]))
        counts = messages.value_counts(sort=True)
        return "; ".join(f"{message} ({count} item{'s' * (count > 1)})" for message, count in counts.items())
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
                for stat, value in _cell(ok, column).items():
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


def _applies(column: str, category: str) -> bool:
    """Whether a metric scores items of this category (speech metrics do not score music)."""
    try:
        metric = get_metric(column)
    except MetricError:  # a plugin metric not imported by this process: assume it applies
        return True
    return "speech" not in metric.needs or category == ALL or is_speech(category)


def format_summary(summary: pd.DataFrame, metrics: Sequence[str],
                   codecs: Optional[dict[str, dict[str, Any]]] = None) -> str:
    """Plain-text tables, one per category, every number labelled with what it is. Metrics that do not apply to a
    category get no column there; cells that left scores out list how many and why under the table."""
    if summary.empty:
        return "no rows"
    lines = ["Means over items with 95 % percentile-bootstrap intervals (2000 resamples) [low, high]; NaN and",
             "infinite scores are left out (counted under each table); kbps = measured payload bitrate",
             "(total bits / total seconds: items weighted by duration);",
             "RTF = processing s / audio s at 1 thread (lower is faster), on the timing set only (run.json: timing)."]
    weights = {spec: weights_tag(info) for spec, info in (codecs or {}).items() if weights_tag(info)}
    for category, part in summary.groupby("category", sort=False):
        table = pd.DataFrame({"codec@kbps": part["codec_spec"]})
        if weights:
            table["weights"] = part["codec_spec"].map(lambda spec: weights.get(spec, "-"))
        table["n_ok"] = part["n_ok"].astype(str) + "/" + part["n_items"].astype(str)
        table["kbps_measured"] = part["kbps_measured_mean"].map(lambda v: f"{v:.3g}" if np.isfinite(v) else "nan")
        shown = [column for column in metrics if _applies(column, category)]
        for column in shown:
            table[column] = [_fmt(m, lo, hi) for m, lo, hi in
                             zip(part[f"{column}_mean"], part[f"{column}_ci_low"], part[f"{column}_ci_high"])]
        for column in ("encode_rtf_1thread", "decode_rtf_1thread"):
            table[column] = part[f"{column}_mean"].map(lambda v: f"{v:.3g}" if np.isfinite(v) else "nan")
        lines += ["", f"== category: {category} ==", table.to_string(index=False)]
        notes = part[part["note"] != ""]
        lines += [f"  {spec}: {note}" for spec, note in zip(notes["codec_spec"], notes["note"])]
        if category != ALL:  # the per-category tables already list every left-out score
            for column in shown:
                missing = part[part[f"{column}_n_missing"] > 0]
                lines += [f"  {spec} {column}: {count} not scored: {why}" for spec, count, why in
                          zip(missing["codec_spec"], missing[f"{column}_n_missing"],
                              missing[f"{column}_missing_reasons"])]
    return "\n".join(lines)


WEIGHTS_TAGS = {"official": "Meta's official", "hf": "Meta's, via HF", "project": "project's own, not Meta's",
                "random": "RANDOM, untrained", "path": "from a file"}


def weights_tag(info: dict[str, Any]) -> str:
    """A few words on whose weights a codec ran with (its run.json description's ``weights_source``), for table
    columns and plot legends; '' for codecs without weights."""
    source = str(info.get("weights_source", ""))
    return WEIGHTS_TAGS.get(source, source)


def format_codecs(codecs: dict[str, dict[str, Any]]) -> str:
    """One line per codec spec: implementation and weights in words (or why it could not run), as recorded in
    run.json; then, when any EnCodec row ran without Meta's official weights, how to get them."""
    lines = ["codecs:"]
    for spec, info in codecs.items():
        facts = [str(info[key]) for key in ("unsupported", "error", "implementation", "weights") if key in info]
        lines.append(f"  {spec}: " + "; ".join(facts or [str(info.get("codec", "?"))]))
        if info.get("weights_in_words"):
            lines.append(f"      weights: {info['weights_in_words']}")
    hints = dict.fromkeys(info["weights_hint"] for info in codecs.values() if info.get("weights_hint"))
    lines += [f"note: {hint}" for hint in hints]
    return "\n".join(lines)


def print_summary(summary: pd.DataFrame, metrics: Sequence[str], run_dir: Path,
                  codecs: dict[str, dict[str, Any]]) -> None:
    print(format_summary(summary, metrics, codecs))
    print(format_codecs(codecs))
    print(f"\nrun folder: {run_dir} (rows.jsonl, rows.csv, summary.csv, plots/)")
