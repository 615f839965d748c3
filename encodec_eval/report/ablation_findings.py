"""Our ablation runs beside the paper's tables, and which of its findings they reproduce.

The notebooks only draw what these functions compute, so every sentence about "reproduced" or "not reproduced" is
derived from the data and unit-tested. For each pair of rows the paper compares (e.g. balancer on against off for the
same loss weights) we check whether our difference has the paper's sign."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from encodec_eval.paper import load_table
from encodec_eval.report.paper_keys import (
    ABLATION_METRICS,
    ABLATION_TABLES,
    BASE_MODEL_KEYS,
    METRIC_LABELS,
    TIE_TOLERANCE,
    PaperCompareError,
    paper_key_for_variant,
    paper_pairs,
    paper_rows,
)

# benchmarks/results/ablations.csv (written by encodec_eval.ablations): one row per config x bandwidth x category.
ABLATION_NAME_COLUMN = "config"


_ABLATION_COLUMNS = ("config", "config_hash", "paper_table", "variant")


# Our metric columns -> the paper's names. Speed is x_realtime (audio s / processing s) in both.
_OUR_METRICS = {"si_snr_db": "si_snr_db", "visqol_audio@48k": "visqol", "encode_x_realtime": "encode_x_realtime",
                "decode_x_realtime": "decode_x_realtime"}


def _table_id_for_label(label: object) -> Optional[str]:
    by_label = {load_table(t).attrs["label"]: t for t in ABLATION_TABLES}
    return by_label.get(str(label).strip())


def match_ablations(raw: pd.DataFrame, category: str = "all", bandwidth_kbps: float = 6.0) -> pd.DataFrame:
    """Our ablation runs at one category and bandwidth, one row per (run, paper row it re-runs).

    Adds ``ablation`` (config names; runs with identical settings are merged), ``paper_table`` (id) and
    ``paper_key``, and renames metrics to the paper's (``si_snr_db``, ``visqol``, ``encode_x_realtime``,
    ``decode_x_realtime``).
    Configs whose variant is no row of the paper (e.g. the no-adversary floor) are left out.
    """
    missing = [c for c in (*_ABLATION_COLUMNS, "category", "bandwidth_kbps") if c not in raw.columns]
    if missing:
        raise PaperCompareError(f"ablation table has no column(s) {missing}; has {', '.join(raw.columns)}")
    at = raw[(raw["category"].astype(str) == category)
             & np.isclose(pd.to_numeric(raw["bandwidth_kbps"], errors="coerce"), bandwidth_kbps)]
    if at.empty and not raw.empty:
        raise PaperCompareError(
            f"no ablation rows for category {category!r} at {bandwidth_kbps:g} kbps; the table has categories "
            f"{sorted(set(raw['category'].astype(str)))} and bandwidths {sorted(set(raw['bandwidth_kbps']))}")
    out: dict[tuple[str, str, str], dict] = {}
    for _, row in at.iterrows():
        table_id = _table_id_for_label(row["paper_table"])
        key = paper_key_for_variant(table_id, row["variant"]) if table_id else None
        if key is None:
            continue
        targets = BASE_MODEL_KEYS.items() if BASE_MODEL_KEYS.get(table_id) == key else [(table_id, key)]
        metrics = {paper: pd.to_numeric(row.get(ours), errors="coerce") for ours, paper in _OUR_METRICS.items()}
        for target_table, target_key in targets:
            slot = (str(row["config_hash"]), target_table, target_key)
            if slot in out:  # the same settings under another config name: one run, both names
                out[slot]["ablation"] += f" = {row[ABLATION_NAME_COLUMN]}"
                continue
            out[slot] = {"ablation": str(row[ABLATION_NAME_COLUMN]), "config_hash": str(row["config_hash"]),
                         "paper_table": target_table, "paper_key": target_key, **metrics}
    return pd.DataFrame(list(out.values()),
                        columns=["ablation", "config_hash", "paper_table", "paper_key", *_OUR_METRICS.values()])


def ablations_beside_paper(ours: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per (paper table, paper row, metric) that we also measured, our value beside the paper's.

    ``ours`` needs ``paper_table`` and ``paper_key`` columns (see :func:`match_ablations`) and metric columns named as
    in the paper tables (``si_snr_db``, ``visqol``, ``encode_x_realtime``, ``decode_x_realtime``). Several of our rows
    for one paper row (e.g. seeds) are averaged and counted in ``n_runs``.
    """
    for column in ("paper_table", "paper_key", "ablation"):
        if column not in ours.columns:
            raise PaperCompareError(f"our ablation rows have no {column!r} column; run match_ablations first")
    out = []
    for table_id in ABLATION_TABLES:
        mine = ours[ours["paper_table"] == table_id]
        if mine.empty:
            continue
        paper = paper_rows(table_id).set_index("paper_key")
        for metric in ABLATION_METRICS[table_id]:
            if metric not in mine.columns:
                continue
            for key, group in mine.groupby("paper_key", sort=False):
                values = pd.to_numeric(group[metric], errors="coerce")
                if key not in paper.index:
                    raise PaperCompareError(f"{table_id}: our row key {key!r} is not a row of the paper's table")
                out.append({
                    "paper_table": table_id,
                    "paper_key": key,
                    "ablation": ", ".join(map(str, group["ablation"])),
                    "metric": metric,
                    "paper_value": float(paper.loc[key, metric]),
                    "our_value": float(values.mean()) if values.notna().any() else math.nan,
                    "n_runs": int(values.notna().sum()),
                })
    return pd.DataFrame(out, columns=["paper_table", "paper_key", "ablation", "metric", "paper_value", "our_value",
                                      "n_runs"])


