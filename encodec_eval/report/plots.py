"""Rate-quality curves (one PNG per metric, a panel per category) and RTFs (processing s / audio s), drawn with
matplotlib Agg."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from codec.base import CodecSpec


def curve_key(spec: str) -> str:
    """The curve a summary row belongs to: its codec spec without the bitrate (``encodec:24khz@6`` ->
    ``encodec:24khz``), so that two models or two weights of one codec never share a curve."""
    parsed = CodecSpec.parse(spec)
    return str(CodecSpec(parsed.name, parsed.variant))


def curve_label(spec: str, described: Mapping[str, Any]) -> str:
    """A curve's label: its ``curve_key`` and, for a codec with weights, whose in a few words
    (``encodec:24khz (project's own, not Meta's weights)``), from the codec's description (run.json ``codecs``)."""
    from encodec_eval.report.summary import weights_tag

    tag = weights_tag(described)
    return f"{curve_key(spec)} ({tag} weights)" if tag else curve_key(spec)


def write_plots(summary: pd.DataFrame, metrics: Sequence[str], out_dir: Path,
                legend: Optional[Mapping[str, str]] = None) -> list[Path]:
    """One PNG per metric and per RTF column: mean vs measured kbps with 95 % intervals, a panel per category
    that has a score (speech metrics draw no music panel). ``legend`` maps a curve (``curve_key``) to its label,
    e.g. the weights behind an EnCodec curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    if summary.empty:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    legend = legend or {}
    written = []
    for column in list(metrics) + ["encode_rtf_1thread", "decode_rtf_1thread"]:
        scored = summary[np.isfinite(summary[f"{column}_mean"])]
        categories = list(dict.fromkeys(scored["category"]))
        if not categories:
            continue
        fig, axes = plt.subplots(1, len(categories), figsize=(4 * len(categories), 3.6), squeeze=False,
                                 sharey=True)
        for ax, category in zip(axes[0], categories):
            part = summary[summary["category"] == category]
            # one curve per codec over its bitrates; one line per anchor spec (no bitrate)
            lines = part["codec_spec"].map(curve_key)
            for codec, curve in part.groupby(lines, sort=True):
                curve = curve[np.isfinite(curve[f"{column}_mean"])].sort_values("kbps_measured_mean")
                if curve.empty:
                    continue
                mean = curve[f"{column}_mean"].to_numpy()
                if curve["kbps_nominal"].isna().all():  # anchors (reference, low-pass) have no rate to choose
                    ax.axhline(mean[0], linestyle="--", linewidth=1, color="grey",
                               label=f"{legend.get(codec, codec)} (anchor)")
                    continue
                low = np.nan_to_num(mean - curve[f"{column}_ci_low"].to_numpy())
                high = np.nan_to_num(curve[f"{column}_ci_high"].to_numpy() - mean)
                ax.errorbar(curve["kbps_measured_mean"], mean, yerr=[low, high], marker="o", capsize=3,
                            label=legend.get(codec, codec))
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(category)
            ax.set_xlabel("measured bitrate (kbps)")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(column)
        handles = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
        if handles:
            axes[0][-1].legend(handles.values(), handles.keys(), fontsize=8)
        fig.suptitle(f"{column}: mean and 95 % bootstrap interval over items")
        fig.tight_layout()
        path = out_dir / f"{column.replace('@', '_at_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
