"""Our rows beside the DAC paper's objective comparison (its Table 3): mel distance, ViSQOL and SI-SDR of DAC,
EnCodec and Opus at each bitrate, every row labelled by whose numbers and which weights they are.

The paper's rows come from its own test set and its own metric code: they anchor where a codec should land, they
are not ours. Ours are means over the run's items (all categories) per codec spec, with the weights each codec ran
with (``codec_info`` in the rows): a DAC or EnCodec row on random or project weights says so.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from encodec_eval.paper import describe_table
from encodec_eval.report.paper_keys import PaperCompareError
from encodec_eval.report.summary import weights_tag

TABLE = "dac_table3"
#: Our column beside each of the paper's, and how the two differ.
METRICS = {
    "mel_distance": ("mel_distance@24k", "ours: audiotools multi-scale mel distance at 24 kHz"),
    "visqol": ("visqol_audio@48k", "ours: ViSQOL v3 audio mode (48 kHz, SVR model)"),
    "si_sdr_db": ("si_snr_db", "ours: SI-SNR (mean removed), the paper's SI-SDR"),
}
CODECS = ("dac", "encodec", "opus")
#: What ran in the paper's rows, in the words of our weights column.
PAPER_WEIGHTS = {"dac": "the DAC authors' released 44.1 kHz model", "encodec": "Meta's EnCodec 24 kHz, run by the DAC "
                 "authors", "opus": "libopus, run by the DAC authors"}
COLOURS = {"dac": "tab:blue", "encodec": "tab:orange", "opus": "tab:green"}


def _weights_label(info: Any) -> str:
    """Whose weights a row's codec ran with, from its ``codec_info`` (a dict or its JSON text): the summary's tag
    (``Meta's official``, ``project's own, not Meta's``, ``RANDOM, untrained``), the hub id and revision for weights
    from the hub, or the implementation of a codec without weights."""
    if isinstance(info, str) and info.startswith("{"):
        info = json.loads(info)
    if not isinstance(info, dict):
        return "unknown weights"
    if info.get("weights_source") in ("hub cache", "local folder"):
        return str(info["weights"])
    return weights_tag(info) or str(info.get("implementation") or "no weights")


def paper_rows() -> pd.DataFrame:
    """The paper's DAC, EnCodec and Opus rows in the comparison's columns."""
    table = describe_table(TABLE)
    frame = table.frame[table.frame["our_spec"].fillna("") != ""]
    return pd.DataFrame({
        "source": f"{table.label} (their test set, not ours; {table.paper['arxiv']})",
        "codec": frame["codec"].str.lower(), "spec": frame["our_spec"], "kbps": frame["bitrate_kbps"],
        "weights": frame["codec"].str.lower().map(PAPER_WEIGHTS), "n_items": np.nan,
        **{name: frame[name] for name in METRICS},
    })


def our_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Our means per codec spec (DAC, EnCodec, Opus) over the ok rows, at the measured bitrate; a metric the run
    did not compute is NaN (``not_in_run`` in ``anchor_comparison``'s attrs)."""
    needed = ["codec", "codec_spec", "status", "kbps_measured"]
    missing = [column for column in needed if column not in rows.columns]
    if missing:
        raise PaperCompareError(f"rows have no column(s) {missing}; is this an encodec-bench rows.csv?")
    ok = rows[(rows["status"] == "ok") & rows["codec"].isin(CODECS)]
    out = []
    for spec, group in ok.groupby("codec_spec", sort=True):
        info = group["codec_info"].iloc[0] if "codec_info" in group else None
        record = {"source": "ours (encodec-bench run)", "codec": group["codec"].iloc[0], "spec": spec,
                  "kbps": pd.to_numeric(group["kbps_measured"], errors="coerce").mean(),
                  "weights": _weights_label(info), "n_items": len(group)}
        for name, (ours, _) in METRICS.items():
            values = pd.to_numeric(group[ours], errors="coerce") if ours in group else pd.Series(dtype=float)
            record[name] = values[np.isfinite(values)].mean()
        out.append(record)
    return pd.DataFrame(out, columns=["source", "codec", "spec", "kbps", "weights", "n_items", *METRICS])


def anchor_comparison(rows: pd.DataFrame) -> pd.DataFrame:
    """The paper's rows and ours in one table, sorted by codec and bitrate; ``attrs`` say how the metrics differ
    and where the paper's numbers were read."""
    table = describe_table(TABLE)
    frame = pd.concat([paper_rows(), our_rows(rows)], ignore_index=True)
    frame = frame.sort_values(["codec", "source", "kbps"], kind="stable", ignore_index=True)
    frame.attrs.update(caption=table.caption, source=table.source, cross_check=table.cross_check,
                       metrics={name: note for name, (_, note) in METRICS.items()},
                       not_in_run=[ours for ours, _ in METRICS.values() if ours not in rows.columns],
                       note="the paper's rows are on the DAC authors' test set with their metric code; ours are "
                            "means over this run's items: compare directions and gaps, not absolute values")
    return frame


def explain(frame: pd.DataFrame) -> str:
    """Markdown above the table: the caption, where the paper's numbers were read, and how to read them."""
    missing = frame.attrs.get("not_in_run") or []
    lines = [f"**DAC paper, Table 3**: {frame.attrs['caption']}", f"Read from: {frame.attrs['source']}",
             f"Cross-check: {frame.attrs['cross_check']}", f"*{frame.attrs['note']}.*",
             "Metrics: " + "; ".join(frame.attrs["metrics"].values()) + "."]
    if missing:
        lines.append(f"This run did not compute {', '.join(missing)}: run encodec-bench with those metrics to fill "
                     "our rows.")
    return "\n\n".join(lines)


def plot_anchor_comparison(frame: pd.DataFrame):
    """Three panels (mel distance, ViSQOL, SI-SDR/SNR against kbps): the paper's curves dashed, ours solid, each
    labelled by codec and weights. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4), squeeze=False)
    for ax, name in zip(axes[0], METRICS):
        for (source, codec, weights), group in frame.groupby(["source", "codec", "weights"], sort=True):
            paper = not source.startswith("ours")
            label = f"{codec}: DAC paper" if paper else f"{codec}: ours ({weights[:40]})"
            curve = group.sort_values("kbps")
            ax.plot(curve["kbps"], curve[name], "o--" if paper else "s-", label=label, alpha=0.8,
                    color=COLOURS.get(codec))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("kbps (paper: as printed; ours: measured)")
        ax.set_title(f"{name} ({'lower' if name == 'mel_distance' else 'higher'} is better)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("DAC paper Table 3 (their test set) beside this run")
    fig.tight_layout()
    return fig
