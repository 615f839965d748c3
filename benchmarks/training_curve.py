"""Learning curves of training runs: export the EMA weights now and then, score them on fixed probe segments.

    python benchmarks/training_curve.py --corpus /work/corpus-train /work/train-runs/A /work/train-runs/B --every 600

Probe segments are drawn once (seed 1234) from the training corpus per category, so the curve measures how well
the codec fits its data, not the evaluation set (which stays unseen until the model card is written). They are
scored through the harness's own per-row path (``encodec_eval.run.score``: real bitstreams, metrics with NaN and a
reason). Per snapshot and bandwidth it appends the mean SI-SNR (dB) and mel distance (``mel_distance@24k``) over a
category's probes, the share of codebook entries the probes use and the collapse monitor's latent statistics
(``codec.encodec.train.monitor``), for the EMA and the raw weights, to ``RUN/curve.csv``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from codec.encodec.train.data import probe_segments, read_manifest
from codec.encodec.train.export import exported_model
from codec.encodec.train.monitor import BAND_COLUMN, TOP_DIRECTIONS, VISQOL_COLUMN, latent_stats
from codec.encodec.train.trainer import CHECKPOINT_NAME, PROBES_NAME
from encodec_eval.run.evaluate import RunOptions
from encodec_eval.run.score import AudioItem, model_codec
from encodec_eval.run.score import score as score_items

METRICS = ("si_snr_db", "mel_distance@24k")
FIELDS = ["step", "wall_time", "weights", "bandwidth_kbps", "category", "si_snr_db", "mel_distance@24k",
          "codes_used_percent", "latent_offset_share", f"latent_top{TOP_DIRECTIONS}_share", "latent_effective_rank"]


def probe_items(probes: dict[str, np.ndarray], sample_rate: int, corpus: Path) -> list[AudioItem]:
    """Each probe segment as an item the harness scores, named ``category/probeN``."""
    return [AudioItem.of(f"{category}/probe{index}", category, segment, sample_rate, corpus)
            for category, batch in probes.items() for index, segment in enumerate(batch)]


@torch.no_grad()
def score(run: Path, probes: dict[str, np.ndarray], items: list[AudioItem], model_name: str) -> list[dict]:
    """Rows of ``RUN/curve.csv`` for the run's latest checkpoint: ``probes`` (``[probes, 1, samples]`` per
    category) feed the codebook and latent statistics, ``items`` (the same segments) the harness's scoring."""
    checkpoint = torch.load(run / CHECKPOINT_NAME, map_location="cpu", weights_only=False)
    options = RunOptions(metrics=METRICS, repeats=0)  # learning curves carry no timings
    rows = []
    for weights in ("ema", "raw"):
        model = exported_model(checkpoint, model_name, use_ema=weights == "ema").fold_weight_norm()
        label = f"{run / CHECKPOINT_NAME} step {int(checkpoint['step'])} ({weights} weights)"
        # the latent does not depend on the bandwidth: its statistics once per category
        collapse = {category: latent_stats(model.encoder(torch.from_numpy(batch))).as_row()
                    for category, batch in probes.items()}
        for bandwidth in model.config.target_bandwidths:
            scored = score_items(model_codec(model, bandwidth, label), f"encodec:{model_name}@{bandwidth:g}", items,
                                 options)
            for category, batch in probes.items():
                codes = model.encode(torch.from_numpy(batch), bandwidth)[0].codes  # [probes, codebooks, frames]
                used = np.mean([len(torch.unique(codes[:, k])) for k in range(codes.shape[1])])
                mine = [row for row in scored if row["category"] == category]
                rows.append({"step": int(checkpoint["step"]), "wall_time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "weights": weights, "bandwidth_kbps": bandwidth, "category": category,
                             **{metric: float(np.mean([row[metric] for row in mine])) for metric in METRICS},
                             "codes_used_percent": 100 * used / model.config.bins, **collapse[category]})
    return rows