def _direction(diff: float, tol: float) -> int:
    if not np.isfinite(diff):
        return 0
    return 0 if abs(diff) <= tol else int(np.sign(diff))


def _relation(direction: int) -> str:
    return {1: "higher than", -1: "lower than", 0: "about equal to"}[direction]


def ablation_findings(beside: pd.DataFrame) -> pd.DataFrame:
    """Every comparison the paper makes among rows we have, with whether our runs show the same direction.

    ``reproduced`` is True/False where the paper shows a difference larger than :data:`TIE_TOLERANCE` and our value
    exists; it is NaN (not scored) when the paper shows no clear difference or we did not measure the metric.
    """
    rows = []
    for (table_id, metric), group in beside.groupby(["paper_table", "metric"], sort=False):
        by_key = group.set_index("paper_key")
        tol = TIE_TOLERANCE.get(metric, 0.0)
        for a, b in paper_pairs(table_id, list(by_key.index)):
            paper_diff = by_key.loc[a, "paper_value"] - by_key.loc[b, "paper_value"]
            our_diff = by_key.loc[a, "our_value"] - by_key.loc[b, "our_value"]
            paper_dir = _direction(paper_diff, tol)
            measured = bool(np.isfinite(our_diff))
            our_dir = _direction(our_diff, tol) if measured else 0
            if paper_dir == 0 or not measured:
                reproduced: Optional[bool] = None
            else:
                reproduced = our_dir == paper_dir
            label = METRIC_LABELS.get(metric, metric)
            if not measured:
                verdict = "not measured by our runs"
            elif reproduced is None:
                verdict = "not scored: the paper shows no clear difference"
            else:
                verdict = "reproduced" if reproduced else "NOT reproduced"
            statement = (
                f"{label}: {a} is {_relation(paper_dir)} {b} in the paper "
                f"({by_key.loc[a, 'paper_value']:.2f} vs {by_key.loc[b, 'paper_value']:.2f})"
                + (f"; ours {by_key.loc[a, 'our_value']:.2f} vs {by_key.loc[b, 'our_value']:.2f}" if measured else "")
                + f" -> {verdict}"
            )
            rows.append({
                "paper_table": table_id, "metric": metric, "row_a": a, "row_b": b,
                "paper_diff": float(paper_diff), "our_diff": float(our_diff) if measured else math.nan,
                "paper_direction": paper_dir, "our_direction": our_dir if measured else math.nan,
                "reproduced": reproduced, "statement": statement,
            })
    frame = pd.DataFrame(rows, columns=["paper_table", "metric", "row_a", "row_b", "paper_diff", "our_diff",
                                        "paper_direction", "our_direction", "reproduced", "statement"])
    frame["reproduced"] = frame["reproduced"].astype("boolean")
    return frame


