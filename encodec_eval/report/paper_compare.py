"""Our ablation and benchmark results beside the EnCodec paper's tables, and which of its findings they reproduce.

The notebooks only draw what these functions compute, so every sentence about "reproduced" or "not reproduced" is
derived from the data and unit-tested here.

Absolute numbers of a small CPU-budget training run are not comparable with the paper's 300-epoch GPU models, so
ablation findings are judged on *directions*: for each pair of rows the paper compares (e.g. balancer on against off
for the same loss weights) we check whether our difference has the paper's sign.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from encodec_eval.paper import load_table
from encodec_eval.report.stats import bootstrap_interval

# --------------------------------------------------------------------------------------------------------------------
# Paper rows and the keys our ablations are matched on
# --------------------------------------------------------------------------------------------------------------------

ABLATION_TABLES = ("table2", "table3", "tableA3", "tableA4")

# Which metrics of each ablation table are compared, and the smallest difference that counts as a direction
# (smaller differences in the paper are reported as "no clear difference" and not scored).
ABLATION_METRICS: dict[str, tuple[str, ...]] = {
    "table2": ("si_snr_db", "visqol"),
    "table3": ("si_snr_db", "visqol"),
    "tableA3": ("si_snr_db", "visqol", "encode_x_realtime", "decode_x_realtime"),
    "tableA4": ("si_snr_db", "visqol"),
}
TIE_TOLERANCE: dict[str, float] = {"si_snr_db": 0.05, "visqol": 0.005, "encode_x_realtime": 0.05,
                                   "decode_x_realtime": 0.05}
METRIC_LABELS: dict[str, str] = {
    "si_snr_db": "SI-SNR (dB)",
    "visqol": "ViSQOL",
    "encode_x_realtime": "encode speed (x real time)",
    "decode_x_realtime": "decode speed (x real time)",
}


class PaperCompareError(ValueError):
    """Our results lack what a comparison needs (a column, a matching row); the message names it."""


def _fmt_weight(value: float) -> str:
    return f"{float(value):g}"


def balancer_key(lambda_t: float, lambda_f: float, lambda_g: float, lambda_feat: float, balancer: bool) -> str:
    """Row key of Table A.4: the four loss weights and whether the balancer is on."""
    weights = "/".join(_fmt_weight(v) for v in (lambda_t, lambda_f, lambda_g, lambda_feat))
    return f"weights t/f/g/feat={weights}, balancer {'on' if balancer else 'off'}"


def streamable_key(model: str, streamable: bool) -> str:
    """Row key of Table 3."""
    return f"{model} {'streamable' if streamable else 'non-streamable'}"


def paper_rows(table_id: str) -> pd.DataFrame:
    """One of the ablation tables with a ``paper_key`` column that our rows are matched on."""
    frame = load_table(table_id).copy()
    if table_id == "table2":
        frame["paper_key"] = frame["discriminator"]
    elif table_id == "table3":
        frame["paper_key"] = [streamable_key(m, s) for m, s in zip(frame["model"], frame["streamable"])]
    elif table_id == "tableA3":
        frame["paper_key"] = frame["variant"]
    elif table_id == "tableA4":
        frame["paper_key"] = [
            balancer_key(*vals) for vals in
            frame[["lambda_t", "lambda_f", "lambda_g", "lambda_feat", "balancer"]].itertuples(index=False)]
    else:
        raise PaperCompareError(f"{table_id!r} is not an ablation table; choose from {', '.join(ABLATION_TABLES)}")
    return frame


# The paper's base model (streamable, MS-STFT, C=32, LSTM) is a row of three tables; a run of it counts in all three.
BASE_MODEL_KEYS = {"table2": "MS-STFT", "table3": streamable_key("EnCodec", True), "tableA3": "EnCodec base"}
_BALANCER_VARIANT = re.compile(r"lambda_t=(\S+) lambda_f=(\S+) lambda_g=(\S+) lambda_feat=(\S+) balancer=(on|off)")


def paper_key_for_variant(table_id: str, variant: str) -> Optional[str]:
    """The paper row an ablation config re-runs, from its ``ablation: {table, variant}`` block; None if none.

    Variants name the paper's rows as printed ("MS-STFT+MPD", "Channels = 16"), Table 3's as "streamable" or
    "non-streamable", and Table A.4's as "lambda_t=1 lambda_f=2 lambda_g=4 lambda_feat=1 balancer=on".
    """
    variant = str(variant).strip()
    if table_id == "table3" and variant.lower() in ("streamable", "non-streamable"):
        key = streamable_key("EnCodec", variant.lower() == "streamable")
    elif table_id == "tableA4" and (match := _BALANCER_VARIANT.fullmatch(variant)):
        *weights, state = match.groups()
        key = balancer_key(*map(float, weights), state == "on")
    else:
        key = variant
    return key if key in set(paper_rows(table_id)["paper_key"]) else None


def paper_pairs(table_id: str, keys: Sequence[str]) -> list[tuple[str, str]]:
    """The comparisons the paper makes in a table, restricted to ``keys`` (rows we also have)."""
    present = list(dict.fromkeys(keys))
    if table_id == "tableA3":
        base = BASE_MODEL_KEYS["tableA3"]
        return [(k, base) for k in present if k != base and base in present]
    if table_id == "tableA4":
        return [(k, k.replace("balancer on", "balancer off")) for k in present
                if k.endswith("balancer on") and k.replace("balancer on", "balancer off") in present]
    return list(itertools.combinations(present, 2))


# --------------------------------------------------------------------------------------------------------------------
# Ablations: ours beside the paper
# --------------------------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------------------------
# Benchmark runs: rate-quality curves, speeds (x_realtime), listener scores
# --------------------------------------------------------------------------------------------------------------------

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


def x_realtime(values: pd.Series, column: str) -> pd.Series:
    """Speeds as x_realtime (audio s / processing s, greater than 1 is faster than real time), read from a column
    whose name says its convention: ``*x_realtime*`` is already so, ``*rtf*`` is processing s / audio s and is
    inverted. Any other name is refused, so that a speed is never read in the wrong direction."""
    if "x_realtime" in column:
        return values
    if "rtf" in column.split("_"):
        return 1.0 / values
    raise PaperCompareError(f"column {column!r} names no speed convention: rtf (processing s / audio s) or "
                            "x_realtime (audio s / processing s)")


def x_realtime_beside_paper(rows: pd.DataFrame, encode: str = "encode_rtf_1thread",
                            decode: str = "decode_rtf_1thread", codec: str = "codec", rate: str = "nominal_kbps",
                            at_kbps: float = 6.0, latency_ms: Optional[str] = None) -> pd.DataFrame:
    """Our median encode/decode speed per codec at ``at_kbps`` as x_realtime (the paper's RTF), beside Table 5.

    ``encode`` and ``decode`` are speed columns named by convention (see :func:`x_realtime`); the defaults are the
    one-thread RTFs that encodec-bench rows carry. With ``latency_ms`` (a column of algorithmic latency in ms), our
    median latency fills ``initial_latency_ms``.
    """
    for column in (encode, decode, codec, rate):
        if column not in rows.columns:
            raise PaperCompareError(f"rows have no {column!r} column; available: {', '.join(rows.columns)}")
    at = rows[np.isclose(pd.to_numeric(rows[rate], errors="coerce"), at_kbps)]
    at = at.assign(encode_x_realtime=x_realtime(pd.to_numeric(at[encode], errors="coerce"), encode),
                   decode_x_realtime=x_realtime(pd.to_numeric(at[decode], errors="coerce"), decode))
    ours = at.groupby(codec).agg(encode_x_realtime=("encode_x_realtime", "median"),
                                 decode_x_realtime=("decode_x_realtime", "median"),
                                 n=("encode_x_realtime", "count")).reset_index()
    if latency_ms is not None and latency_ms in at.columns:
        ours["initial_latency_ms"] = at.groupby(codec)[latency_ms].median().to_numpy()
    ours.insert(0, "source", "ours")
    ours = ours.rename(columns={codec: "model"})
    paper = load_table("table5")
    paper = paper.assign(source="paper (Table 5, 2019 MacBook Pro, 1 thread)",
                         model=paper["model"] + " " + paper["sample_rate_khz"].astype(str) + " kHz")
    keep = ["source", "model", "encode_x_realtime", "decode_x_realtime", "encode_x_realtime_entropy_coded",
            "decode_x_realtime_entropy_coded", "initial_latency_ms"]
    return pd.concat([paper[keep], ours], ignore_index=True)


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
