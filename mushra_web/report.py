"""The listening-test report: per condition (and item) means with 95 % t- and participant-clustered bootstrap
intervals, for all assessors and after each post-screening policy, plots, and the objective metrics of the run the
test was made from beside the listeners' scores.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
from typing import Optional

from encodec_eval.report.stats import bootstrap_interval, t_interval
from mushra_web.db import Experiment
from mushra_web.schema import TestConfig
from mushra_web.screening import kept, screen

SCALE = (0.0, 100.0)


def _stats(values: list[float], clusters: list[str]) -> dict:
    """Mean, 95 % t-interval clipped to the 0-100 scale (``t_clipped`` says when it was: with few or spread ratings
    the t-interval runs past the ends of the scale, where no score can be), and the clustered bootstrap interval
    (inside the scale by construction)."""
    t = t_interval(values)
    b = bootstrap_interval(values, clusters=clusters, seed=0)
    return {"mean": t.mean, "t_low": max(t.low, SCALE[0]), "t_high": min(t.high, SCALE[1]),  # NaN stays NaN
            "t_clipped": bool(t.low < SCALE[0] or t.high > SCALE[1]), "boot_low": b.low, "boot_high": b.high,
            "n_ratings": t.n, "n_participants": len(set(clusters))}


def _table(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    groups: dict[tuple, tuple[list[float], list[str]]] = {}
    for r in rows:
        key = tuple(r[k] for k in keys)
        vals, clus = groups.setdefault(key, ([], []))
        vals.append(float(r["score"]))
        clus.append(r["participant_id"])
    return [{**dict(zip(keys, key)), **_stats(v, c)} for key, (v, c) in sorted(groups.items())]


def _label(row: dict) -> str:
    return "hidden_reference" if row["condition_kind"] == "hidden_reference" else row["condition"]


def build_report(rows: list[dict], exp: Experiment, n_boot_seed: int = 0) -> dict:
    """Everything the report shows, as JSON-able data; training trials and unfinished trials are left out."""
    cfg = TestConfig.model_validate(json.loads(exp.config_json))
    graded = [{**r, "condition": _label(r)} for r in rows
              if not r["is_training"] and r["trial_status"] == "submitted" and r["score"] is not None]
    screenings = {name: screen(graded, name) for name in cfg.post_screening}
    views = {"all": graded, **{name: kept(graded, res) for name, res in screenings.items()}}
    out = {"experiment": exp.slug, "title": exp.title, "config_sha256": exp.config_sha256,
           "app_version": exp.app_version, "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
           "n_training_ratings_excluded": sum(1 for r in rows if r["is_training"]),
           "screening": {name: res.as_dict() for name, res in screenings.items()},
           "views": {}}
    for name, view in views.items():
        out["views"][name] = {"n_participants": len({r["participant_id"] for r in view}),
                              "by_condition": _table(view, ("condition",)),
                              "by_condition_item": _table(view, ("condition", "item_id"))}
    if exp.objective_rows_csv:
        out["objective"] = objective_comparison(exp.objective_rows_csv, views["all"])
    return out


def objective_comparison(rows_csv: str, graded: list[dict]) -> dict:
    """The run's objective metrics beside the MUSHRA means, per (condition, item), with Pearson and Spearman r."""
    import pandas as pd

    from encodec_eval.report.mushra_compare import mushra_scores, objective_vs_mushra

    objective = pd.read_csv(io.StringIO(rows_csv))
    if "codec_spec" not in objective.columns or "item_id" not in objective.columns:
        return {"error": "rows.csv lacks codec_spec or item_id columns"}
    objective = objective.assign(condition=objective["codec_spec"].astype(str),
                                 item=objective["item_id"].astype(str).str.replace("/", "__", regex=False))
    from encodec_eval.metrics import known_metrics

    # the bench's registered metric columns, and the bitrate it measured; never ids, timings or sample rates
    wanted = [*known_metrics(), "kbps_measured"]
    metrics = [c for c in wanted if c in objective.columns and pd.api.types.is_numeric_dtype(objective[c])
               and objective[c].notna().any()]
    ratings = pd.DataFrame([{"condition": r["condition"], "item": r["item_id"], "participant": r["participant_id"],
                             "score": r["score"]} for r in graded if r["condition_kind"] == "condition"])
    if ratings.empty or not metrics:
        return {"error": "no ratings of codec conditions or no numeric metric columns", "metrics": metrics}
    mushra = mushra_scores(ratings)
    joined, corr = objective_vs_mushra(objective, mushra, metrics)
    return {"metrics": metrics, "correlations": _records(corr), "joined": _records(joined)}


