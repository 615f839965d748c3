"""Per category x codec x bitrate: means with 95 % bootstrap intervals over items, as a table and for the terminal."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from encodec_eval.metrics import MetricError, get_metric
from encodec_eval.metrics.base import is_speech
from encodec_eval.report.stats import bootstrap_interval
from encodec_eval.run.sanity import (
    AT_CEILING_BY_DESIGN,
    LOAD_FLAG,
    SEPARATOR,
    bitrate_flag,
    bound_flag,
    bound_of,
    load_flag,
)

ALL = "all"
EXTRA_COLUMNS = ("kbps_measured", "kbps_payload", "delay_ms", "encode_rtf_1thread", "decode_rtf_1thread",
                 "encode_rtf_allthreads", "decode_rtf_allthreads")


#: Columns averaged with each item weighted by its duration: a bitrate over a set is its total bits over its total
#: seconds, and a 1-sample item's container overhead (1920 kbps) must not weigh as much as a minute of audio.
DURATION_WEIGHTED = ("kbps_measured", "kbps_payload")


def _cell(rows: pd.DataFrame, column: str) -> dict[str, Any]:
    """Mean, 95 % bootstrap bounds and count over the finite scores; NaN and infinite scores are left out and
    counted in ``n_missing``, with their reasons (``missing_reasons``: "count x reason" joined by "; "). An
    infinite score (SI-SNR of an exact copy, a metric that overflowed) would make a mean meaningless."""
    numbers = _numbers(rows, column)
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
    """Every distinct failure with its count (most frequent first), then the first codec warning (e.g. a bitrate
    the codec could not reach)."""
    parts = []
    if not failed.empty:
        messages = (failed["status"] + ": " + failed["error"].fillna("").map(lambda e: e.split(" | ")[0][:200]))
        counts = messages.value_counts(sort=True)
        parts += [f"{message} ({count} item{'s' * (count > 1)})" for message, count in counts.items()]
    warned = group["codec_warnings"].dropna() if "codec_warnings" in group else pd.Series(dtype=str)
    warned = warned[warned != ""]
    if not warned.empty:
        parts.append(f"warning ({len(warned)} items): {warned.iloc[0]}"[:300])
    return "; ".join(parts)


def _codec_info(group: pd.DataFrame) -> dict[str, Any]:
    """The codec's description as its first scored row recorded it (a dict, or JSON text in rows.csv)."""
    infos = group["codec_info"].dropna() if "codec_info" in group else pd.Series(dtype=object)
    for info in infos:
        if isinstance(info, str) and info.startswith("{"):
            info = json.loads(info)
        if isinstance(info, dict):
            return info
    return {}


def _numbers(group: pd.DataFrame, column: str) -> np.ndarray:
    values = group[column] if column in group else pd.Series(np.nan, index=group.index)
    return pd.to_numeric(values.replace({"inf": np.inf, "-inf": -np.inf}), errors="coerce").to_numpy(dtype=float)


def _highest(group: pd.DataFrame, column: str) -> float:
    values = _numbers(group, column)
    return float(values[np.isfinite(values)].max()) if np.isfinite(values).any() else float("nan")


def _flags(ok: pd.DataFrame, record: dict[str, Any], metrics: Sequence[str], codec: str) -> str:
    """The cell's sanity flags (``encodec_eval.run.sanity``): its duration-weighted payload bitrate against the
    request, each metric's scores at a bound, and the highest load its speeds were timed at."""
    payload = record["kbps_payload_mean"]  # runs made before kbps_payload existed have only kbps_measured
    flags = [bitrate_flag(record["kbps_nominal"], payload if np.isfinite(payload) else record["kbps_measured_mean"])]
    if codec not in AT_CEILING_BY_DESIGN:
        for column in metrics:
            values = _numbers(ok, column)
            bounds = Counter(bound for value in values if (bound := bound_of(column, value)) is not None)
            flags += [bound_flag(column, bound, count, int(np.isfinite(values).sum()))
                      for bound, count in bounds.items()]
    flags.append(load_flag(record["timing_load_avg_1min_max"], record["cores"]))
    return SEPARATOR.join(flag for flag in flags if flag)


