"""Train EnCodec on a corpus; run directly or under ``torchrun`` for data-parallel training.

    python -m codec.encodec.train --config benchmarks/ablations/disc_msstft.yaml --corpus DIR --out runs/x
    torchrun --nproc_per_node 8 -m codec.encodec.train --config ... --corpus DIR --out runs/x

Each rank draws its own segments (seed + rank); a checkpoint in --out is resumed automatically (exactly); a
compact resume state from another machine continues a run approximately (``--resume-compact``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml

from . import distributed
from .config import TrainConfig
from .data import PROBE_SECONDS, BatchLoader, CorpusError, SegmentSampler, probe_segments, read_manifest
from .trainer import CHECKPOINT_NAME, Trainer


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codec.encodec.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="YAML of TrainConfig fields")
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="per rank")
    parser.add_argument("--segment-seconds", type=float, default=None)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=YAML", help="extra TrainConfig overrides")
    parser.add_argument("--resume-compact", type=Path, default=None,
                        help="start from a compact resume state (train.export --resume-state) when --out holds no "
                             "checkpoint yet")
    args = parser.parse_args(argv)
    rank, _, device = distributed.init_from_env()
    torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN time its conv algorithms once
    extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    config = TrainConfig.from_yaml(args.config, steps=args.steps, batch_size=args.batch_size,
                                   segment_seconds=args.segment_seconds, **extra)
    model = config.encodec_config()
    items = read_manifest(args.corpus)
    sampler = SegmentSampler(items, model.sample_rate, model.channels, config.segment_seconds, seed=config.seed + rank)
    try:
        probes = probe_segments(items, model.sample_rate, model.channels)
    except CorpusError:
        print(f"collapse monitor: no corpus file is {PROBE_SECONDS} s long; probing with training-length segments",
              file=sys.stderr)
        probes = probe_segments(items, model.sample_rate, model.channels, seconds=config.segment_seconds)
    speech_probes = [i for i, category in enumerate(c for c, segments in probes.items() for _ in segments)
                     if category.startswith("speech")]
    probes = torch.from_numpy(np.concatenate(list(probes.values())))
    if config.num_workers:  # background processes draw the batches (each from its own seed)
        loader = BatchLoader(sampler, config.batch_size, config.num_workers, seed=config.seed + rank,
                             pin_memory=device.type == "cuda")
        trainer = Trainer(config, loader, args.out, device=device, sampler_state=loader, probes=probes,
                          speech_probes=speech_probes)
    else:
        trainer = Trainer(config, sampler.batch, args.out, device=device, sampler_state=sampler, probes=probes,
                          speech_probes=speech_probes)
    checkpoint = args.out / CHECKPOINT_NAME
    if checkpoint.exists():
        trainer.load(checkpoint)
    elif args.resume_compact is not None:
        trainer.load_compact(args.resume_compact)
    trainer.fit(max_seconds=None if args.max_minutes is None else 60 * args.max_minutes)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
