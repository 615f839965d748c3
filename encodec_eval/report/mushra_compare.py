"""Listener (MUSHRA) scores from a ``mushra-web`` export: means with participant-clustered intervals, beside the paper's
Table 1 and against the bench's objective metrics."""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import pandas as pd

from encodec_eval.paper import load_table
from encodec_eval.report.paper_keys import PaperCompareError
from encodec_eval.report.stats import bootstrap_interval


def mushra_scores(ratings: pd.DataFrame, condition: str = "condition", score: str = "score",
                  participant: Optional[str] = "participant", item: Optional[str] = "item") -> pd.DataFrame:
    """Mean listener score per condition (and per item when ``item`` is given), participant-clustered bootstrap CI."""
    group_cols = [condition] + ([item] if item else [])
    out = []
    for keys, group in ratings.groupby(group_cols, sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        clusters = group[participant].to_numpy() if participant else None
        interval = bootstrap_interval(group[score].to_numpy(dtype=float), clusters=clusters)
        out.append({**dict(zip(group_cols, keys)), "mushra_mean": interval.mean, "mushra_low": interval.low,
                    "mushra_high": interval.high, "n_ratings": interval.n})
    return pd.DataFrame(out)


def ratings_from_mushra_export(export: pd.DataFrame) -> pd.DataFrame:
    """Scored trials of a ``mushra-web export`` CSV as (participant, item, condition, condition_kind, score).

    Training and unsubmitted trials are dropped, as in the listening-test report. Post-screening is the report's job:
    apply its decisions with :func:`apply_screening`.
    """
    needed = ["participant_id", "item_id", "condition", "score", "is_training"]
    missing = [c for c in needed if c not in export.columns]
    if missing:
        raise PaperCompareError(f"not a mushra-web ratings export: no column(s) {missing}")
    training = export["is_training"].astype(str).str.lower().isin(["true", "1"])
    unfinished = export["trial_status"].ne("submitted") if "trial_status" in export.columns else False
    kept = export.loc[~training & ~unfinished & export["score"].notna()]
    return kept.rename(columns={"participant_id": "participant", "item_id": "item"})[
        ["participant", "item", "condition", "condition_kind", "score"]
        if "condition_kind" in kept.columns else ["participant", "item", "condition", "score"]]


def apply_screening(ratings: pd.DataFrame, report: dict, policy: str = "encodec_2022") -> tuple[pd.DataFrame, str]:
    """Drop the participants a ``mushra-web report`` (report.json) excluded under ``policy``; returns the kept ratings
    and a sentence saying who was excluded and why. The rules themselves live in the listening-test app."""
    screening = report.get("screening", {})
    if policy not in screening:
        raise PaperCompareError(f"the listening-test report has no {policy!r} screening; it has {sorted(screening)}")
    result = screening[policy]
    excluded = result.get("excluded", {})
    kept = ratings[~ratings["participant"].isin(list(excluded))]
    reasons = "; ".join(f"{pid}: {', '.join(why)}" for pid, why in excluded.items()) or "nobody"
    return kept, (f"Post-screening {policy} ({result.get('description', '')}): excluded {len(excluded)} of "
                  f"{result.get('n_before', '?')} participants — {reasons}.")


def bench_rows_for_mushra(rows: pd.DataFrame) -> pd.DataFrame:
    """Bench rows keyed like listening-test stimuli: condition = codec spec, item = item id with '/' as '__'."""
    return rows.assign(condition=rows["codec_spec"], item=rows["item_id"].str.replace("/", "__", regex=False))


# Our evaluation categories -> the closest of Table 1's. Music set-1 is Jamendo (openly licensed music, like ours);
# set-2 is proprietary. Our "general" category has no counterpart in Table 1.
TABLE1_CATEGORY = {"speech_clean": "clean_speech", "speech_noisy": "noisy_speech", "music": "music_set1"}


def mushra_beside_table1(ratings: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Our listener scores per category and condition beside the paper's Table 1 row for the same codec and rate.

    ``ratings`` as from :func:`ratings_from_mushra_export`; ``rows`` are bench rows (condition = codec spec, with
    ``codec``, ``kbps_nominal`` and ``category``). The hidden reference is matched to Table 1's "Reference".
    Conditions the paper did not test (e.g. EnCodec at 24 kbps, Codec2) keep NaN paper values.
    """
    keyed = bench_rows_for_mushra(rows)
    category_of = keyed.drop_duplicates("item").set_index("item")["category"]
    codec_of = keyed.drop_duplicates("condition").set_index("condition")[["codec", "kbps_nominal"]]
    rated = ratings.assign(category=ratings["item"].map(category_of)).dropna(subset=["category"])
    ours = mushra_scores(rated, condition="condition", item="category")
    table1 = load_table("table1")
    paper_model = {m.lower(): m for m in table1["model"].unique()}
    out = []
    for _, row in ours.iterrows():
        kind = rated.loc[rated["condition"] == row["condition"], "condition_kind"].iloc[0] \
            if "condition_kind" in rated.columns else ""
        if kind == "hidden_reference" or row["condition"] == "reference":
            model, kbps = "Reference", math.nan
        elif row["condition"] in codec_of.index:
            codec, kbps = codec_of.loc[row["condition"]]
            model = paper_model.get(str(codec).lower(), str(codec))
        else:
            model, kbps = str(row["condition"]), math.nan
        paper = table1[(table1["model"] == model) & (table1["category"] == TABLE1_CATEGORY.get(row["category"]))
                       & ((table1["nominal_kbps"] == kbps) | (table1["nominal_kbps"].isna() & pd.isna(kbps)))]
        out.append({**row.to_dict(), "paper_model": model, "nominal_kbps": kbps,
                    "paper_category": TABLE1_CATEGORY.get(row["category"], ""),
                    "paper_mushra_mean": paper["mushra_mean"].iloc[0] if len(paper) else math.nan,
                    "paper_mushra_ci95": paper["mushra_ci95"].iloc[0] if len(paper) else math.nan})
    return pd.DataFrame(out)


def objective_vs_mushra(rows: pd.DataFrame, mushra: pd.DataFrame, metrics: Iterable[str],
                        keys: Sequence[str] = ("condition", "item")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join per-(condition, item) objective scores with listener means; Pearson and Spearman r per metric.

    Returns (joined table, correlations). Correlations need at least 3 pairs; otherwise they are NaN with the count.
    """
    metrics = [m for m in metrics if m in rows.columns]
    if not metrics:
        raise PaperCompareError("none of the requested metrics is a column of the rows")
    objective = rows.groupby(list(keys))[metrics].mean().reset_index()
    joined = objective.merge(mushra, on=list(keys), how="inner")
    corr = []
    for metric in metrics:
        pair = joined[[metric, "mushra_mean"]].apply(pd.to_numeric, errors="coerce").dropna()
        enough = len(pair) >= 3 and pair[metric].nunique() > 1 and pair["mushra_mean"].nunique() > 1
        corr.append({
            "metric": metric, "n_pairs": len(pair),
            "pearson_r": pair[metric].corr(pair["mushra_mean"], method="pearson") if enough else math.nan,
            "spearman_rho": pair[metric].corr(pair["mushra_mean"], method="spearman") if enough else math.nan,
        })
    return joined, pd.DataFrame(corr)