def summarise(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per category (and 'all') x codec spec; rows that failed count in n_failed with their first error.

    Each cell names the weights its codec ran with (``weights``, ``weights_sha256``; empty for codecs without
    weights), the highest load average its speeds were timed at, and its sanity flags (``flags``)."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame()
    out = []
    for category in sorted(frame["category"].unique()) + [ALL]:
        part = frame if category == ALL else frame[frame["category"] == category]
        for spec, group in part.groupby("codec_spec", sort=False):
            ok = group[group["status"] == "ok"]
            failed = group[group["status"] != "ok"]
            info = _codec_info(group)
            record: dict[str, Any] = {
                "category": category, "codec": group["codec"].iloc[0], "codec_spec": spec,
                "kbps_nominal": group["kbps_nominal"].iloc[0], "weights": weights_tag(info),
                "weights_sha256": info.get("weights_sha256", ""), "n_items": len(group), "n_ok": len(ok),
                "n_failed": len(failed), "note": _note(group, failed),
                "timing_load_avg_1min_max": _highest(ok, "timing_load_avg_1min"), "cores": _highest(ok, "threads_all"),
            }
            for column in list(EXTRA_COLUMNS) + list(metrics):
                for stat, value in _cell(ok, column).items():
                    record[f"{column}_{stat}"] = value
            record["flags"] = _flags(ok, record, metrics, record["codec"])
            out.append(record)
    summary = pd.DataFrame(out)
    summary["_all_last"] = summary["category"] == ALL
    summary = summary.sort_values(["_all_last", "category", "codec", "kbps_nominal"], kind="stable", ignore_index=True)
    return summary.drop(columns="_all_last")


def _number(value: float) -> str:
    """Three significant digits, without an exponent for large values (a PCM anchor's 1152 kbps, not 1.15e+03)."""
    if not np.isfinite(value):
        return str(value)
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _fmt(mean: float, low: float, high: float) -> str:
    if not np.isfinite(mean) or not (np.isfinite(low) and np.isfinite(high)):
        return _number(mean)
    return f"{_number(mean)} [{_number(low)}, {_number(high)}]"


def _applies(column: str, category: str) -> bool:
    """Whether a metric scores items of this category (speech metrics do not score music)."""
    try:
        metric = get_metric(column)
    except MetricError:  # a plugin metric not imported by this process: assume it applies
        return True
    return "speech" not in metric.needs or category == ALL or is_speech(category)


_NOTE_START = re.compile(r"; (?=(?:error|unsupported|warning)\b)")


def _grouped(cells: pd.DataFrame, column: str, split: Callable[[str], list[str]]) -> list[str]:
    """Lines of ``column`` (notes or flags) over the cells of one category: a text that several codec specs share
    (one unreadable file fails every codec) is printed once, naming them, or ``every codec spec``."""
    specs: dict[str, list[str]] = {}
    for spec, text in zip(cells["codec_spec"], cells[column]):
        for part in split(str(text)) if isinstance(text, str) and text else []:
            specs.setdefault(part, []).append(spec)
    every = len(cells) > 1
    return [f"  {'every codec spec' if every and len(names) == len(cells) else ', '.join(names)}: {part}"
            for part, names in specs.items()]


def format_summary(summary: pd.DataFrame, metrics: Sequence[str],
                   codecs: Optional[dict[str, dict[str, Any]]] = None) -> str:
    """Plain-text tables, one per category, every number labelled with what it is. Metrics that do not apply to a
    category get no column there; cells that left scores out list how many and why under the table. Failures,
    codec warnings and sanity flags follow the tables once, over all items."""
    if summary.empty:
        return "no rows"
    lines = ["Means over items with 95 % percentile-bootstrap intervals (2000 resamples) [low, high]; NaN and",
             "infinite scores are left out (counted under each table). kbps_measured = every byte of the codec's",
             "bitstream (EnCodec's .ecdc file with its header), kbps_payload = the coded audio alone; both are total",
             "bits / total seconds (items weighted by duration). RTF = processing s / audio s at 1 thread (lower is",
             "faster), on the timing set only (run.json: timing); load = the highest 1-minute load average while",
             "they were timed."]
    words = {spec: weights_tag(info) for spec, info in (codecs or {}).items()}
    weights = [tag or words.get(spec, "") for spec, tag in
               zip(summary["codec_spec"], summary.get("weights", pd.Series("", index=summary.index)))]
    summary = summary.assign(weights=[tag or "-" for tag in weights])
    for category, part in summary.groupby("category", sort=False):
        table = pd.DataFrame({"codec@kbps": part["codec_spec"]})
        if any(tag != "-" for tag in part["weights"]):
            table["weights"] = part["weights"]
        table["n_ok"] = part["n_ok"].astype(str) + "/" + part["n_items"].astype(str)
        for column in ("kbps_measured", "kbps_payload"):
            table[column] = part[f"{column}_mean"].map(_number)
        shown = [column for column in metrics if _applies(column, category)]
        for column in shown:
            table[column] = [_fmt(m, lo, hi) for m, lo, hi in
                             zip(part[f"{column}_mean"], part[f"{column}_ci_low"], part[f"{column}_ci_high"])]
        for column in ("encode_rtf_1thread", "decode_rtf_1thread"):
            table[column] = part[f"{column}_mean"].map(_number)
        table["load"] = part["timing_load_avg_1min_max"].map(lambda v: f"{v:.1f}" if np.isfinite(v) else "-")
        lines += ["", f"== category: {category} ==", table.to_string(index=False)]
        if category != ALL:  # the per-category tables already list every left-out score
            for column in shown:
                missing = part[part[f"{column}_n_missing"] > 0]
                lines += [f"  {spec} {column}: {count} not scored: {why}" for spec, count, why in
                          zip(missing["codec_spec"], missing[f"{column}_n_missing"],
                              missing[f"{column}_missing_reasons"])]
    overall = summary[summary["category"] == ALL]
    notes = _grouped(overall, "note", _NOTE_START.split)
    if notes:
        lines += ["", "failures and codec warnings (all items):", *notes]
    # the machine's load is the same for every codec: one line for the run, the highest load of any cell
    flags = _grouped(overall, "flags", lambda text: [f for f in text.split(SEPARATOR) if not f.startswith(LOAD_FLAG)])
    load = load_flag(_highest(overall, "timing_load_avg_1min_max"), _highest(overall, "cores"))
    flags += [f"  speeds of every codec spec: {load} (column load)"] if load else []
    if flags:
        lines += ["", "FLAGS: numbers not to take at face value (all items):", *flags]
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
