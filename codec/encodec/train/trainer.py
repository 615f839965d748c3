"""The EnCodec training loop (paper section 3.4 and 4; step order of audiocraft's compression solver).

Per step: draw a bandwidth for the batch, run the generator, update the discriminators with probability p (2/3 at
24 kHz, 1/2 at 48 kHz), backpropagate the RVQ commitment penalty directly to the encoder and the balanced losses
through the decoder output, step Adam (lr 3e-4, betas 0.5/0.9), update the EMA of the generator weights.
Checkpoints hold everything a bit-exact resume needs: weights, EMA, optimisers, balancer, RNG states, step.

On CUDA a step never waits for the GPU: losses stay on the device until a logging step reads them, the balancer's
norm averages and the weight EMA are updated there, and the random choices (bandwidth, discriminator update) come
from a CPU generator. ``precision: bf16`` runs the generator and discriminators under bfloat16 autocast, with the
quantizer, every loss and the balancer in float32.
"""

from __future__ import annotations

import csv
import json
import time
from contextlib import AbstractContextManager
from itertools import chain
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ...files import replacing
from ..model import EncodecModel
from . import distributed
from .balancer import Balancer
from .config import TrainConfig
from .discriminators import PerBandwidthAdversary, build_adversary
from .init import initialize
from .losses import (
    MultiScaleMelLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    time_l1,
)
from .monitor import TOP_DIRECTIONS, ProbeMonitor

CHECKPOINT_NAME = "checkpoint.pt"
PROBES_NAME = "probes.csv"
COMPACT_FORMAT = "encodec-eval-train-compact/1"
_CODEBOOK = "quantizer.vq.layers."
Record = dict[str, Union[int, float, torch.Tensor]]  # a step's log row; tensors are read on logging steps only