def _records(frame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
            for rec in frame.to_dict(orient="records")]


def _error_bars(table: list[dict], kind: str) -> list[list[float]]:
    """Distances from the mean to the interval bounds; an interval that is NaN (one rating) draws no bar."""
    low = [0.0 if math.isnan(r[f"{kind}_low"]) else r["mean"] - r[f"{kind}_low"] for r in table]
    high = [0.0 if math.isnan(r[f"{kind}_high"]) else r[f"{kind}_high"] - r["mean"] for r in table]
    return [low, high]


def plot_png(view: dict, title: str) -> bytes:
    """Condition means with 95 % t-interval (thick) and clustered-bootstrap interval (thin) bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = sorted(view["by_condition"], key=lambda r: r["mean"])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(table) + 2), 3.6), dpi=100)
    xs = list(range(len(table)))
    means = [r["mean"] for r in table]
    ax.errorbar(xs, means, yerr=_error_bars(table, "t"), fmt="o", capsize=4, lw=2, label="95 % t-interval")
    ax.errorbar([x + 0.15 for x in xs], means, yerr=_error_bars(table, "boot"), fmt="none", capsize=2, lw=1,
                color="grey", label="95 % participant-clustered bootstrap")
    ax.set_xticks(xs, [r["condition"] for r in table], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("MUSHRA score (0-100)")
    for y in (20, 40, 60, 80):
        ax.axhline(y, color="#ddd", lw=0.8, zorder=0)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else f"{v:.2f}"
    return html.escape(str(v))


def _html_table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(rep: dict) -> str:
    """A self-contained HTML page (plots embedded as data URIs) with every number labelled."""
    parts = [f"<!doctype html><meta charset=utf-8><title>MUSHRA report {html.escape(rep['experiment'])}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;"
             "margin:8px 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}</style>",
             f"<h1>MUSHRA report: {html.escape(rep['title'])}</h1>",
             f"<p>test <code>{html.escape(rep['experiment'])}</code>, config sha256 "
             f"<code>{rep['config_sha256']}</code>, app version {html.escape(rep['app_version'])}, generated "
             f"{rep['generated_at']}. Scores are BS.1534-3 basic audio quality, 0-100; training trials "
             f"({rep['n_training_ratings_excluded']} ratings) are left out.</p>"]
    parts.append("<h2>Post-screening</h2>")
    for name, res in rep["screening"].items():
        parts.append(f"<h3>{html.escape(name)}</h3><p>{html.escape(res['description'])}. "
                     f"Assessors: {res['n_before']} before, {res['n_after']} after.</p>")
        if res["excluded"]:
            parts.append("<ul>" + "".join(f"<li><code>{html.escape(pid)}</code>: "
                                          f"{html.escape('; '.join(why))}</li>"
                                          for pid, why in res["excluded"].items()) + "</ul>")
        for note in res["not_applicable"]:
            parts.append(f"<p>Not applicable: {html.escape(note)}</p>")
    parts.append("<p>95 % t-intervals are clipped to the 0-100 scale; <code>t_clipped</code> marks those that "
                 "were.</p>")
    cols = ["condition", "mean", "t_low", "t_high", "t_clipped", "boot_low", "boot_high", "n_ratings",
            "n_participants"]
    for name, view in rep["views"].items():
        label = "all assessors" if name == "all" else f"after {name} screening"
        parts.append(f"<h2>Scores, {html.escape(label)} (N = {view['n_participants']})</h2>")
        if view["by_condition"]:
            png = base64.b64encode(plot_png(view, f"{rep['experiment']}: {label}")).decode()
            parts.append(f'<img alt="condition means, {html.escape(label)}" src="data:image/png;base64,{png}">')
        parts.append(_html_table(view["by_condition"], cols))
        parts.append("<details><summary>per condition and item</summary>"
                     + _html_table(view["by_condition_item"], cols[:1] + ["item_id"] + cols[1:]) + "</details>")
    obj: Optional[dict] = rep.get("objective")
    if obj:
        parts.append("<h2>Objective metrics of the run beside MUSHRA (all assessors)</h2>")
        if "error" in obj:
            parts.append(f"<p>{html.escape(obj['error'])}</p>")
        else:
            parts.append("<p>Correlation over (condition, item) pairs of the run's rows.csv with the listeners' "
                         "mean score.</p>")
            parts.append(_html_table(obj["correlations"], ["metric", "n_pairs", "pearson_r", "spearman_rho"]))
            parts.append(_html_table(obj["joined"], ["condition", "item", "mushra_mean", *obj["metrics"]]))
    return "\n".join(parts)