def findings_summary(findings: pd.DataFrame) -> pd.DataFrame:
    """Per table and metric: how many of the paper's comparisons were scored and how many our runs reproduce."""
    scored = findings.dropna(subset=["reproduced"])
    summary = (findings.groupby(["paper_table", "metric"], sort=False)
               .agg(comparisons=("statement", "size"))
               .join(scored.groupby(["paper_table", "metric"], sort=False)
                     .agg(scored=("reproduced", "size"), reproduced=("reproduced", "sum")))
               .fillna({"scored": 0, "reproduced": 0})
               .astype({"scored": int, "reproduced": int})
               .reset_index())
    summary["share_reproduced"] = summary["reproduced"] / summary["scored"].replace(0, np.nan)
    return summary


def describe_findings(findings: pd.DataFrame, beside: Optional[pd.DataFrame] = None) -> list[str]:
    """Plain sentences, one per table and metric, saying what our runs reproduce; computed, never typed in.

    With ``beside``, tables where our runs cover too few of the paper's rows for any comparison are named as well.
    """
    sentences: dict[tuple[str, str], str] = {}
    if beside is not None:
        for (table_id, metric), group in beside.groupby(["paper_table", "metric"], sort=False):
            sentences[table_id, metric] = (
                f"{load_table(table_id).attrs['label']}, {METRIC_LABELS.get(metric, metric)}: no comparison "
                f"possible — our runs cover only {', '.join(group['paper_key'])} of the paper's rows.")
    for _, row in findings_summary(findings).iterrows():
        label = METRIC_LABELS.get(row["metric"], row["metric"])
        table = load_table(row["paper_table"]).attrs["label"]
        if row["scored"] == 0:
            text = (f"{table}, {label}: nothing to score ({row['comparisons']} comparisons, none with both a clear "
                    "difference in the paper and a value from our runs).")
        else:
            share = row["reproduced"] / row["scored"]
            word = "reproduced" if share == 1 else "not reproduced" if share == 0 else "partly reproduced"
            text = (f"{table}, {label}: {word} — our runs show the paper's direction in {row['reproduced']} of "
                    f"{row['scored']} scored comparisons.")
        sentences[row["paper_table"], row["metric"]] = text
    order = {table_id: i for i, table_id in enumerate(ABLATION_TABLES)}

    def rank(key: tuple[str, str]) -> tuple[int, int]:
        metrics = ABLATION_METRICS.get(key[0], ())
        return order.get(key[0], 99), metrics.index(key[1]) if key[1] in metrics else 99

    return [sentences[key] for key in sorted(sentences, key=rank)]


def undertrained_warning(ours: pd.DataFrame, floor_db: float = 0.0) -> Optional[str]:
    """A warning when our median SI-SNR is below ``floor_db``: such models are barely trained, so the directions
    compared above say more about noise than about the design choices."""
    snr = pd.to_numeric(ours.get("si_snr_db", pd.Series(dtype=float)), errors="coerce").dropna()
    if snr.empty or snr.median() >= floor_db:
        return None
    return (f"Our runs are barely trained: their median SI-SNR is {snr.median():.1f} dB (the paper's models reach "
            f"6-10 dB), so agreement or disagreement with the paper's directions is mostly noise at this budget.")