class Generator(nn.Module):
    """The model's training forward: encoder -> RVQ at one bandwidth (straight-through) -> decoder; with
    ``quantize=False`` the latent goes to the decoder as it is (the autoencoder alone, penalty zero)."""

    def __init__(self, model: EncodecModel, quantize: bool = True) -> None:
        super().__init__()
        self.model, self.quantize = model, quantize

    def forward(self, x: torch.Tensor, bandwidth: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (reconstruction cropped to the input length, RVQ commitment penalty)."""
        scale = self.model.normalization_scale(x)
        if scale is not None:
            x = x / scale
        latent = self.model.encoder(x)
        if self.quantize:
            with torch.autocast(x.device.type, enabled=False):  # codebook distances and EMA in float32
                result = self.model.quantizer(latent.float(), self.model.frame_rate, bandwidth)
            latent, penalty = result.quantized, result.penalty
        else:
            penalty = latent.new_zeros((), dtype=torch.float32)
        y = self.model.decoder(latent)[..., : x.shape[-1]].float()
        if scale is not None:
            y = y * scale
        return y, penalty


class Adversary(nn.Module):
    """One named adversary, optionally one copy per bandwidth."""

    def __init__(self, name: str, config: TrainConfig) -> None:
        super().__init__()
        model_config = config.encodec_config()
        options = config.adversary_options.get(name, {})
        self.per_bandwidth = config.adversary_per_bandwidth
        if self.per_bandwidth:
            self.net = PerBandwidthAdversary(name, model_config.sample_rate, model_config.channels,
                                             config.resolved_bandwidths(), **options)
        else:
            self.net = build_adversary(name, model_config.sample_rate, model_config.channels, **options)

    def forward(self, x: torch.Tensor, bandwidth: float):
        return self.net(x, bandwidth) if self.per_bandwidth else self.net(x)


class Trainer:
    def __init__(self, config: TrainConfig, batches: Callable[[int], torch.Tensor], out_dir: Path | str,
                 device: torch.device | str = "cpu", sampler_state: Optional[object] = None,
                 probes: Optional[torch.Tensor] = None) -> None:
        """``batches(batch_size)`` returns [B, C, T] audio; ``sampler_state`` (with state_dict/load_state_dict)
        is checkpointed with it so that data draws resume exactly. ``probes`` ([N, C, T] fixed segments) are scored
        every ``config.probe_every`` steps for the collapse monitor (``monitor.py``) into ``probes.csv`` and the
        training log."""
        self.config, self.batches, self.sampler_state = config, batches, sampler_state
        self.out_dir = Path(out_dir)
        self.device = torch.device(device)
        self.world = distributed.world_size()
        torch.manual_seed(config.seed)
        self.model = EncodecModel(config.encodec_config())
        initialize(self.model, config.init)
        self.model.to(self.device)
        self.generator = Generator(self.model, config.quantize)
        self.adversaries = nn.ModuleDict({n: Adversary(n, config) for n in config.adversaries}).to(self.device)
        distributed.broadcast_parameters(list(self.model.parameters()) + list(self.adversaries.parameters()))
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        fused = self.device.type == "cuda"  # one kernel for every parameter; CPU keeps the foreach path's numbers
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=config.betas, fused=fused)
        self.opt_d = (torch.optim.Adam(self.adversaries.parameters(), lr=config.lr, betas=config.betas, fused=fused)
                      if config.adversaries else None)
        self.mel_loss = MultiScaleMelLoss(self.model.sample_rate, config.mel_scales, log_l2=config.mel_log_l2
                                          ).to(self.device)
        self.balancer = Balancer(self._balancer_weights(), enabled=config.balancer)
        self.bandwidths = config.resolved_bandwidths()
        self.disc_probability = config.resolved_disc_probability()
        # Same seed on every rank: all ranks draw the same bandwidth and the same discriminator decision.
        self.shared_rng = torch.Generator().manual_seed(config.seed + 1)
        self.monitor = None if probes is None else ProbeMonitor(probes, self.bandwidths)
        # one batch through the discriminators in their update: same losses, gradients summed in another order
        self.fused_adversary = (self.device.type == "cuda" if config.fused_adversary is None
                                else config.fused_adversary)
        self.step = 0
        self.disc_updates = 0  # discriminator updates made by this object (benchmarks read it)
        self._ema_started = False  # whether the EMA holds weights yet (AveragedModel's n_averaged > 0)

    def _balancer_weights(self) -> dict[str, float]:
        w = self.config.weights
        unknown = set(w) - {"l1", "mel", "adv", "feat"}
        if unknown:
            raise ValueError(f"unknown loss weights {sorted(unknown)}; expected l1, mel, adv, feat")
        weights = {"l1": w.get("l1", 0.0), "mel": w.get("mel", 0.0)}
        for name in self.config.adversaries:
            weights[f"adv_{name}"] = w.get("adv", 0.0) / len(self.config.adversaries)
            weights[f"feat_{name}"] = w.get("feat", 0.0) / len(self.config.adversaries)
        return weights

    # ---- one step -------------------------------------------------------------------------------------------
    def autocast(self) -> AbstractContextManager:
        """bfloat16 autocast when the config asks for it (a no-op context in float32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def train_step(self) -> Record:
        """One step; its log row holds device tensors (reading them would wait for the GPU): ``fit`` reads them on
        logging steps only."""
        self.model.train()
        x = self.batches(self.config.batch_size).to(self.device, non_blocking=True)
        bandwidth = self.bandwidths[int(torch.randint(len(self.bandwidths), (1,), generator=self.shared_rng))]
        update_disc = bool(torch.rand((), generator=self.shared_rng) < self.disc_probability)
        adversarial = bool(self.config.adversaries) and self.step >= self.config.adversary_start_step
        with self.autocast():
            y, penalty = self.generator(x, bandwidth)
        record: Record = {"step": self.step + 1, "bandwidth_kbps": bandwidth,
                          "disc_updated": int(update_disc and adversarial)}
        if adversarial and update_disc:
            record.update(self._discriminator_step(x, y.detach(), bandwidth))
            self.disc_updates += 1
        losses = {"l1": time_l1(y, x), "mel": self.mel_loss(y, x)}
        for name, adversary in (self.adversaries.items() if adversarial else ()):
            adversary.requires_grad_(False)
            with torch.no_grad(), self.autocast():
                _, real_maps = adversary(x, bandwidth)
            with self.autocast():
                fake_logits, fake_maps = adversary(y, bandwidth)
            adversary.requires_grad_(True)
            losses[f"adv_{name}"] = generator_adversarial_loss(_float(fake_logits), self.config.generator_loss)
            losses[f"feat_{name}"] = feature_matching_loss([_float(m) for m in real_maps],
                                                           [_float(m) for m in fake_maps],
                                                           self.config.relative_feature_loss)
        self.opt_g.zero_grad(set_to_none=True)
        if penalty.requires_grad and self.config.commitment_weight > 0:
            (self.config.commitment_weight * penalty).backward(retain_graph=True)
        record["generator_total"] = self.balancer.backward(losses, y)
        distributed.average_gradients(self.model.parameters())
        self.opt_g.step()
        self._update_ema()
        self.step += 1
        record.update({k: v.detach() for k, v in losses.items()})
        record["commitment"] = penalty.detach()
        return record

    def _discriminator_step(self, x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> Record:
        record: Record = {}
        self.opt_d.zero_grad(set_to_none=True)
        total = x.new_zeros(())
        both = torch.cat([x, y]) if self.fused_adversary else None
        for name, adversary in self.adversaries.items():
            with self.autocast():
                if both is not None:
                    logits, _ = adversary(both, bandwidth)
                    real_logits = [t[: x.shape[0]] for t in logits]
                    fake_logits = [t[x.shape[0]:] for t in logits]
                else:
                    real_logits, _ = adversary(x, bandwidth)
                    fake_logits, _ = adversary(y, bandwidth)
            loss = discriminator_hinge_loss(_float(real_logits), _float(fake_logits))
            record[f"disc_{name}"] = loss.detach()
            total = total + loss
        total.backward()
        distributed.average_gradients(self.adversaries.parameters())
        self.opt_d.step()
        return record

    @torch.no_grad()
    def _update_ema(self) -> None:
        """``self.ema.update_parameters(self.model)`` with the same numbers but without its host synchronisation
        (it tests ``n_averaged``, a device tensor, at every call): the first update copies, later ones lerp by
        1 - decay, as ``get_ema_multi_avg_fn`` does, per device and dtype."""
        if not self._ema_started:
            self.ema.update_parameters(self.model)
            self._ema_started = True
            return
        groups: dict[tuple, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        ema = self.ema.module
        for mine, current in zip(chain(ema.parameters(), ema.buffers()),
                                 chain(self.model.parameters(), self.model.buffers()), strict=True):
            group = groups.setdefault((mine.device, mine.dtype), ([], []))
            group[0].append(mine.detach())
            group[1].append(current.detach())
        weight = 1 - self.config.ema_decay
        for (_, dtype), (mine, current) in groups.items():
            if dtype.is_floating_point or dtype.is_complex:
                torch._foreach_lerp_(mine, current, weight)
            else:
                for a, b in zip(mine, current):
                    a.copy_(a * self.config.ema_decay + b * weight)
        self.ema.n_averaged += 1

    # ---- the loop --------------------------------------------------------------------------------------------
    def fit(self, *, steps: Optional[int] = None, max_seconds: Optional[float] = None) -> Path:
        """Train until ``steps`` (default: the config's) or ``max_seconds``; returns the last checkpoint."""
        steps = self.config.steps if steps is None else steps
        self.out_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        main = distributed.is_main()
        bar = tqdm(total=steps, initial=self.step, desc=f"train {self.config.name}", unit="step", disable=not main)
        logged_at, logged_step = time.monotonic(), self.step
        while self.step < steps:
            record = self.train_step()
            bar.update(1)
            probed = main and self.monitor is not None and self.step % self.config.probe_every == 0
            if probed:
                record.update(self._probe())
            if main and (self.step % self.config.log_every == 0 or self.step == steps or probed):
                record = {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in record.items()}  # waits
                now = time.monotonic()
                record["seconds_per_step"] = (now - logged_at) / (self.step - logged_step)
                logged_at, logged_step = now, self.step
                self._log(record)
                bar.set_postfix(mel=f"{record['mel']:.3g}", l1=f"{record['l1']:.3g}",
                                **({"rank": f"{record['latent_effective_rank']:.1f}"}
                                   if "latent_effective_rank" in record else {}))
            if self.step % self.config.checkpoint_every == 0:
                self.save()
            if max_seconds is not None and time.monotonic() - start > max_seconds:
                break
        bar.close()
        return self.save()

    def _probe(self) -> dict[str, float]:
        """Score the probes and append the row to ``probes.csv`` (one row per probe step, pandas-ready)."""
        row = self.monitor.measure(self.model)
        path = self.out_dir / PROBES_NAME
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["step", *row])
            if new:
                writer.writeheader()
            writer.writerow({"step": self.step, **row})
        return row

    def _log(self, record: dict[str, float]) -> None:
        with (self.out_dir / "train_log.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        csv_path = self.out_dir / "train_log.csv"
        fixed = ["step", "bandwidth_kbps", "disc_updated", "generator_total", "l1", "mel", "commitment"]
        adversarial = sorted(k for k in record if k.startswith(("adv_", "feat_", "disc_")) and k not in fixed)
        monitor = ["latent_offset_share", f"latent_top{TOP_DIRECTIONS}_share", "latent_effective_rank",
                   *(f"si_snr_db@{b:g}kbps" for b in self.bandwidths)]
        fields = fixed + adversarial + ["seconds_per_step"] + monitor
        new = not csv_path.exists()
        with csv_path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(record)

    # ---- checkpoints -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step": self.step, "config": self.config.to_dict(), "model": self.model.state_dict(),
                "ema": self.ema.state_dict(), "adversaries": self.adversaries.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict() if self.opt_d else None,
                "balancer": self.balancer.state_dict(), "torch_rng": torch.get_rng_state(),
                "shared_rng": self.shared_rng.get_state(),
                "samplers": distributed.gather_objects(
                    self.sampler_state.state_dict() if self.sampler_state is not None else None)}

    def save(self) -> Path:
        """Write the checkpoint atomically (rank 0 writes; every rank must call it); returns its path."""
        path = self.out_dir / CHECKPOINT_NAME
        state = self.state_dict()
        if distributed.is_main():
            with replacing(path) as part:
                torch.save(state, part)
        return path

    def load(self, path: Path | str) -> None:
        """Resume from a checkpoint written by ``save``."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.adversaries.load_state_dict(state["adversaries"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.opt_d is not None:
            self.opt_d.load_state_dict(state["opt_d"])
        self.balancer.load_state_dict(state["balancer"])
        torch.set_rng_state(state["torch_rng"])
        self.shared_rng.set_state(state["shared_rng"])
        self._ema_started = bool(self.ema.n_averaged > 0)
        samplers = state["samplers"]
        if self.sampler_state is not None:
            if len(samplers) != distributed.world_size() or samplers[distributed.rank()] is None:
                raise ValueError(f"{path}: saved with {len(samplers)} data ranks, resuming with "
                                 f"{distributed.world_size()}; data draws cannot resume exactly")
            self.sampler_state.load_state_dict(samplers[distributed.rank()])
        self.step = state["step"]

    def load_compact(self, path: Path | str) -> None:
        """Continue a run from ``compact_state``: weights, balancer, step and data draws come back; Adam's moments
        and the weight EMA restart (from the loaded weights), so the continuation is close to, not equal to, an
        uninterrupted run."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        if not isinstance(state, dict) or state.get("format") != COMPACT_FORMAT:
            raise ValueError(f"{path}: not a compact training state ({COMPACT_FORMAT})")
        model_state = self.model.state_dict()
        for key, value in state["model"].items():
            model_state[key] = value.to(model_state[key].dtype)
        self.model.load_state_dict(model_state)
        for index, layer in enumerate(self.model.quantizer.vq.layers):
            if f"{_CODEBOOK}{index}._codebook.embed" in state["model"]:
                layer._codebook.restore_ema_sums()
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.config.ema_decay), use_buffers=True)
        self._ema_started = False
        if state["adversaries"] is not None:
            self.adversaries.load_state_dict({k: v.float() for k, v in state["adversaries"].items()})
        self.balancer.load_state_dict(state["balancer"])
        self.shared_rng.set_state(state["shared_rng"])
        if self.sampler_state is not None and state["samplers"][distributed.rank()] is not None:
            self.sampler_state.load_state_dict(state["samplers"][distributed.rank()])
        self.step = state["step"]

    def ema_model(self) -> EncodecModel:
        """The EMA generator weights as a plain EncodecModel (for evaluation and export)."""
        return self.ema.module


def _float(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Discriminator outputs in float32 at least for the losses (they come out in bfloat16 under autocast)."""
    return [t.float() if t.dtype in (torch.bfloat16, torch.float16) else t for t in tensors]


def compact_state(checkpoint: dict, trained_codebooks: int) -> dict:
    """A trainer checkpoint cut to what carries a run to another machine, small enough to commit: float16 generator
    weights with only the codebooks training reached (their EMA sums are rebuilt from codebook x usage on load), the
    discriminators only once they have trained, the balancer, step and data RNG; no optimiser moments, no EMA."""
    config = TrainConfig.from_dict(checkpoint["config"])

    def kept(key: str) -> bool:
        if key.endswith("._codebook.embed_avg"):
            return False
        return not key.startswith(_CODEBOOK) or int(key[len(_CODEBOOK):].split(".")[0]) < trained_codebooks

    half = {k: (v.half() if v.is_floating_point() else v) for k, v in checkpoint["model"].items() if kept(k)}
    adversaries_trained = bool(config.adversaries) and checkpoint["step"] > config.adversary_start_step
    return {"format": COMPACT_FORMAT, "step": checkpoint["step"], "config": checkpoint["config"], "model": half,
            "adversaries": ({k: v.half() for k, v in checkpoint["adversaries"].items()}
                            if adversaries_trained else None),
            "balancer": checkpoint["balancer"], "shared_rng": checkpoint["shared_rng"],
            "samplers": checkpoint["samplers"]}
