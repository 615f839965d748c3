"""Turn a training checkpoint into inference weights: the EMA (or raw) generator, as a named model, small.

    python -m codec.encodec.train.export runs/x --model encodec_eval_24khz --out encodec_eval_24khz.pt
    python -m codec.encodec.train.export runs/x --resume-state codec/encodec/weights/encodec_eval_24khz.resume.pt

The second form writes the compact state that carries the run to another machine (``trainer.compact_state``;
continue it with ``python -m codec.encodec.train ... --resume-compact FILE``).

A run may train a model with more codebooks than it ever uses (the 24 kHz preset holds 32, multi-bandwidth training
up to 12 kbps only reaches the first 16): those untrained codebooks are dropped, and the architecture must otherwise
equal the named preset. The file is our own format (``save_project``), float16 and inference-only by default, with
the run's step, config hash and weights source in its metadata so that every output can name what it used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import torch

from ...files import replacing
from ..checkpoints import CheckpointError, save_project
from ..config import EncodecConfig
from ..model import EncodecModel
from .config import TrainConfig
from .trainer import CHECKPOINT_NAME, compact_state

_ARCHITECTURE_FIELDS = ("sample_rate", "channels", "causal", "norm", "normalize", "segment", "overlap", "dimension",
                        "n_filters", "n_residual_layers", "ratios", "kernel_size", "last_kernel_size",
                        "residual_kernel_size", "dilation_base", "pad_mode", "true_skip", "compress", "lstm",
                        "trim_right_ratio", "bins")


def exported_model(checkpoint: dict, model_name: str, use_ema: bool = True) -> EncodecModel:
    """The generator of a trainer checkpoint as the preset ``model_name`` (codebooks beyond its n_q dropped)."""
    trained = TrainConfig.from_dict(checkpoint["config"]).encodec_config()
    target = EncodecConfig.preset(model_name)
    differs = [f for f in _ARCHITECTURE_FIELDS if getattr(trained, f) != getattr(target, f)]
    if differs or trained.n_q < target.n_q:
        raise CheckpointError(f"the run trained {trained.name} with other settings than {model_name}: "
                              f"{', '.join(differs) or f'{trained.n_q} codebooks < {target.n_q}'}")
    unused = [b for b in TrainConfig.from_dict(checkpoint["config"]).resolved_bandwidths()
              if b not in target.target_bandwidths]
    if unused:
        raise CheckpointError(f"the run trained bandwidths {unused} that {model_name} does not offer")
    if use_ema:
        state = {k.removeprefix("module."): v for k, v in checkpoint["ema"].items() if k.startswith("module.")}
    else:
        state = dict(checkpoint["model"])
    prefix = "quantizer.vq.layers."
    state = {k: v for k, v in state.items()
             if not k.startswith(prefix) or int(k[len(prefix):].split(".")[0]) < target.n_q}
    model = EncodecModel(target)
    model.load_state_dict(state, strict=True)
    return model.eval()


def read_checkpoint(run_dir: Path | str) -> dict:
    checkpoint_path = Path(run_dir) / CHECKPOINT_NAME
    if not checkpoint_path.is_file():
        raise CheckpointError(f"{checkpoint_path}: no training checkpoint here")
    return torch.load(checkpoint_path, map_location="cpu", weights_only=False)


def export(run_dir: Path | str, out: Path | str, model_name: str, use_ema: bool = True,
           dtype: torch.dtype = torch.float16) -> Path:
    """Write the run's generator to ``out`` in the project format; returns the path."""
    checkpoint = read_checkpoint(run_dir)
    model = exported_model(checkpoint, model_name, use_ema)
    config = TrainConfig.from_dict(checkpoint["config"])
    metadata = {"trained_steps": int(checkpoint["step"]), "train_config_hash": config.config_hash(),
                "train_config": config.to_dict(), "weights": "ema" if use_ema else "raw",
                "stored_dtype": str(dtype).removeprefix("torch.")}
    return save_project(model, out, dtype=dtype, metadata=metadata, inference_only=True)


def export_resume_state(run_dir: Path | str, out: Path | str) -> Path:
    """Write the run's compact resume state (atomically: it replaces the previous one in place)."""
    checkpoint = read_checkpoint(run_dir)
    config = TrainConfig.from_dict(checkpoint["config"])
    trained = config.encodec_config().num_codebooks(max(config.resolved_bandwidths()))
    with replacing(out) as part:
        torch.save(compact_state(checkpoint, trained), part)
    return Path(out)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codec.encodec.train.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help=f"a training output folder (holds {CHECKPOINT_NAME})")
    parser.add_argument("--model", default="encodec_eval_24khz", help="the preset the weights become")
    parser.add_argument("--out", type=Path, help="inference weights to write")
    parser.add_argument("--resume-state", type=Path, help="compact resume state to write")
    parser.add_argument("--raw", action="store_true", help="export the raw weights instead of their EMA")
    parser.add_argument("--float32", action="store_true", help="store float32 instead of float16")
    args = parser.parse_args(argv)
    if args.out is None and args.resume_state is None:
        parser.error("give --out, --resume-state or both")
    written = []
    if args.out is not None:
        written.append(export(args.run, args.out, args.model, use_ema=not args.raw,
                              dtype=torch.float32 if args.float32 else torch.float16))
    if args.resume_state is not None:
        written.append(export_resume_state(args.run, args.resume_state))
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
