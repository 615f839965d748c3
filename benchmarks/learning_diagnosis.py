"""Why the shipped EnCodec collapsed: one-knob ablations of the training recipe on one clip, and the initial latent.

    python -m benchmarks.learning_diagnosis [--steps 400] [--seeds 0 1] [--out CSV]

Each row trains the tiny model of the learning tests (``codec.encodec.train.overfit``) with the real trainer on
random 0.25 s crops of one 1 s speech clip of the default set, changing one setting against a recipe, and scores the
whole clip with the collapse monitor: the latent's offset share, top-4 share and effective rank, and SI-SNR (dB)
with the quantizer bypassed and at 0.3 and 2.4 kbps. ``initial_latent`` rows measure the shipped architecture
(16 filters, LSTMs) before any step under each init, on the first 4 s of the same file.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from benchmarks.machine import cpu_model
from codec.encodec.config import EncodecConfig
from codec.encodec.model import EncodecModel
from codec.encodec.train.config import TrainConfig
from codec.encodec.train.init import INITS, initialize
from codec.encodec.train.monitor import latent_stats
from codec.encodec.train.overfit import SHIPPED_RECIPE, TINY_BATCH, TINY_MODEL, load_clip, overfit_clip, tiny_config
from encodec_eval.data import load_dataset

CLIP_ITEM = "speech_clean/cmu_arctic_a0007_16k"
# The recipe the shipped model was trained with before the fix, and the fixed one; each row changes one setting.
BEFORE = {"init": "torch_default", "mel_log_l2": False, "lr": 3e-4}
AFTER = {"init": "signal_preserving", "mel_log_l2": True, "lr": 1e-3}
VARIANTS = [
    ("before", "recipe before the fix", {}),
    ("before", "+ signal-preserving init", {"init": "signal_preserving"}),
    ("before", "+ log-mel L2", {"mel_log_l2": True}),
    ("before", "+ lr 1e-3", {"lr": 1e-3}),
    ("after", "recipe after the fix", {}),
    ("after", "- signal-preserving init", {"init": "torch_default"}),
    ("after", "- log-mel L2", {"mel_log_l2": False}),
    ("after", "- lr 1e-3 (3e-4)", {"lr": 3e-4}),
    ("after", "commitment weight 0", {"commitment_weight": 0.0}),
    ("after", "dead-code threshold 2 (paper)", {"model_overrides": {**TINY_MODEL, "threshold_ema_dead_code": 2}}),
    ("after", "balancer off (raw weights)", {"balancer": False}),
    ("after", "quantizer bypassed", {"quantize": False}),
]


def speech_clip(seconds: float, offset_seconds: float = 0.75) -> torch.Tensor:
    item = next(i for i in load_dataset().items if i.item_id == CLIP_ITEM)
    return load_clip(item.path, seconds, offset_seconds)


def initial_latent_rows(seeds: list[int]) -> list[dict]:
    speech = speech_clip(4.0, offset_seconds=0.0).unsqueeze(0)
    rows = []
    for init in INITS:
        for seed in seeds:
            torch.manual_seed(seed)
            model = EncodecModel(EncodecConfig.encodec_eval_24khz())
            initialize(model, init)
            with torch.no_grad():
                stats = latent_stats(model.encoder(speech))
            rows.append({"kind": "initial_latent", "recipe": "", "variant": f"init {init}", "seed": seed, "steps": 0,
                         **stats.as_row()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/learning_diagnosis.csv"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    clip = speech_clip(1.0)
    rows = initial_latent_rows(args.seeds)
    crop = int(TINY_BATCH["segment_seconds"] * 24000)
    runs = [(name, variant, change, seed) for name, variant, change in VARIANTS for seed in args.seeds]
    for name, variant, change, seed in tqdm(runs, desc="one-knob ablations", unit="run"):
        base = BEFORE if name == "before" else AFTER
        config = tiny_config(TrainConfig.from_yaml(SHIPPED_RECIPE), **{**base, **change, "seed": seed})
        start = time.monotonic()
        with tempfile.TemporaryDirectory() as work:
            row = overfit_clip(config, clip, args.steps, work, crop_samples=crop, seed=seed)
        rows.append({"kind": "one_clip_ablation", "recipe": name, "variant": variant, "seed": seed,
                     "steps": args.steps, "init": config.init, "mel_log_l2": config.mel_log_l2, "lr": config.lr,
                     **row, "seconds": round(time.monotonic() - start, 1)})
    fields = list(dict.fromkeys(k for row in rows for k in row)) + ["machine"]
    machine = f"{cpu_model()}; torch {torch.__version__}; 1 thread"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows({**row, "machine": machine} for row in rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
