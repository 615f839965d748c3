"""Paired comparison of two conditions scored on the same items: the bootstrap interval of per-item differences.

Two codecs' means with overlapping intervals over items can still differ on nearly every item: the items vary far
more than the codecs' difference. Pairing each item's score under one condition with its score under the other
removes the item-to-item spread, so the interval is that of the difference itself. ``encodec-bench --compare-to``
uses it for every condition of a run against a baseline; the ablation table uses it for pairs of arms.

Public API: :func:`paired_differences` (rows of two conditions in, one row per category x metric out) and
:func:`encodec_eval.report.stats.paired_difference_interval` (two aligned arrays in, an ``Interval`` out).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from encodec_eval.report.stats import paired_difference_interval

ALL = "all"
RowsLike = Union[pd.DataFrame, Sequence[Mapping[str, Any]]]

#: The columns of :func:`paired_differences`' result, in order.
COLUMNS = ("category", "metric", "n_pairs", "n_left_out", "condition_mean", "baseline_mean", "difference_mean",
           "difference_ci_low", "difference_ci_high", "verdict")

DEFINITIONS = {
    "difference": "condition minus baseline, per item, on the items both conditions scored with a finite value",
    "difference_ci_low/high": "percentile bootstrap over items of the mean difference (items resampled as pairs)",
    "n_left_out": "items of the category that cannot be paired: in one condition only, or NaN / infinite in either",
    "verdict": "better / worse when the interval excludes 0 (by the metric's direction), else 'no clear difference'",
}


def _frame(rows: RowsLike, item: str, category: Optional[str], name: str) -> pd.DataFrame:
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    needed = [item] + ([category] if category else [])
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} rows have no column(s) {missing}")
    repeated = frame[item][frame[item].duplicated()].unique()
    if len(repeated):
        raise ValueError(f"{name} rows hold items more than once (e.g. {repeated[0]!r}): pass one row per item "
                         "of a single condition")
    return frame.set_index(item)


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats; JSON's "inf" / "-inf" strings (as rows.jsonl holds them) become infinities, anything
    that is not a number becomes NaN."""
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    values = frame[column].replace({"inf": np.inf, "-inf": -np.inf})
    return pd.to_numeric(values, errors="coerce").astype(float)


def _verdict(low: float, high: float, higher_is_better: Optional[bool]) -> str:
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 <= high:
        return "no clear difference"
    higher = low > 0
    if higher_is_better is None:
        return "higher" if higher else "lower"
    return "better" if higher == higher_is_better else "worse"


