"""Our ablation arms beside the paper's tables: intervals, seed spreads, paired comparisons and honest verdicts.

The notebooks only draw what these functions compute, so every verdict is derived from the data and unit-tested.
Input: the raw rows of ``encodec_eval.ablations`` (``ablation_items.csv``: one row per table x arm x seed x item x
bandwidth). For each comparison, per-item differences (arm minus the arm it is compared with, same seed, same item;
then averaged over seeds) are bootstrapped over items. A difference is **clear** when its 95 % interval excludes
zero and its size exceeds the spread over seeds of both arms' means; otherwise it is **not resolved at this
budget**, and so is any comparison with one seed so far (no spread to exceed). An arm that is not yet a codec
(mean SI-SNR below 0 dB over all items, or ViSQOL at its floor) gets no verdict at all: comparing it says nothing
about the design choice.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from encodec_eval.metrics.base import get_metric
from encodec_eval.report.paper_keys import TIE_TOLERANCE, paper_key_for_variant, paper_rows
from encodec_eval.report.stats import bootstrap_interval

WARM_START_NOTE = (
    "Warm start: every arm of Tables 2 and A.4 continues one common checkpoint (the shipped model's "
    "reconstruction-only training) for the same budget. This departs from the paper, which trains each arm from "
    "scratch: our arms differ only in what they add after that checkpoint.")
# Our metric columns -> the paper's (Tables 2, 3, A.3, A.4 report SI-SNR and ViSQOL; its ViSQOL is audio mode).
PAPER_METRICS = {"si_snr_db": "si_snr_db", "visqol_audio@48k": "visqol"}
VISQOL_FLOOR = 1.0
FLOOR_MARGIN = 0.05  # a ViSQOL mean within this of 1.0 is at the floor: the metric no longer tells outputs apart
NOT_A_CODEC = "not yet a codec"
NOT_RESOLVED = "not resolved at this budget"
PAIR_COLUMNS = ["table", "arm", "compared_with", "bandwidth_kbps", "category", "metric", "mean_diff", "ci95_low",
                "ci95_high", "n_items", "n_seeds", "seed_spread", "seed_diffs", "verdict", "verdict_reason",
                "paper_diff", "paper_says", "agrees_with_paper", "budget"]


def _per_item(items: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Metric values as a table: index (item_id, category), one column per seed."""
    values = items.assign(value=pd.to_numeric(items[metric], errors="coerce"))
    return values.pivot_table(index=["item_id", "category"], columns="seed", values="value", aggfunc="first")


def _in_category(frame: pd.DataFrame, category: str) -> pd.DataFrame:
    return frame if category == "all" else frame[frame.index.get_level_values("category") == category]


def _seed_spread(per_seed: pd.DataFrame) -> tuple[float, list[float]]:
    """(max - min of the per-seed means over items, the per-seed means); a single seed has no spread (NaN)."""
    means = [float(per_seed[s].mean()) for s in per_seed.columns]
    return (max(means) - min(means) if len(means) > 1 else math.nan), means


def not_a_codec_reason(items: pd.DataFrame) -> Optional[str]:
    """Why an arm (its rows at one bandwidth, all seeds and items) is not yet a codec, or None."""
    reasons = []
    if "si_snr_db" in items:
        snr = pd.to_numeric(items["si_snr_db"], errors="coerce")
        if snr.notna().any() and snr.mean() < 0:
            reasons.append(f"mean SI-SNR {snr.mean():.1f} dB is below 0 dB")
    for column in [c for c in items.columns if c.startswith("visqol")]:
        visqol = pd.to_numeric(items[column], errors="coerce")
        if visqol.notna().any() and visqol.mean() <= VISQOL_FLOOR + FLOOR_MARGIN:
            reasons.append(f"mean {column} {visqol.mean():.2f} is at the metric's floor of {VISQOL_FLOOR:g}")
    return "; ".join(reasons) or None


