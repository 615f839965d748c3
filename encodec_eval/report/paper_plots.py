"""Matplotlib figures for the notebooks that put our results beside the EnCodec paper (tables from this package)."""

from __future__ import annotations

import textwrap
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from encodec_eval.paper import load_table

# Table 3 gives SI-SNR and ViSQOL at 6 kbps on an equal mix of speech and music: the only published objective anchors.
_TABLE3_METRIC = {"si_snr_db": "si_snr_db", "visqol_audio@48k": "visqol"}


def _note(fig: Figure, note: str) -> None:
    """A caveat written into the figure itself, under the axes, so that it travels with a copied image."""
    if note:
        fig.text(0.01, 0.01, textwrap.fill(note, width=max(60, int(fig.get_figwidth() * 16))), fontsize=7,
                 va="bottom", ha="left", color="darkred")
        fig.subplots_adjust(bottom=min(0.45, 0.12 + 0.045 * (note.count(" ") // 12 + 1)))


def plot_rate_quality(curve: pd.DataFrame, metric: str, rate: str = "nominal_kbps", codec: str = "codec",
                      category: str = "category", paper_anchors: bool = True, at: Optional[str] = None,
                      note: str = "") -> Figure:
    """One panel per category: mean per codec against bitrate with its confidence band.

    Points are drawn at the bitrate in column ``at`` (default ``rate``): the measured bitrate
    (``rate_quality``'s ``kbps_measured``) puts a codec that overshoots its request where it really ran. With
    ``paper_anchors`` the paper's Table 3 values (6 kbps, mixed speech and music, Meta's models) are marked on
    SI-SNR and audio-mode ViSQOL panels, labelled as such since the paper's test set differs from ours. ``note``
    is written under the axes (e.g. that our EnCodec is not the paper's model).
    """
    at = at or rate
    categories = list(dict.fromkeys(curve[category]))
    fig, axes = plt.subplots(1, len(categories), figsize=(4.2 * len(categories), 3.6), squeeze=False,
                             sharey=True)
    table3 = load_table("table3") if paper_anchors and metric in _TABLE3_METRIC else None
    for ax, cat in zip(axes[0], categories):
        sub = curve[(curve[category] == cat) & curve["mean"].notna()]
        ax.set_title(str(cat))
        ax.set_xlabel("measured bitrate (kbps)" if at == "kbps_measured" else f"{at} (kbps)")
        if sub.empty:
            ax.text(0.5, 0.5, f"no {metric} scores\nin this category", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_xticks([])
            continue
        for name, line in sub.groupby(codec, sort=True):
            line = line.sort_values(at)
            (handle,) = ax.plot(line[at], line["mean"], marker="o", label=str(name))
            ax.fill_between(line[at], line["low"], line["high"], color=handle.get_color(), alpha=0.2)
        if table3 is not None:
            for (_, row), marker in zip(table3.iterrows(), "x+^v"):
                label = (f"paper T3: Meta's {row['model']}{'' if row['streamable'] else ' (non-stream.)'}, "
                         "other test set")
                ax.scatter(row["bandwidth_kbps"], row[_TABLE3_METRIC[metric]], marker=marker, s=40, color="0.25",
                           label=label)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{metric} (mean, 95 % bootstrap CI)")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"Rate-quality: {metric}")
    fig.tight_layout()
    _note(fig, note)
    return fig


def plot_x_realtime(table: pd.DataFrame, note: str = "") -> Figure:
    """Encode and decode speed as x_realtime (audio duration / processing time, the paper's RTF) per model, log
    scale; ``note`` is written under the axes (e.g. that our model is not the paper's)."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.5))
    labels = [f"{m} [{s.split(' (')[0]}]" for m, s in zip(table["model"], table["source"])]
    y = np.arange(len(table))
    ax.barh(y - 0.2, table["encode_x_realtime"], height=0.4, label="encode")
    ax.barh(y + 0.2, table["decode_x_realtime"], height=0.4, label="decode")
    ax.axvline(1.0, color="k", lw=1, ls="--", label="real time")
    ax.set_yticks(y, labels)
    ax.set_xscale("log")
    ax.set_xlabel("x_realtime = audio duration / processing time (> 1 is faster than real time)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _note(fig, note)
    return fig


def plot_metric_vs_mushra(joined: pd.DataFrame, metric: str, condition: str = "condition") -> Figure:
    """Per (condition, item): an objective metric against the listeners' mean score."""
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, group in joined.groupby(condition, sort=True):
        ax.scatter(group[metric], group["mushra_mean"], label=str(name), s=25)
    ax.set_xlabel(metric)
    ax.set_ylabel("MUSHRA (mean over listeners)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {"clear: better": "tab:green", "clear: worse": "tab:red", "not resolved at this budget": "0.55",
                   "not yet a codec": "black"}


def plot_paired_differences(pairs: pd.DataFrame, table: str, category: str = "all") -> Figure:
    """One panel per metric: each arm's mean per-item difference from the arm it is compared with, its 95 %
    interval, and a marker per seed; coloured by verdict, with the paper's difference where it has one."""
    sub = pairs[(pairs["table"] == table) & (pairs["category"] == category)]
    metrics = list(dict.fromkeys(sub["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 0.45 * sub["arm"].nunique() + 1.8),
                             squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        rows = sub[sub["metric"] == metric].reset_index(drop=True)
        labels = [f"{a} − {b}" for a, b in zip(rows["arm"], rows["compared_with"])]
        for y, row in rows.iterrows():
            colour = VERDICT_COLOURS.get(row["verdict"], "0.55")
            ax.errorbar(row["mean_diff"], y, xerr=[[row["mean_diff"] - row["ci95_low"]],
                                                   [row["ci95_high"] - row["mean_diff"]]],
                        fmt="o", color=colour, capsize=3)
            for seed_diff in str(row["seed_diffs"]).split(";"):
                if seed_diff not in ("", "nan"):
                    ax.plot(float(seed_diff), y, "|", color=colour, markersize=9)
            if np.isfinite(row["paper_diff"]):
                ax.plot(row["paper_diff"], y, "D", color="tab:purple", markersize=4, fillstyle="none")
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=v) for v, c in VERDICT_COLOURS.items()]
    handles += [plt.Line2D([], [], color="0.3", marker="|", ls="", label="one seed"),
                plt.Line2D([], [], color="tab:purple", marker="D", ls="", fillstyle="none", label="paper")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle(f"{table}: paired differences over items ({category}), 95 % bootstrap intervals", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return fig


def plot_mushra_beside_table1(table: pd.DataFrame) -> Figure:
    """Our listener means (with intervals) against the paper's Table 1 for the same codec, rate and category."""
    both = table.dropna(subset=["mushra_mean", "paper_mushra_mean"])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for category, group in both.groupby("category", sort=True):
        ax.errorbar(group["paper_mushra_mean"], group["mushra_mean"], xerr=group["paper_mushra_ci95"],
                    yerr=[group["mushra_mean"] - group["mushra_low"], group["mushra_high"] - group["mushra_mean"]],
                    fmt="o", capsize=3, label=f"{category} (paper: {group['paper_category'].iloc[0]})")
        for _, row in group.iterrows():
            ax.annotate(str(row["condition"]), (row["paper_mushra_mean"], row["mushra_mean"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.plot([0, 100], [0, 100], color="0.6", lw=1, ls="--", label="equal scores")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("paper, Table 1 (MUSHRA mean ± 95 % CI)")
    ax.set_ylabel("our listeners (mean, participant-clustered 95 % CI)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
