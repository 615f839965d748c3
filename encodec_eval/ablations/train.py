"""Training one arm for one seed under the protocol: from the common checkpoint (or from scratch) for the table's
budget, checkpointing as it goes so that an interrupted run resumes exactly."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from codec.encodec.train.data import SegmentSampler, read_manifest
from codec.encodec.train.trainer import CHECKPOINT_NAME, Trainer
from encodec_eval.ablations.protocol import Arm, Protocol, Table

# Offsets that separate the data and shared (bandwidth, update) random streams of the seeds from the config seed
# that initialises the discriminators.
DATA_SEED_OFFSET = 1000
SHARED_SEED_OFFSET = 2000
TIME_NAME = "training_time.json"


def run_dir(work: Path, table: Table, arm: Arm, seed: int) -> Path:
    return work / table.id / arm.name / f"seed{seed}"


def train_arm(protocol: Protocol, table: Table, arm: Arm, seed: int, corpus: Path, work: Path,
              device: str = "cpu") -> Trainer:
    """Train (or resume, or find finished) one arm for one seed; returns its trainer at the end of the budget.

    A warm start loads the protocol's compact state (weights, balancer, step), then re-seeds the data draws and the
    shared bandwidth/update draws from ``seed``, so that every arm of one seed sees the same batches. The budget's
    ``steps`` count from the start: a warm arm ends at the state's step + steps.
    """
    config = protocol.config(table, arm, seed)
    model = config.encodec_config()
    sampler = SegmentSampler(read_manifest(corpus), model.sample_rate, model.channels, config.segment_seconds,
                             seed=config.seed)
    out = run_dir(work, table, arm, seed)
    trainer = Trainer(config, sampler.batch, out, device=device, sampler_state=sampler)
    checkpoint = out / CHECKPOINT_NAME
    if checkpoint.exists():
        trainer.load(checkpoint)
        start_step = int((out / "start_step").read_text())
    else:
        if table.start == "warm":
            trainer.load_compact(protocol.warm_state)
        sampler.load_state_dict({"rng": np.random.default_rng(DATA_SEED_OFFSET + seed).bit_generator.state})
        trainer.shared_rng.manual_seed(SHARED_SEED_OFFSET + seed)
        start_step = trainer.step
        out.mkdir(parents=True, exist_ok=True)
        (out / "start_step").write_text(f"{start_step}\n")
    end_step = start_step + int(table.budget["steps"])
    if trainer.step < end_step:
        spent = training_time(work, table, arm, seed)
        wall, cpu = time.monotonic(), time.process_time()
        try:
            trainer.fit(steps=end_step)
        finally:  # an interrupted session's time counts too
            spent = {"wall_seconds": spent["wall_seconds"] + time.monotonic() - wall,
                     "cpu_seconds": spent["cpu_seconds"] + time.process_time() - cpu}
            (out / TIME_NAME).write_text(json.dumps({k: round(v, 1) for k, v in spent.items()}) + "\n")
    return trainer


def training_time(work: Path, table: Table, arm: Arm, seed: int) -> dict[str, float]:
    """Wall and CPU seconds (this process, all threads) the arm's training took over all its sessions; zero before
    it trained, NaN when it was trained elsewhere without a record."""
    path = run_dir(work, table, arm, seed) / TIME_NAME
    if path.exists():
        return json.loads(path.read_text())
    if (run_dir(work, table, arm, seed) / CHECKPOINT_NAME).exists():
        return {"wall_seconds": float("nan"), "cpu_seconds": float("nan")}
    return {"wall_seconds": 0.0, "cpu_seconds": 0.0}