def paired_differences(condition: RowsLike, baseline: RowsLike, metrics: Sequence[str], *,
                       item: str = "item_id", category: Optional[str] = "category",
                       higher_is_better: Optional[Mapping[str, bool]] = None, confidence: float = 0.95,
                       n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per category (and ``"all"``) and metric: the mean per-item difference ``condition - baseline`` with its
    percentile-bootstrap interval over items.

    ``condition`` and ``baseline`` are the per-item rows of two conditions (a DataFrame or a list of dicts, e.g.
    ``encodec-bench`` rows of one codec spec each), one row per item, matched on ``item``. ``category`` names the
    column that groups items (None: only ``"all"``); the baseline's category of an item is used. Items in one
    condition only, or with a NaN or infinite score in either, are left out of that metric and counted in
    ``n_left_out``. ``higher_is_better`` maps a metric to its direction, so that ``verdict`` says ``better`` or
    ``worse`` (metrics missing from it get ``higher`` / ``lower``). Columns: :data:`COLUMNS`.
    """
    cond = _frame(condition, item, category, "condition")
    base = _frame(baseline, item, category, "baseline")
    every_item = base.index.union(cond.index)
    groups = pd.Series(ALL, index=every_item)
    if category:
        groups = base[category].reindex(every_item).fillna(cond[category].reindex(every_item))
    out = []
    names = sorted(groups.dropna().unique().tolist()) + [ALL] if category else [ALL]
    for name in names:
        members = every_item if name == ALL else groups.index[groups == name]
        for metric in metrics:
            a = _numbers(cond, metric).reindex(members).to_numpy()
            b = _numbers(base, metric).reindex(members).to_numpy()
            interval = paired_difference_interval(a, b, confidence, n_boot, seed)
            both = np.isfinite(a) & np.isfinite(b)
            out.append({
                "category": name, "metric": metric, "n_pairs": interval.n, "n_left_out": interval.n_missing,
                "condition_mean": float(a[both].mean()) if both.any() else np.nan,
                "baseline_mean": float(b[both].mean()) if both.any() else np.nan,
                "difference_mean": interval.mean, "difference_ci_low": interval.low,
                "difference_ci_high": interval.high,
                "verdict": _verdict(interval.low, interval.high, (higher_is_better or {}).get(metric)),
            })
    return pd.DataFrame(out, columns=list(COLUMNS))


def against_baseline(rows: RowsLike, baseline: str, metrics: Sequence[str], n_boot: int = 2000) -> pd.DataFrame:
    """Every other codec spec of a bench run against ``baseline`` (a codec spec of the run), from its rows (only
    ``ok`` rows are paired): :func:`paired_differences` with ``condition`` and ``baseline`` columns in front, each
    metric's direction taken from its definition."""
    from encodec_eval.metrics import MetricError, get_metric

    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    specs = list(dict.fromkeys(frame["codec_spec"]))
    if baseline not in specs:
        raise ValueError(f"--compare-to {baseline}: the run has no such codec spec; it has {', '.join(specs)}")
    directions = {}
    for metric in metrics:
        try:
            directions[metric] = get_metric(metric).higher_is_better
        except MetricError:  # a plugin metric this process has not imported: report higher / lower
            pass
    ok = frame[frame["status"] == "ok"]
    tables = [paired_differences(ok[ok["codec_spec"] == spec], ok[ok["codec_spec"] == baseline], metrics,
                                 higher_is_better=directions, n_boot=n_boot)
              .assign(condition=spec, baseline=baseline) for spec in specs if spec != baseline]
    if not tables:
        return pd.DataFrame(columns=["condition", "baseline", *COLUMNS])
    table = pd.concat(tables, ignore_index=True)
    return table[["condition", "baseline", *COLUMNS]]


def format_against_baseline(table: pd.DataFrame) -> str:
    """The printed form of :func:`against_baseline`: per category, a line per condition and a cell per metric with
    the mean difference, its interval and the verdict."""
    if table.empty:
        return ""
    baseline = table["baseline"].iloc[0]
    lines = [f"Paired differences against {baseline} (condition - {baseline}, per item, mean with its 95 % "
             "bootstrap interval over items scored by both; better / worse when the interval excludes 0):"]

    def cell(row: pd.Series) -> str:
        if not np.isfinite(row["difference_mean"]):
            return "no pairs"
        if not np.isfinite(row["difference_ci_low"]):
            return f"{row['difference_mean']:+.3g} (n={row['n_pairs']})"
        verdict = {"no clear difference": "~"}.get(row["verdict"], row["verdict"])
        return (f"{row['difference_mean']:+.3g} [{row['difference_ci_low']:+.3g}, {row['difference_ci_high']:+.3g}]"
                f" {verdict}")

    for category, part in table.groupby("category", sort=False):
        wide = part.assign(text=part.apply(cell, axis=1)).pivot(index="condition", columns="metric", values="text")
        wide = wide.reindex(index=list(dict.fromkeys(part["condition"])), columns=list(dict.fromkeys(part["metric"])))
        lines += ["", f"== vs {baseline}, category: {category} ==", wide.reset_index().to_string(index=False)]
    lines.append("(~ = no clear difference; n_pairs and left-out items per cell in the CSV)")
    return "\n".join(lines)
