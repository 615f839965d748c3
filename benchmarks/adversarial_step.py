"""What an adversarial training step costs on this CPU, as a ratio against the reconstruction-only step timed in the
same process, and where the time goes.

    .venv/bin/python benchmarks/adversarial_step.py [--threads 1 2] [--repeats 8] [--out benchmarks/results]

Every variant is the shipped config (``encodec_eval_24khz.train.yaml``: 16-channel generator, batch 8 x 0.5 s,
multi-bandwidth, balancer) with one or two settings changed. Each is timed twice, with the discriminator update
forced on and forced off, interleaved with the others (``encodec_eval.run.timing.time_calls``), in CPU seconds of
this process (with one thread: what a step costs whatever else the machine runs) and in wall seconds (the ratios
of more than one thread use these: CPU time would count threads that wait); a step's expected cost is
p x (with update) + (1 - p) x (without), p being the variant's update probability (the paper's 2/3 at 24 kHz).

Variants are of three kinds, and only the first two are speed-ups:
- ``reference``: the reconstruction-only step that the ratios divide by (float32, as the shipped model trained);
- ``speed lever``: the same losses computed another way (bfloat16 autocast), checked on the first step's losses
  against float32 from the same weights and batch (``max_rel_loss_diff``);
- ``ablation arm``: a different discriminator (fewer filters, fewer updates): it trains another model, and the
  ablation table (``encodec_eval.ablations``) scores it as an arm of its own.

Writes ``adversarial_step.csv`` (one row per variant), ``adversarial_step.json`` (machine, load, settings) and
``adversarial_step.png``, with a profile of one step per variant (CPU seconds per phase, from the trainer's
``record_function`` scopes).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from codec.encodec.train.config import TrainConfig  # noqa: E402
from codec.encodec.train.trainer import Trainer, cpu_has_bfloat16  # noqa: E402
from encodec_eval.run.timing import time_calls  # noqa: E402

SHIPPED_CONFIG = ROOT / "codec" / "encodec" / "weights" / "encodec_eval_24khz.train.yaml"
PHASES = ("generator_forward", "discriminator_update", "reconstruction_losses", "adversarial_losses",
          "generator_backward", "generator_update")
NEVER = 10 ** 9  # adversary_start_step beyond any run: reconstruction only


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "reference", "speed lever" or "ablation arm"
    what: str
    settings: dict[str, Any] = field(default_factory=dict)


VARIANTS = (
    Variant("reconstruction", "reference", "no adversary (the shipped model's steps so far), float32",
            {"adversary_start_step": NEVER}),
    Variant("reconstruction_bf16", "speed lever", "no adversary, generator under bfloat16 autocast",
            {"adversary_start_step": NEVER, "precision": "bf16"}),
    Variant("msstft", "speed lever", "the paper's MS-STFT adversary (32 filters), float32: the step before this work",
            {}),
    Variant("msstft_bf16_adversary", "speed lever", "MS-STFT (32 filters), discriminators under bfloat16 autocast",
            {"precision": "bf16-adversary"}),
    Variant("msstft_bf16", "speed lever", "MS-STFT (32 filters), generator and discriminators under bfloat16",
            {"precision": "bf16"}),
    Variant("msstft_bf16_adversary_compiled", "speed lever",
            "MS-STFT (32 filters), bfloat16 discriminators, feature-matching loss compiled (torch.compile)",
            {"precision": "bf16-adversary", "compile_feature_loss": True}),
    Variant("msstft_fused_bf16_adversary", "speed lever",
            "MS-STFT (32 filters), real and generated audio as one discriminator batch, bfloat16 discriminators",
            {"precision": "bf16-adversary", "fused_adversary": True}),
    Variant("msstft16", "ablation arm", "MS-STFT at 16 filters (scaled to the 16-channel generator), float32",
            {"adversary_options": {"msstft": {"filters": 16}}}),
    Variant("msstft16_bf16_adversary", "ablation arm",
            "MS-STFT at 16 filters, discriminators under bfloat16 autocast (the shipped model's adversarial phase)",
            {"adversary_options": {"msstft": {"filters": 16}}, "precision": "bf16-adversary"}),
    Variant("msstft16_bf16_adversary_compiled", "ablation arm",
            "MS-STFT at 16 filters, bfloat16 discriminators, feature-matching loss compiled (torch.compile)",
            {"adversary_options": {"msstft": {"filters": 16}}, "precision": "bf16-adversary",
             "compile_feature_loss": True}),
    Variant("msstft_p1of3_bf16_adversary", "ablation arm",
            "MS-STFT (32 filters), discriminator updated on 1/3 of steps instead of 2/3, bfloat16 discriminators",
            {"disc_update_probability": 1 / 3, "precision": "bf16-adversary"}),
)


#: What every variant starts from on top of the shipped config: the paper's adversary (32 filters, float32,
#: nothing compiled or fused) in full from the first step. The shipped config's adversarial phase sets its own
#: levers (16 filters, bfloat16 discriminators, a discriminator warm-up in which the generator meets no
#: adversary); each variant names the levers it times, so that none is inherited unnamed.
PAPER_ADVERSARY = {"adversary_start_step": 0, "adversary_warmup_steps": 0, "adversary_options": {},
                   "precision": "fp32", "compile_feature_loss": False, "fused_adversary": False}


def config_of(variant: Variant) -> TrainConfig:
    base = TrainConfig.from_yaml(SHIPPED_CONFIG)
    return TrainConfig.from_dict({**base.to_dict(), **PAPER_ADVERSARY, **variant.settings})


def trainer_of(variant: Variant, batch: torch.Tensor, out: Path) -> Trainer:
    return Trainer(config_of(variant), lambda size: batch, out / variant.name)


def forced_step(trainer: Trainer, update: bool) -> None:
    """One step with the discriminator update forced on or off (the draw from the shared RNG still happens)."""
    trainer.disc_probability = 1.0 if update else 0.0
    trainer.train_step()


def first_losses(variant: Variant, batch: torch.Tensor, out: Path) -> dict[str, float]:
    """Losses of a fresh trainer's first step with a discriminator update (weights from the config's seed)."""
    trainer = trainer_of(variant, batch, out / "losses")
    trainer.disc_probability = 1.0
    record = trainer.train_step()
    return {k: float(v) for k, v in record.items() if k.startswith(("l1", "mel", "adv_", "feat_", "disc_"))}


def phase_seconds(trainer: Trainer) -> dict[str, float]:
    """CPU seconds per named phase of one step with a discriminator update."""
    trainer.disc_probability = 1.0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train_step()
    totals = {event.key: event.cpu_time_total / 1e6 for event in prof.key_averages()}
    return {f"profile_s_{phase}": round(totals.get(phase, 0.0), 4) for phase in PHASES}


def run(threads: int, repeats: int, variants: tuple[Variant, ...] = VARIANTS) -> list[dict[str, Any]]:
    """The rows of one thread count (see the module docstring); ``variants`` always include the reconstruction
    step (the ratios' reference) and the float32 MS-STFT step (the speed levers' reference losses)."""
    names = [v.name for v in variants]
    if names[:1] != ["reconstruction"] or "msstft" not in names:
        raise ValueError(f"variants must start with 'reconstruction' and include 'msstft', got {names}")
    torch.set_num_threads(threads)
    base = TrainConfig.from_yaml(SHIPPED_CONFIG)
    model = base.encodec_config()
    shape = (base.batch_size, model.channels, int(base.segment_seconds * model.sample_rate))
    batch = 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    work = Path(tempfile.mkdtemp(prefix="adversarial_step_"))
    trainers = {v.name: trainer_of(v, batch, work) for v in variants}
    for trainer in trainers.values():  # warm-up: oneDNN builds its kernels on the first calls of each shape
        for update in (True, False, True):
            forced_step(trainer, update)
    calls = {}
    for name, trainer in trainers.items():
        calls[f"{name}|on"] = lambda t=trainer: forced_step(t, True)
        calls[f"{name}|off"] = lambda t=trainer: forced_step(t, False)
    timings = time_calls(calls, repeats, autograd=True)
    reference_losses = first_losses(variants[names.index("msstft")], batch, work)
    rows = []
    for variant in variants:
        trainer = trainers[variant.name]
        adversarial = bool(trainer.config.adversaries) and trainer.config.adversary_start_step < NEVER
        p = trainer.config.resolved_disc_probability() if adversarial else 0.0
        row = {"threads": threads, "variant": variant.name, "kind": variant.kind, "what": variant.what,
               "precision": trainer.precision, "adversary": "msstft" if adversarial else "none",
               "adversary_filters": trainer.config.adversary_options.get("msstft", {}).get("filters", 32)
               if adversarial else "", "disc_update_probability": round(p, 4)}
        for clock in ("cpu", "wall"):
            on = statistics.median(getattr(timings[f"{variant.name}|on"], f"{clock}_seconds"))
            off = statistics.median(getattr(timings[f"{variant.name}|off"], f"{clock}_seconds"))
            row.update({f"{clock}_s_step_with_update": round(on, 4), f"{clock}_s_step_without_update": round(off, 4),
                        f"{clock}_s_step": round(p * on + (1 - p) * off, 4)})
        rows.append(row)
    # One thread: CPU seconds (what a step costs whatever else runs). More threads: wall seconds, since CPU time
    # would count threads that wait.
    basis = "cpu" if threads == 1 else "wall"
    reference = rows[0][f"{basis}_s_step"]
    for row, variant in zip(rows, variants):
        row["ratio_basis"] = basis
        row["ratio_to_reconstruction"] = round(row[f"{basis}_s_step"] / reference, 3)
        same_architecture = variant.kind == "speed lever" and row["adversary"] == "msstft"
        if same_architecture:
            losses = first_losses(variant, batch, work)
            row["max_rel_loss_diff"] = round(max(abs(losses[k] - v) / abs(v) for k, v in reference_losses.items()), 5)
        else:
            row["max_rel_loss_diff"] = ""
        row.update(phase_seconds(trainers[variant.name]))
    return rows


def write(rows: list[dict[str, Any]], out_dir: Path, threads: list[int], repeats: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "adversarial_step.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    info = {**machine_info(), "threads": threads, "repeats": repeats, "cpu_bfloat16": cpu_has_bfloat16(),
            "config": str(SHIPPED_CONFIG.relative_to(ROOT)) if SHIPPED_CONFIG.is_relative_to(ROOT)
            else str(SHIPPED_CONFIG), "batch": "the config's batch_size x segment_seconds (8 x 0.5 s shipped)",
            "timing": "median CPU and wall seconds per step, update forced on and off, interleaved; "
                      "*_s_step = p x on + (1 - p) x off; ratios on CPU seconds at 1 thread, wall seconds above",
            "target": "ratio_to_reconstruction <= 2.5"}
    (out_dir / "adversarial_step.json").write_text(json.dumps(info, indent=2) + "\n")
    plot(rows, out_dir / "adversarial_step.png", info)


def plot(rows: list[dict[str, Any]], path: Path, info: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"reference": "0.5", "speed lever": "tab:blue", "ablation arm": "tab:orange"}
    counts = sorted({r["threads"] for r in rows})
    fig, axes = plt.subplots(1, len(counts), figsize=(9 * len(counts), 4.8), squeeze=False, sharey=True)
    for ax, threads in zip(axes[0], counts):
        mine = [r for r in rows if r["threads"] == threads][::-1]
        ax.barh([r["variant"] for r in mine], [r["ratio_to_reconstruction"] for r in mine],
                color=[colours[r["kind"]] for r in mine])
        ax.axvline(2.5, color="tab:red", linestyle="--", label="target 2.5x")
        for kind, colour in colours.items():
            ax.barh([], [], color=colour, label=kind)
        ax.set_xlabel(f"{'CPU' if threads == 1 else 'wall'} time per training step / reconstruction-only step "
                      "(float32), same process")
        ax.set_title(f"{threads} thread(s), {info['cpu']}", fontsize=9)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("Cost of an adversarial training step at the shipped config (batch 8 x 0.5 s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts, one run each")
    parser.add_argument("--repeats", type=int, default=8, help="timed steps per variant, update on and off each")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--variants", nargs="+", choices=[v.name for v in VARIANTS], default=None,
                        help="a subset (default: all; reconstruction and msstft are always run)")
    args = parser.parse_args(argv)
    chosen = tuple(v for v in VARIANTS if args.variants is None
                   or v.name in {"reconstruction", "msstft", *args.variants})
    rows = [row for threads in args.threads for row in run(threads, args.repeats, chosen)]
    write(rows, args.out, args.threads, args.repeats)
    for row in rows:
        print(f"{row['threads']} {row['variant']:32s} {row['kind']:13s} {row[row['ratio_basis'] + '_s_step']:7.3f} s"
              f"  x{row['ratio_to_reconstruction']:.2f}  loss diff {row['max_rel_loss_diff']}")
    return rows


if __name__ == "__main__":
    main()
