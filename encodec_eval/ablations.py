"""Train each ablation config of ``benchmarks/ablations/`` for a fixed budget, score it, and write one tidy table.

    python -m encodec_eval.ablations --corpus DIR [--configs benchmarks/ablations/*.yaml] [--steps 150]
        [--max-minutes 4] [--batch-size 4] [--segment-seconds 0.5] [--bandwidths 6] [--eval-seconds 4]
        [--out benchmarks/results/ablations.csv] [--work runs/ablations] [--eval-weights ema|raw]
        [--eval-data FOLDER_OR_MANIFEST]

Every config is trained from scratch with the same budget and seed, then its EMA weights are scored on the
embedded default evaluation set (never part of the training corpus; ``--eval-data`` for another folder or manifest,
checksums verified as in ``encodec-bench``) at each evaluation bandwidth, through the harness's own scoring path
(``encodec_eval.run.score``): SI-SNR (``si_snr_db``), ``mel_distance@24k`` and ``visqol_audio@48k``, and the speed
of encode and decode as ``encode_x_realtime`` / ``decode_x_realtime`` (audio seconds per wall-clock second over all
items, one thread, warmed up; > 1 is faster than real time). One row per config x bandwidth x category (plus
``all``); rows already in the CSV for the same config hash and budget are kept, so an interrupted run resumes.
The budget overrides (steps, batch, segment, bandwidths) are recorded in each row. A finished checkpoint already in
``--work/<config>/`` (for instance from ``torchrun -m codec.encodec.train`` on GPUs) is scored instead of training
again.
"""

from __future__ import annotations

import argparse
import copy
import csv
import glob
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import yaml

from codec.encodec.model import EncodecModel
from codec.encodec.train.config import TrainConfig
from codec.encodec.train.data import SegmentSampler, read_manifest
from codec.encodec.train.trainer import CHECKPOINT_NAME, Trainer
from encodec_eval.data import Item, load_dataset
from encodec_eval.run.evaluate import RunOptions
from encodec_eval.run.score import model_codec, score

REPO = Path(__file__).resolve().parent.parent
METRICS = ("si_snr_db", "mel_distance@24k", "visqol_audio@48k")
FIELDS = ["config", "config_hash", "paper_table", "variant", "budget", "weights", "steps_done", "train_seconds",
          "final_train_mel", "final_train_l1", "bandwidth_kbps", "category", "n_items", *METRICS,
          "encode_x_realtime", "decode_x_realtime", "eval_set", "note"]