def arm_table(items: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per table x arm x bandwidth x category (``all`` and each) x metric: mean over items of the
    seed-averaged value, its 95 % bootstrap interval over items, the spread of the per-seed means, the budget, and
    whether the arm is "not yet a codec" (judged on all items)."""
    out = []
    for (table, arm, bandwidth), group in items.groupby(["table", "arm", "bandwidth_kbps"], sort=False):
        reason = not_a_codec_reason(group)
        first = group.iloc[0]
        categories = ["all", *sorted(group["category"].unique())]
        for metric in metrics:
            per_item = _per_item(group, metric)
            for category in categories:
                chosen = _in_category(per_item, category)
                interval = bootstrap_interval(chosen.mean(axis=1))
                spread, means = _seed_spread(chosen)
                out.append({
                    "table": table, "table_label": first["table_label"], "arm": arm, "variant": first["variant"],
                    "bandwidth_kbps": bandwidth, "category": category, "metric": metric,
                    "mean": interval.mean, "ci95_low": interval.low, "ci95_high": interval.high,
                    "n_items": interval.n, "n_seeds": chosen.shape[1], "seed_spread": spread,
                    "seed_means": ";".join(f"{m:.4g}" for m in means),
                    "status": NOT_A_CODEC if reason else "codec", "status_reason": reason or "",
                    "budget": first["budget"], "steps_done": int(first["steps_done"]),
                    "weights": first["weights"]})
    return pd.DataFrame(out)


def _paper_direction(table: str, variant: str, reference_variant: str, metric: str) -> tuple[float, str]:
    """The paper's (arm - reference) for ``metric`` and what it says: "higher", "lower", "no clear difference", or
    "no paper value" (the metric or either row is not in the paper's table)."""
    paper_metric = PAPER_METRICS.get(metric)
    try:
        keys = (paper_key_for_variant(table, variant), paper_key_for_variant(table, reference_variant))
    except ValueError:  # not one of the paper's ablation tables
        return math.nan, "no paper value"
    if paper_metric is None or None in keys:
        return math.nan, "no paper value"
    paper = paper_rows(table).set_index("paper_key")
    if paper_metric not in paper.columns:
        return math.nan, "no paper value"
    diff = float(paper.loc[keys[0], paper_metric] - paper.loc[keys[1], paper_metric])
    if not np.isfinite(diff):
        return math.nan, "no paper value"
    if abs(diff) <= TIE_TOLERANCE.get(paper_metric, 0.0):
        return diff, "no clear difference"
    return diff, "higher" if diff > 0 else "lower"


def paired_comparisons(items: pd.DataFrame, metrics: Sequence[str],
                       pairs: Mapping[str, Sequence[tuple[str, str]]]) -> pd.DataFrame:
    """Each (arm, compared-with) pair of each table, per bandwidth, category and metric: mean per-item difference
    (arm minus the other; seeds matched, then averaged), its 95 % bootstrap interval over items, the larger of the
    two arms' seed spreads, and the verdict (see the module docstring), beside the paper's difference."""
    out = []
    for table, table_pairs in pairs.items():
        rows = items[items["table"] == table]
        for arm, other in table_pairs:
            a_rows, b_rows = rows[rows["arm"] == arm], rows[rows["arm"] == other]
            if a_rows.empty or b_rows.empty:
                continue
            for bandwidth in sorted(set(a_rows["bandwidth_kbps"]) & set(b_rows["bandwidth_kbps"])):
                a_bw = a_rows[a_rows["bandwidth_kbps"] == bandwidth]
                b_bw = b_rows[b_rows["bandwidth_kbps"] == bandwidth]
                blocked = [f"{name}: {reason}" for name, reason in
                           ((arm, not_a_codec_reason(a_bw)), (other, not_a_codec_reason(b_bw))) if reason]
                for metric in metrics:
                    a_items, b_items = _per_item(a_bw, metric), _per_item(b_bw, metric)
                    seeds = sorted(set(a_items.columns) & set(b_items.columns))
                    diffs = (a_items[seeds] - b_items[seeds]).dropna(how="all")
                    paper_diff, paper_says = _paper_direction(table, a_bw["variant"].iloc[0],
                                                              b_bw["variant"].iloc[0], metric)
                    for category in ["all", *sorted(diffs.index.get_level_values("category").unique())]:
                        chosen = _in_category(diffs, category)
                        interval = bootstrap_interval(chosen.mean(axis=1))
                        spread = np.nanmax([_seed_spread(_in_category(a_items[seeds], category))[0],
                                            _seed_spread(_in_category(b_items[seeds], category))[0], -np.inf])
                        verdict = _verdict(interval.mean, interval.low, interval.high, float(spread), blocked,
                                           get_metric(metric).higher_is_better)
                        out.append({
                            "table": table, "arm": arm, "compared_with": other, "bandwidth_kbps": bandwidth,
                            "category": category, "metric": metric, "mean_diff": interval.mean,
                            "ci95_low": interval.low, "ci95_high": interval.high, "n_items": interval.n,
                            "n_seeds": len(seeds), "seed_spread": spread if np.isfinite(spread) else math.nan,
                            "seed_diffs": ";".join(f"{chosen[s].mean():.4g}" for s in seeds),
                            "verdict": verdict,
                            "verdict_reason": "; ".join(blocked) or ("one seed: no spread over seeds yet"
                                                                     if len(seeds) < 2 else ""),
                            "paper_diff": paper_diff, "paper_says": paper_says,
                            "agrees_with_paper": _agreement(verdict, paper_says, interval.mean),
                            "budget": a_bw["budget"].iloc[0]})
    return pd.DataFrame(out, columns=PAIR_COLUMNS)  # columns even when no pair has both arms scored yet


def _verdict(mean: float, low: float, high: float, spread: float, blocked: list[str], higher_is_better: bool) -> str:
    if blocked:
        return NOT_A_CODEC
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 <= high:
        return NOT_RESOLVED
    if not np.isfinite(spread) or abs(mean) <= spread:  # one seed has no spread: nothing says it is no seed effect
        return NOT_RESOLVED
    better = (mean > 0) == higher_is_better
    return "clear: better" if better else "clear: worse"


def _agreement(verdict: str, paper_says: str, mean: float) -> str:
    """Whether a clear difference has the paper's sign: "in the paper's direction", "against the paper", or "" when
    either side has no direction to compare."""
    if not verdict.startswith("clear") or paper_says not in ("higher", "lower"):
        return ""
    return "in the paper's direction" if (mean > 0) == (paper_says == "higher") else "against the paper"


def verdict_counts(pairs: pd.DataFrame, category: str = "all") -> dict[str, int]:
    """How many comparisons with a paper direction (one category) are resolved, and how, for the summary's lead."""
    scored = pairs[(pairs["category"] == category) & pairs["paper_says"].isin(["higher", "lower"])]
    agreement = scored["agrees_with_paper"]
    return {"with_paper_direction": len(scored),
            "resolved": int(scored["verdict"].str.startswith("clear").sum()),
            "in_paper_direction": int((agreement == "in the paper's direction").sum()),
            "against_paper": int((agreement == "against the paper").sum()),
            "not_resolved": int((scored["verdict"] == NOT_RESOLVED).sum()),
            "not_a_codec": int((scored["verdict"] == NOT_A_CODEC).sum()),
            "all_comparisons": int((pairs["category"] == category).sum()),
            "all_resolved": int(pairs.loc[pairs["category"] == category, "verdict"].str.startswith("clear").sum())}


def lead_sentence(pairs: pd.DataFrame, budgets: Mapping[str, str], category: str = "all") -> str:
    """The summary's first sentence: the budget, then how many of the paper's comparisons this budget resolved."""
    counts = verdict_counts(pairs, category)
    budget = "; ".join(f"{table}: {text}" for table, text in budgets.items())
    return (f"Budget — {budget}. Of {counts['with_paper_direction']} comparisons where the paper shows a direction "
            f"(category {category}), {counts['resolved']} are resolved at this budget ({counts['in_paper_direction']} "
            f"in the paper's direction, {counts['against_paper']} against it), {counts['not_resolved']} are not "
            f"resolved and {counts['not_a_codec']} involve an arm that is not yet a codec. Over every metric, "
            f"{counts['all_resolved']} of {counts['all_comparisons']} comparisons are resolved.")


def progress_sentence(progress: Mapping[str, Mapping[str, Sequence[str]]]) -> str:
    """How much of the protocol the table holds (``ablations.json``'s ``progress``): a partial table says so first."""
    scored = sum(len(p["scored"]) for p in progress.values())
    total = scored + sum(len(p["to_run"]) for p in progress.values())
    if scored == total:
        return f"All {total} arm x seed runs of the protocol are scored."
    waiting = "; ".join(f"{table}: {', '.join(p['to_run'])}" for table, p in progress.items() if p["to_run"])
    return (f"Partial table: {scored} of {total} arm x seed runs are scored; still to run ({waiting}). Comparisons "
            "with one seed are not resolved.")

