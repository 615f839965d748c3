"""Learning curves of training runs: export the EMA weights now and then, score them on fixed probe segments.

    python benchmarks/training_curve.py --corpus /work/corpus-train /work/train-runs/A /work/train-runs/B --every 600

Probe segments are drawn once (seed 1234) from the training corpus per category, so the curve measures how well
the codec fits its data, not the evaluation set (which stays unseen until the model card is written). Per snapshot
and bandwidth it appends SI-SNR (dB), mel distance (``mel_distance@24k``) and the share of codebook entries the
probes use, for the EMA and the raw weights, to ``RUN/curve.csv``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from codec.encodec.train.data import SegmentSampler, read_manifest
from codec.encodec.train.export import exported_model
from codec.encodec.train.trainer import CHECKPOINT_NAME
from encodec_eval.metrics import get_metric

PROBES_PER_CATEGORY = 6
PROBE_SECONDS = 2.0
FIELDS = ["step", "wall_time", "weights", "bandwidth_kbps", "category", "si_snr_db", "mel_distance@24k",
          "codes_used_percent"]


def probe_segments(corpus: Path, sample_rate: int) -> dict[str, np.ndarray]:
    items = read_manifest(corpus)
    rng = np.random.default_rng(1234)
    probes = {}
    for category in sorted({item.category for item in items}):
        pool = [item for item in items if item.category == category]
        pool = [pool[i] for i in rng.permutation(len(pool))[:40]]
        sampler = SegmentSampler(pool, sample_rate, 1, PROBE_SECONDS, seed=1234)
        probes[category] = np.stack([sampler.segment() for _ in range(PROBES_PER_CATEGORY)])
    return probes


@torch.no_grad()
def score(run: Path, probes: dict[str, np.ndarray], model_name: str) -> list[dict]:
    checkpoint = torch.load(run / CHECKPOINT_NAME, map_location="cpu", weights_only=False)
    si_snr, mel = get_metric("si_snr_db"), get_metric("mel_distance@24k")
    rows = []
    for weights in ("ema", "raw"):
        model = exported_model(checkpoint, model_name, use_ema=weights == "ema").fold_weight_norm()
        sr = model.sample_rate
        for bandwidth in model.config.target_bandwidths:
            for category, batch in probes.items():
                x = torch.from_numpy(batch)  # [probes, 1, samples]
                codes = model.encode(x, bandwidth)
                y = model.decode(codes)[..., : x.shape[-1]].numpy()
                used = np.mean([len(torch.unique(codes[0].codes[:, k])) for k in range(codes[0].codes.shape[1])])
                scores = [(si_snr.measure(ref, sr, out, sr).value, mel.measure(ref, sr, out, sr).value)
                          for ref, out in zip(batch, y)]
                rows.append({"step": int(checkpoint["step"]), "wall_time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "weights": weights, "bandwidth_kbps": bandwidth, "category": category,
                             "si_snr_db": float(np.mean([s for s, _ in scores])),
                             "mel_distance@24k": float(np.mean([m for _, m in scores])),
                             "codes_used_percent": 100 * used / model.config.bins})
    return rows


def append(path: Path, rows: list[dict]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def plot(curve: Path, out: Path) -> Path:
    """SI-SNR and mel distance against training steps at 6 kbps, per category, EMA weights solid, raw dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    rows = pd.read_csv(curve)
    rows = rows[rows["bandwidth_kbps"] == 6.0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = {c: f"C{i}" for i, c in enumerate(sorted(rows["category"].unique()))}
    for (weights, category), part in rows.groupby(["weights", "category"]):
        style = "-" if weights == "ema" else "--"
        for ax, column in zip(axes, ("si_snr_db", "mel_distance@24k")):
            ax.plot(part["step"], part[column], style, color=colours[category], marker="o", markersize=3,
                    label=f"{category} ({weights})")
    axes[0].set(xlabel="training step", ylabel="SI-SNR (dB), higher is better", title="SI-SNR at 6 kbps, probes")
    axes[1].set(xlabel="training step", ylabel="mel distance, lower is better", title="mel_distance@24k at 6 kbps")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--model", default="encodec_eval_24khz")
    parser.add_argument("--every", type=float, default=0, help="seconds between rounds; 0 scores once")
    parser.add_argument("--plot", type=Path, default=None, help="only draw RUN/curve.csv of the first run to this PNG")
    args = parser.parse_args()
    if args.plot is not None:
        print(f"wrote {plot(args.runs[0] / 'curve.csv', args.plot)}")
        return
    torch.set_num_threads(1)
    probes = probe_segments(args.corpus, 24000)
    seen: dict[Path, int] = {}
    while True:
        for run in args.runs:
            if not (run / CHECKPOINT_NAME).is_file():
                continue
            rows = score(run, probes, args.model)
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
