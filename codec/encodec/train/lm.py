"""Train the entropy-coding LM of a trained codec (paper section 3.3; the official recipe was never released).

    python -m codec.encodec.train.lm --codec PATH_OR_NAME --corpus DIR --out runs/lm [--steps N] [--max-minutes M]
        [--dim 128 --layers 5 --heads 8 --batch-size 8 ...] [--export codec/encodec/weights/encodec_eval_24khz_lm.pt]

Recipe: the codes of frame t-1 are embedded per codebook and summed, a causal transformer (post-norm, 3.5 s window,
the inference LM's start state) reads them, one linear head per codebook predicts frame t, and the loss is the
cross-entropy averaged over codes. Training runs on ``EntropyLM.logits``, the very function inference takes the
softmax of, over whole 5 s sequences (375 frames at 75 Hz) with the same window mask as frame-by-frame coding.
Files coded at a low bandwidth only carry their first K codebooks and the LM then sums only K embeddings, so each
batch draws K from the codec's bandwidths and trains inputs and losses on the first K codebooks only. Adam (betas
0.9/0.95, peak 2e-3), linear warm-up then cosine decay to a tenth of the peak rate at ``--steps`` (the
schedule follows steps, not time: pick ``--steps`` to fit ``--max-minutes``), gradient-norm clipping at 1.
Data, sinusoidal offsets (0 for half the sequences, like every coded file's start; else uniform in [0, 10000)
frames, so that long files' positions are trained) and the 5 % validation split: see ``lm_codes``.

Size: the defaults (dim 128, 5 layers, 8 heads, feed-forward 512) give about 5.2 M parameters for 16 codebooks of
1024, 10.4 MB in float16 beside a 12 MB codec; the official LM's dim 200 would be 15.6 M parameters at 32 codebooks.

Run folder: ``codes.npz`` (the coded corpus, see ``lm_codes``), ``checkpoint.pt`` (exact resume: weights, optimiser,
data RNG, step; written atomically; resumed automatically), ``train_log.{jsonl,csv}`` per step,
``eval_log.{jsonl,csv}`` (validation bits per code per codebook count, every ``--eval-every`` steps),
``validation.{csv,json}`` (the same at the end), ``lm_fp16.pt`` (inference weights,
``save_lm``), ``bitrate.{csv,json}`` (kbps without and with the LM measured on real .ecdc bytes of validation audio).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ... import audio
from ...files import replacing
from ..config import EncodecConfig
from ..lm import EntropyLM, load_lm, save_lm
from .lm_bitrate import BITRATE_FIELDS, check_writable, measure_bitrate
from .lm_codes import CodeBatch, SequenceSampler, codec_fingerprint, hash_fraction, load_or_encode, validation_batches

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "encodec-eval-lm-train/1"
EXPORT_NAME = "lm_fp16.pt"
TRAIN_FIELDS = ("step", "num_codebooks", "bandwidth_kbps", "loss_nats", "bits_per_code", "lr", "grad_norm",
                "seconds_per_step")
EVAL_FIELDS = ("step", "num_codebooks", "bandwidth_kbps", "frames", "bits_per_code", "kbps_ce_estimate")


@dataclass
class LMTrainConfig:
    """Everything that shapes an LM training run (saved in its checkpoint)."""

    dim: int = 128
    layers: int = 5
    heads: int = 8
    hidden_scale: int = 4
    batch_size: int = 8
    frames: int = 375  # 5 s at 75 Hz
    steps: int = 2000
    lr: float = 2e-3  # 1e-3 and 3e-3 both train stably; 3e-3 was ahead after 200 steps
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    max_offset: int = 10000  # frames; sinusoidal offsets are drawn in [0, max_offset)
    start_fraction: float = 0.5  # sequences at offset 0, like every coded file's start
    val_fraction: float = 0.05
    seed: int = 0
    eval_every: int = 250
    checkpoint_every: int = 100


def lm_for_codec(config: LMTrainConfig, codec: EncodecConfig) -> EntropyLM:
    """A fresh LM for all the codec's codebooks with the official 3.5 s window."""
    return EntropyLM(codec.n_q, codec.bins, dim=config.dim, num_layers=config.layers, num_heads=config.heads,
                     hidden_scale=config.hidden_scale, past_context=int(3.5 * codec.frame_rate), kv_cache=False)


def codebook_counts(codec: EncodecConfig) -> list[int]:
    """K of each target bandwidth: what coded files can carry."""
    return sorted({codec.num_codebooks(b) for b in codec.target_bandwidths})


