"""How fast a discriminator learns to tell a trained generator's output from the real audio, with the generator frozen.

    .venv/bin/python benchmarks/discriminator_learning.py RUN/checkpoint.pt --corpus DIR [--steps 100]
        [--variant NAME:LR:FILTERS:START ...] [--out benchmarks/results/discriminator_learning.csv]

The diagnosis behind the adversarial phase's settings (MODEL_CARD.md): a hinge loss of 2.0 means the discriminator
gives real and generated audio the same score, so its gradient tells the generator nothing about realism. Each
variant trains one MS-STFT discriminator (shared across bandwidths, bfloat16 autocast as in training) for
``--steps`` updates against the checkpoint's frozen generator on corpus batches, and records the mean hinge loss
every 20 updates. START is ``trained`` (the checkpoint's own discriminator) or ``fresh`` (a new one, seed 0).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from codec.encodec.train.config import TrainConfig  # noqa: E402
from codec.encodec.train.data import SegmentSampler, read_manifest  # noqa: E402
from codec.encodec.train.trainer import Trainer  # noqa: E402

FIELDS = ("checkpoint_step", "variant", "adversary_lr", "filters", "start", "updates", "mean_hinge_loss",
          "load_average_1m")


def learn(checkpoint: dict, corpus: Path, lr: float, filters: int, start: str, steps: int) -> list[tuple[int, float]]:
    """(updates, mean hinge loss of the last 20) every 20 updates of one discriminator."""
    settings = {**checkpoint["config"], "adversary_lr": lr, "adversary_options": {"msstft": {"filters": filters}},
                "adversaries": ["msstft"], "adversary_per_bandwidth": False, "precision": "bf16-adversary"}
    config = TrainConfig.from_dict(settings)
    model = config.encodec_config()
    sampler = SegmentSampler(read_manifest(corpus), model.sample_rate, model.channels, config.segment_seconds, seed=5)
    trainer = Trainer(config, sampler.batch, tempfile.mkdtemp(prefix="disc_learning_"))
    trainer.model.load_state_dict(checkpoint["model"])
    if start == "trained":
        trainer.adversaries.load_state_dict(checkpoint["adversaries"])
    losses, points = [], []
    for update in range(1, steps + 1):
        x = sampler.batch(config.batch_size)
        bandwidth = trainer.bandwidths[update % len(trainer.bandwidths)]
        with torch.no_grad():
            y, _ = trainer.generator(x, bandwidth)
        losses.append(float(trainer._discriminator_step(x, y, bandwidth)["disc_msstft"]))
        if update % 20 == 0:
            points.append((update, sum(losses[-20:]) / 20))
    return points


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--variant", nargs="+", default=["trained:3e-4:16:trained", "fresh:1e-3:16:fresh"],
                        help="NAME:LR:FILTERS:START (START: trained or fresh)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "discriminator_learning.csv")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    new = not args.out.exists()
    with args.out.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        for spec in args.variant:
            name, lr, filters, start = spec.split(":")
            for updates, loss in learn(checkpoint, args.corpus, float(lr), int(filters), start, args.steps):
                row = {"checkpoint_step": checkpoint["step"], "variant": name, "adversary_lr": float(lr),
                       "filters": int(filters), "start": start, "updates": updates,
                       "mean_hinge_loss": round(loss, 4), "load_average_1m": machine_info()["load_average_1_5_15"][0]}
                writer.writerow(row)
                handle.flush()
                print(row, flush=True)


if __name__ == "__main__":
    main()