def append(path: Path, rows: list[dict]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def plot(probes_csv: Path, out: Path, adversary_start: Optional[int] = None) -> Path:
    """The collapse monitor's curve of a run (``RUN/probes.csv``, written by the trainer): SI-SNR on the probes per
    bandwidth and with the quantizer bypassed, and the latent's effective rank and top-4 share, against the step;
    with a second row for ViSQOL speech on the speech probes and the 2-8 kHz energy balance where the CSV has them
    (probes.csv files since the adversarial phase). ``adversary_start`` marks the step the adversary joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    rows = pd.read_csv(probes_csv)
    perceptual = [c for c in rows.columns if c.startswith((f"{VISQOL_COLUMN}@", f"{BAND_COLUMN}@"))]
    fig, axes = plt.subplots(2 if perceptual else 1, 2, figsize=(11, 7.6 if perceptual else 3.8), squeeze=False)
    _per_bandwidth(axes[0][0], rows, "si_snr_db", "SI-SNR (dB), higher is better", "SI-SNR on the probes")
    # the shipped run's first probes measured the time-varying part only (latent_varying_*): drawn dotted
    rank_axis = axes[0][1]
    share = rank_axis.twinx()
    for column in [c for c in rows.columns if c.startswith("latent_") and c.endswith("effective_rank")]:
        part = rows[["step", column]].dropna()
        rank_axis.plot(part["step"], part[column], color="C0", marker="o", markersize=3,
                       linestyle=":" if "varying" in column else "-", label=column.removeprefix("latent_"))
    for column in [c for c in rows.columns if c.startswith("latent_") and c.endswith(f"top{TOP_DIRECTIONS}_share")]:
        part = rows[["step", column]].dropna()
        share.plot(part["step"], part[column], color="C3", marker="s", markersize=3,
                   linestyle=":" if "varying" in column else "--", label=column.removeprefix("latent_"))
    rank_axis.set(xlabel="training step", ylabel="effective rank (blue)",
                  title=f"latent: effective rank and top-{TOP_DIRECTIONS} share of its energy")
    share.set_ylabel(f"top-{TOP_DIRECTIONS} share (red)", color="C3")
    lines = rank_axis.get_legend_handles_labels()[0] + share.get_legend_handles_labels()[0]
    rank_axis.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="center right")
    share.set_ylim(0, 1)
    if perceptual:
        _per_bandwidth(axes[1][0], rows, VISQOL_COLUMN, "ViSQOL speech@16k (MOS-LQO, 1-5)",
                       "ViSQOL speech on the speech probes")
        _per_bandwidth(axes[1][1], rows, BAND_COLUMN, "dB, 0 = the reference's energy",
                       "output energy at 2-8 kHz relative to the reference")
        axes[1][1].axhline(0, color="0.4", lw=0.8)
    for ax in [a for row in axes for a in row]:
        if adversary_start is not None:
            ax.axvline(adversary_start, color="0.3", ls="--", lw=0.8)
    if adversary_start is not None:
        axes[0][0].annotate("adversary joins", (adversary_start, 0.02), xycoords=("data", "axes fraction"),
                            fontsize=7, rotation=90, ha="right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _per_bandwidth(ax, rows, prefix: str, ylabel: str, title: str) -> None:
    """One line per bandwidth (dotted: the quantizer bypassed) of the columns ``<prefix>@<bandwidth>``."""
    for column in [c for c in rows.columns if c.startswith(f"{prefix}@")]:
        part = rows[["step", column]].dropna()
        label = column.split("@", 1)[1]
        ax.plot(part["step"], part[column], marker="o", markersize=3,
                linestyle=":" if label == "continuous" else "-", label=label)
    ax.set(xlabel="training step", ylabel=ylabel, title=f"{title}, per bandwidth")
    ax.legend(fontsize=7, title="bandwidth", title_fontsize=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--corpus", type=Path, help="the training corpus the probes come from (not with --plot)")
    parser.add_argument("--model", default="encodec_eval_24khz")
    parser.add_argument("--every", type=float, default=0, help="seconds between rounds; 0 scores once")
    parser.add_argument("--plot", type=Path, default=None,
                        help="only draw the collapse monitor's RUN/probes.csv of the first run to this PNG")
    parser.add_argument("--adversary-start", type=int, default=None, help="mark the step the adversary joined")
    args = parser.parse_args()
    if args.plot is not None:
        print(f"wrote {plot(args.runs[0] / PROBES_NAME, args.plot, args.adversary_start)}")
        return
    if args.corpus is None:
        parser.error("--corpus is required to score snapshots")
    torch.set_num_threads(1)
    probes = probe_segments(read_manifest(args.corpus), 24000)
    items = probe_items(probes, 24000, args.corpus)
    seen: dict[Path, int] = {}
    while True:
        for run in args.runs:
            if not (run / CHECKPOINT_NAME).is_file():
                continue
            rows = score(run, probes, items, args.model)
            if rows and seen.get(run) != rows[0]["step"]:
                seen[run] = rows[0]["step"]
                append(run / "curve.csv", rows)
                six = [r for r in rows if r["bandwidth_kbps"] == 6.0]
                print(run.name, rows[0]["step"], "SI-SNR@6kbps (dB):",
                      {f"{r['weights']}/{r['category']}": round(r["si_snr_db"], 2) for r in six}, flush=True)
        if not args.every:
            break
        time.sleep(args.every)


if __name__ == "__main__":
    main()