def batch_cross_entropy(lm: EntropyLM, batch: CodeBatch) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy (nats) per codebook [K] over the unpadded frames, and the number of those frames."""
    logits, _ = lm.logits(batch.inputs, lm.initial_state(batch.inputs.shape[0], batch.offsets))
    ce = F.cross_entropy(logits, batch.targets, reduction="none")  # [B, K, T]
    return (ce * batch.mask[:, None]).sum(dim=(0, 2)), int(batch.mask.sum())


class LMTrainer:
    def __init__(self, config: LMTrainConfig, codec: EncodecConfig, train_codes: Sequence[np.ndarray],
                 val_codes: Sequence[np.ndarray], out_dir: Path | str, fingerprint: str = "") -> None:
        self.config, self.codec, self.fingerprint = config, codec, fingerprint
        self.out_dir = Path(out_dir)
        torch.manual_seed(config.seed)
        self.lm = lm_for_codec(config, codec)
        self.counts = codebook_counts(codec)
        self.sampler = SequenceSampler(train_codes, config.frames, config.max_offset, config.start_fraction,
                                       config.seed)
        self.val_codes = list(val_codes)
        self.optimizer = torch.optim.Adam(self.lm.parameters(), lr=config.lr, betas=(0.9, 0.95))
        self.step = 0

    def lr_at(self, step: int) -> float:
        """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` of the peak at ``steps``."""
        c = self.config
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        progress = min(1.0, (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps))
        return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def train_step(self) -> dict:
        self.lm.train()
        num_codebooks = self.sampler.choose(self.counts)
        batch = self.sampler.batch(self.config.batch_size, num_codebooks)
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        per_codebook, frames = batch_cross_entropy(self.lm, batch)
        loss = per_codebook.sum() / (frames * num_codebooks)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.lm.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.step += 1
        return {"step": self.step, "num_codebooks": num_codebooks,
                "bandwidth_kbps": self.codec.bandwidth_for(num_codebooks), "loss_nats": float(loss.detach()),
                "bits_per_code": float(loss.detach()) / math.log(2), "lr": lr, "grad_norm": float(grad_norm)}

    @torch.no_grad()
    def evaluate(self) -> list[dict]:
        """Validation cross-entropy in bits per code for each codebook count, and the kbps it predicts."""
        self.lm.eval()
        rows = []
        for num_codebooks in self.counts:
            total, frames = torch.zeros(num_codebooks), 0
            for batch in validation_batches(self.val_codes, num_codebooks, self.config.frames):
                summed, count = batch_cross_entropy(self.lm, batch)
                total += summed
                frames += count
            bits = float(total.sum()) / max(1, frames * num_codebooks) / math.log(2)
            rows.append({"step": self.step, "num_codebooks": num_codebooks,
                         "bandwidth_kbps": self.codec.bandwidth_for(num_codebooks), "frames": frames,
                         "bits_per_code": bits,
                         "kbps_ce_estimate": bits * num_codebooks * self.codec.frame_rate / 1000})
        return rows

    def fit(self, *, steps: Optional[int] = None, max_seconds: Optional[float] = None) -> Path:
        """Train to ``steps`` (default: the config's) or until ``max_seconds``; returns the last checkpoint."""
        steps = self.config.steps if steps is None else steps
        self.out_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        with tqdm(total=steps, initial=self.step, desc="train entropy LM", unit="step") as bar:
            while self.step < steps:
                t0 = time.monotonic()
                record = self.train_step()
                record["seconds_per_step"] = time.monotonic() - t0
                _append_log(self.out_dir / "train_log", [record], TRAIN_FIELDS)
                bar.update(1)
                bar.set_postfix(K=record["num_codebooks"], bits_per_code=f"{record['bits_per_code']:.3f}")
                if self.step % self.config.eval_every == 0 and self.val_codes:
                    _append_log(self.out_dir / "eval_log", self.evaluate(), EVAL_FIELDS)
                if self.step % self.config.checkpoint_every == 0:
                    self.save()
                if max_seconds is not None and time.monotonic() - start > max_seconds:
                    break
        return self.save()

    # ---- checkpoints -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "step": self.step, "config": asdict(self.config),
                "lm_config": self.lm.lm_config(), "codec_fingerprint": self.fingerprint,
                "lm": self.lm.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.state_dict(), "torch_rng": torch.get_rng_state()}

    def save(self) -> Path:
        """Write the checkpoint atomically; returns its path."""
        path = self.out_dir / CHECKPOINT_NAME
        with replacing(path) as part:
            torch.save(self.state_dict(), part)
        return path

    def load(self, path: Path | str) -> None:
        """Resume exactly from ``save``'s checkpoint, refusing one made for other codes or another LM shape."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not an LM training checkpoint")
        if state["codec_fingerprint"] != self.fingerprint:
            raise ValueError(f"{path}: trained on the codes of another codec ({state['codec_fingerprint'][:12]}, "
                             f"now {self.fingerprint[:12]}); use a new --out folder")
        if state["lm_config"] != self.lm.lm_config():
            raise ValueError(f"{path}: the checkpoint's LM is {state['lm_config']}, this run asks for "
                             f"{self.lm.lm_config()}")
        self.lm.load_state_dict(state["lm"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        self.step = state["step"]


def _append_log(stem: Path, records: list[dict], fields: Sequence[str]) -> None:
    """Append records to ``stem.jsonl`` and ``stem.csv`` (header written once)."""
    with stem.with_suffix(".jsonl").open("a") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    csv_path = stem.with_suffix(".csv")
    new = not csv_path.exists()
    with csv_path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(records)


def _write_table(out_dir: Path, name: str, rows: list[dict], fields: Sequence[str]) -> None:
    (out_dir / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    with (out_dir / f"{name}.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def measurement_audio(corpus_dir: Path, names: Sequence[str], sample_rate: int, channels: int, max_seconds: float,
                      max_file_seconds: float = 10.0) -> list[torch.Tensor]:
    """``max_seconds`` of validation audio at the codec's format: files in a fixed pseudo-random order (a mix of
    categories), each cut to its first ``max_file_seconds`` so that many files count."""
    wavs, left = [], int(max_seconds * sample_rate)
    for name in sorted(dict.fromkeys(n.split("#")[0] for n in names), key=hash_fraction):
        if left <= 0:
            break
        wav, sr = audio.load(corpus_dir / name)
        wav = audio.convert(wav, sr, sample_rate, channels)[:, :min(left, int(max_file_seconds * sample_rate))]
        wavs.append(torch.from_numpy(np.ascontiguousarray(wav)))
        left -= wav.shape[-1]
    return wavs


def main(argv: Optional[list[str]] = None) -> int:
    defaults = LMTrainConfig()
    parser = argparse.ArgumentParser(prog="python -m codec.encodec.train.lm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec", required=True, help="trained codec: a name or a path (checkpoints.load_model)")
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder with manifest.tsv")
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumed when it holds a checkpoint)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop training after this wall time (coding the corpus and measuring come on top)")
    parser.add_argument("--export", type=Path, default=None, help="also write the float16 inference LM here")
    parser.add_argument("--measure-seconds", type=float, default=60.0,
                        help="seconds of validation audio coded to .ecdc to measure the saving (0: skip)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, help=f"default {value}")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from ..checkpoints import load_model

    config = LMTrainConfig(**{name: getattr(args, name) for name in asdict(defaults)})
    codec = load_model(args.codec)
    if args.measure_seconds > 0:
        check_writable(codec)
    fingerprint = codec_fingerprint(codec, args.codec)
    corpus = load_or_encode(codec, fingerprint, args.corpus, args.out)
    train_codes, val_codes, val_names = corpus.split(config.val_fraction)
    trainer = LMTrainer(config, codec.config, train_codes, val_codes, args.out, fingerprint)
    checkpoint = args.out / CHECKPOINT_NAME
    if checkpoint.exists():
        trainer.load(checkpoint)
    trainer.fit(max_seconds=None if args.max_minutes is None else 60 * args.max_minutes)

    evaluation = trainer.evaluate()
    _write_table(args.out, "validation", evaluation, EVAL_FIELDS)
    metadata = {"codec": str(args.codec), "codec_fingerprint": fingerprint, "step": trainer.step,
                "train_config": asdict(config), "val_bits_per_code": {str(r["num_codebooks"]): r["bits_per_code"]
                                                                       for r in evaluation}}
    exported = save_lm(trainer.lm, args.out / EXPORT_NAME, metadata=metadata)
    if args.export is not None:
        save_lm(trainer.lm, args.export, metadata=metadata)
    print(f"step {trainer.step}: {len(train_codes)} training / {len(val_codes)} validation sequences; "
          f"float16 LM in {exported} ({exported.stat().st_size / 1e6:.1f} MB)")
    for row in evaluation:
        print(f"  validation cross-entropy, {row['num_codebooks']} codebooks ({row['bandwidth_kbps']:g} kbps nominal):"
              f" {row['bits_per_code']:.3f} bits/code -> {row['kbps_ce_estimate']:.2f} kbps estimated with the LM")
    if args.measure_seconds > 0:
        lm = load_lm(exported, codec.config)  # the shipped float16 weights, as users will load them
        wavs = measurement_audio(args.corpus, val_names, codec.sample_rate, codec.channels, args.measure_seconds)
        rows = measure_bitrate(codec, lm, wavs, codec.config.target_bandwidths)
        estimates = {r["num_codebooks"]: r["kbps_ce_estimate"] for r in evaluation}
        for row in rows:
            row["kbps_ce_estimate"] = estimates.get(row["num_codebooks"], float("nan"))
        _write_table(args.out, "bitrate", rows, BITRATE_FIELDS + ("kbps_ce_estimate",))
        print(f"measured on real .ecdc bytes of {rows[0]['files']} validation files, {rows[0]['seconds']:.1f} s "
              f"(headers included: {rows[0]['header_bytes_with_lm']} bytes per bandwidth):")
        for row in rows:
            print(f"  {row['bandwidth_kbps']:g} kbps nominal: {row['kbps_without_lm']:.3f} kbps without LM, "
                  f"{row['kbps_with_lm']:.3f} kbps with LM ({row['saving_percent']:.1f} % saved; "
                  f"cross-entropy estimate {row['kbps_ce_estimate']:.3f} kbps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