def load_ablation(path: Path, overrides: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """A config file: TrainConfig fields plus an ``ablation`` block (paper table, variant) for the table."""
    data = yaml.safe_load(path.read_text()) or {}
    meta = data.pop("ablation", {}) or {}
    data.setdefault("name", path.stem)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(data), meta


def score_model(model: EncodecModel, name: str, items: Sequence[Item], bandwidth: float, eval_seconds: float,
                label: str) -> tuple[list[dict], float, float]:
    """Harness rows of ``model`` on each item's first ``eval_seconds``, and the encode and decode speed over all items
    as x_realtime (audio seconds / processing seconds, from the rows' one-thread RTFs; one timed call per item)."""
    options = RunOptions(metrics=tuple(METRICS), repeats=1, timing_seconds=eval_seconds, score_seconds=eval_seconds)
    rows = score(model_codec(model, bandwidth, label), f"encodec:{name}@{bandwidth:g}", items, options)
    audio_seconds = sum(row["rtf_excerpt_seconds"] for row in rows)

    def x_realtime(column: str) -> float:
        return audio_seconds / sum(row[column] * row["rtf_excerpt_seconds"] for row in rows)

    return rows, x_realtime("encode_rtf_1thread"), x_realtime("decode_rtf_1thread")


def summarise(item_rows: list[dict], base: dict[str, Any]) -> list[dict]:
    out = []
    categories = ["all"] + sorted({r["category"] for r in item_rows})
    for category in categories:
        chosen = [r for r in item_rows if category == "all" or r["category"] == category]
        row = dict(base, category=category, n_items=len(chosen))
        for metric in METRICS:
            values = np.array([r[metric] for r in chosen], dtype=float)
            row[metric] = round(float(np.nanmean(values)), 4) if np.isfinite(values).any() else float("nan")
        out.append(row)
    return out


def existing_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def run(configs: list[Path], corpus: Path, out: Path, work: Path, steps: int, max_minutes: Optional[float],
        overrides: dict[str, Any], eval_bandwidths: list[float], eval_seconds: float,
        weights: str = "ema", eval_data: Optional[Path] = None) -> list[dict]:
    """Train (or reuse) and score each config; ``weights`` is "ema" (the generator EMA) or "raw" (the last step's
    weights, the meaningful choice for budgets of a few dozen steps, where the EMA is still mostly the init).
    ``eval_data``: the evaluation folder or manifest (None: the embedded default set)."""
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    rows = existing_rows(out)
    items = load_dataset(eval_data).items
    corpus_items = read_manifest(corpus)
    samplers: dict[tuple[int, int, float], SegmentSampler] = {}
    budget = f"steps={steps};max_minutes={max_minutes};weights={weights};" + ";".join(
        f"{k}={v}" for k, v in sorted(overrides.items()))
    done_hashes: dict[str, list[dict]] = {}
    for row in rows:
        if row["budget"] == budget:
            done_hashes.setdefault(row["config_hash"], []).append(row)
    for path in configs:
        config, meta = load_ablation(path, overrides)
        config.steps = steps
        digest = config.config_hash()
        if any(r["config"] == config.name for r in done_hashes.get(digest, [])):
            print(f"[ablations] {config.name}: already in {out} for this budget, skipped", flush=True)
            continue
        base = {"config": config.name, "config_hash": digest, "paper_table": meta.get("table", ""),
                "variant": meta.get("variant", config.name), "budget": budget, "weights": weights,
                "eval_set": "default (embedded)" if eval_data is None else str(eval_data),
                "note": meta.get("note", "")}
        if digest in done_hashes:  # the same settings under another name (e.g. the streamable baseline)
            twin = done_hashes[digest]
            rows += [dict(r, **base) for r in twin]
            print(f"[ablations] {config.name}: same settings as {twin[0]['config']}, rows reused", flush=True)
            write_rows(out, rows)
            continue
        model_config = config.encodec_config()
        key = (model_config.sample_rate, model_config.channels, config.segment_seconds)
        if key not in samplers:
            samplers[key] = SegmentSampler(corpus_items, *key, seed=config.seed)
        sampler = copy.deepcopy(samplers[key])
        sampler.load_state_dict({"rng": np.random.default_rng(config.seed).bit_generator.state})
        trainer = Trainer(config, sampler.batch, work / config.name, sampler_state=sampler)
        t0 = time.monotonic()
        if not load_finished_run(trainer, work / config.name / CHECKPOINT_NAME, steps):
            trainer.fit(steps=steps, max_seconds=None if max_minutes is None else 60 * max_minutes)
        train_seconds = time.monotonic() - t0
        last = trainer_last_record(work / config.name)
        base.update(steps_done=trainer.step, train_seconds=round(train_seconds, 1),
                    final_train_mel=last.get("mel", ""), final_train_l1=last.get("l1", ""))
        model = trainer.ema_model() if weights == "ema" else trainer.model
        label = f"{work / config.name / CHECKPOINT_NAME} ({weights} weights, step {trainer.step})"
        for bandwidth in eval_bandwidths:
            item_rows, encode_speed, decode_speed = score_model(model, config.name, items, bandwidth, eval_seconds,
                                                                label)
            rows += summarise(item_rows, dict(base, bandwidth_kbps=bandwidth,
                                              encode_x_realtime=round(encode_speed, 2),
                                              decode_x_realtime=round(decode_speed, 2)))
        done_hashes.setdefault(digest, []).extend(r for r in rows if r["config_hash"] == digest)
        write_rows(out, rows)
        print(f"[ablations] {config.name}: {trainer.step} steps in {train_seconds:.0f} s, rows written", flush=True)
    return rows


def load_finished_run(trainer: Trainer, checkpoint: Path, steps: int) -> bool:
    """Use a run trained elsewhere (e.g. with torchrun on GPUs, same --work folder) when it reached ``steps``.

    Only the weights are taken, so a run made with any number of ranks can be scored; its settings must match the
    config's, apart from the step count and logging cadence.
    """
    if not checkpoint.exists():
        return False
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if state["step"] < steps:
        return False
    ignored = {"steps", "log_every", "checkpoint_every"}
    ours = trainer.config.to_dict()
    differing = sorted(k for k in ours if k not in ignored and state["config"].get(k) != ours[k])
    if differing:
        raise ValueError(f"{checkpoint}: trained with other settings ({', '.join(differing)}); "
                         f"use another --work folder or the same settings")
    trainer.model.load_state_dict(state["model"])
    trainer.ema.load_state_dict(state["ema"])
    trainer.step = state["step"]
    return True


def trainer_last_record(run_dir: Path) -> dict[str, Any]:
    log = run_dir / "train_log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return json.loads(lines[-1]) if lines else {}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encodec_eval.ablations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a folder built by codec.encodec.train.corpus")
    parser.add_argument("--configs", nargs="+", default=[str(REPO / "benchmarks/ablations/*.yaml")])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/ablations.csv")
    parser.add_argument("--work", type=Path, default=REPO / "runs/ablations")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--max-minutes", type=float, default=None, help="cap on training time per config")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--segment-seconds", type=float, default=None)
    parser.add_argument("--bandwidths", type=float, nargs="+", default=None, help="training bandwidths (kbps)")
    parser.add_argument("--eval-bandwidths", type=float, nargs="+", default=[6.0])
    parser.add_argument("--eval-seconds", type=float, default=4.0, help="each item's first seconds are scored")
    parser.add_argument("--eval-data", type=Path, default=None,
                        help="evaluation folder or manifest (default: the embedded set; checksums verified)")
    parser.add_argument("--eval-weights", choices=("ema", "raw"), default="ema",
                        help="score the EMA generator (default) or the last step's weights (short budgets)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = [Path(p) for pattern in args.configs for p in sorted(glob.glob(pattern))]
    if not paths:
        print(f"no ablation configs match {args.configs}", file=sys.stderr)
        return 1
    overrides = {"batch_size": args.batch_size, "segment_seconds": args.segment_seconds,
                 "bandwidths": args.bandwidths}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    run(paths, args.corpus, args.out, args.work, args.steps, args.max_minutes, overrides, args.eval_bandwidths,
        args.eval_seconds, args.eval_weights, args.eval_data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
