"""The EnCodec training loop (paper section 3.4 and 4; step order of audiocraft's compression solver).

Per step: draw a bandwidth for the batch, run the generator, update the discriminators with probability p (2/3 at
24 kHz, 1/2 at 48 kHz), backpropagate the RVQ commitment penalty directly to the encoder and the balanced losses
through the decoder output, step Adam (lr 3e-4, betas 0.5/0.9), update the EMA of the generator weights.
Checkpoints hold everything a bit-exact resume needs: weights, EMA, optimisers, balancer, RNG states, step.

On CUDA a step never waits for the GPU: losses stay on the device until a logging step reads them, the balancer's
norm averages and the weight EMA are updated there, and the random choices (bandwidth, discriminator update) come
from a CPU generator. ``precision: bf16`` runs the generator and discriminators under bfloat16 autocast, with the
quantizer, every loss and the balancer in float32; ``bf16-adversary`` the discriminators alone. On a CPU, bfloat16
runs only where the processor has bfloat16 arithmetic (AVX-512 BF16 or AMX); elsewhere oneDNN would emulate it,
slower than float32, so the trainer warns and trains in float32.
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from contextlib import AbstractContextManager
from itertools import chain
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.profiler import record_function
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
from .monitor import BAND_COLUMN, TOP_DIRECTIONS, VISQOL_COLUMN, ProbeMonitor

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
                 probes: Optional[torch.Tensor] = None, speech_probes: Sequence[int] = ()) -> None:
        """``batches(batch_size)`` returns [B, C, T] audio; ``sampler_state`` (with state_dict/load_state_dict)
        is checkpointed with it so that data draws resume exactly. ``probes`` ([N, C, T] fixed segments) are scored
        every ``config.probe_every`` steps for the collapse monitor (``monitor.py``) into ``probes.csv`` and the
        training log, those at the indices ``speech_probes`` with ViSQOL speech too."""
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
        adversary_lr = config.lr if config.adversary_lr is None else config.adversary_lr
        self.opt_d = (torch.optim.Adam(self.adversaries.parameters(), lr=adversary_lr, betas=config.betas, fused=fused)
                      if config.adversaries else None)
        self.mel_loss = MultiScaleMelLoss(self.model.sample_rate, config.mel_scales, log_l2=config.mel_log_l2
                                          ).to(self.device)
        self.balancer = Balancer(self._balancer_weights(), enabled=config.balancer)
        self.bandwidths = config.resolved_bandwidths()
        self.disc_probability = config.resolved_disc_probability()
        # Same seed on every rank: all ranks draw the same bandwidth and the same discriminator decision.
        self.shared_rng = torch.Generator().manual_seed(config.seed + 1)
        self.monitor = (None if probes is None else
                        ProbeMonitor(probes, self.bandwidths, speech_probes, self.model.sample_rate))
        # one batch through the discriminators in their update: same losses, gradients summed in another order
        self.fused_adversary = (self.device.type == "cuda" if config.fused_adversary is None
                                else config.fused_adversary)
        self.precision = effective_precision(config.precision, self.device)
        self.feature_loss = (torch.compile(feature_matching_loss, dynamic=False) if config.compile_feature_loss
                             else feature_matching_loss)
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
    def autocast(self, part: str = "generator") -> AbstractContextManager:
        """bfloat16 autocast for ``part`` ("generator" or "adversary") when the precision asks for it (a no-op
        context in float32)."""
        enabled = self.precision == "bf16" or (self.precision == "bf16-adversary" and part == "adversary")
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def train_step(self) -> Record:
        """One step; its log row holds device tensors (reading them would wait for the GPU): ``fit`` reads them on
        logging steps only. Its phases are named for ``torch.profiler`` (``benchmarks/adversarial_step.py``)."""
        self.model.train()
        x = self.batches(self.config.batch_size).to(self.device, non_blocking=True)
        bandwidth = self.bandwidths[int(torch.randint(len(self.bandwidths), (1,), generator=self.shared_rng))]
        update_disc = bool(torch.rand((), generator=self.shared_rng) < self.disc_probability)
        adversarial = bool(self.config.adversaries) and self.step >= self.config.adversary_start_step
        warming_up = adversarial and self.step < self.config.adversary_start_step + self.config.adversary_warmup_steps
        update_disc = update_disc or warming_up  # the warm-up updates the discriminators at every step
        with record_function("generator_forward"), self.autocast():
            y, penalty = self.generator(x, bandwidth)
        record: Record = {"step": self.step + 1, "bandwidth_kbps": bandwidth,
                          "disc_updated": int(update_disc and adversarial)}
        if adversarial and update_disc:
            with record_function("discriminator_update"):
                record.update(self._discriminator_step(x, y.detach(), bandwidth))
            self.disc_updates += 1
        with record_function("reconstruction_losses"):
            losses = {"l1": time_l1(y, x), "mel": self.mel_loss(y, x)}
        for name, adversary in (self.adversaries.items() if adversarial and not warming_up else ()):
            with record_function("adversarial_losses"):
                losses.update(self._adversarial_losses(name, adversary, x, y, bandwidth))
        self.opt_g.zero_grad(set_to_none=True)
        self._set_generator_lr(adversarial)
        with record_function("generator_backward"):
            if penalty.requires_grad and self.config.commitment_weight > 0:
                (self.config.commitment_weight * penalty).backward(retain_graph=True)
            record["generator_total"] = self.balancer.backward(losses, y)
        with record_function("generator_update"):
            distributed.average_gradients(self.model.parameters())
            self.opt_g.step()
            self._update_ema()
        self.step += 1
        record.update({k: v.detach() for k, v in losses.items()})
        record["commitment"] = penalty.detach()
        return record

    def _set_generator_lr(self, adversarial: bool) -> None:
        """The generator's rate for this step's phase: ``lr``, or ``adversarial_generator_lr`` once the adversary
        has joined."""
        rate = self.config.lr
        if adversarial and self.config.adversarial_generator_lr is not None:
            rate = self.config.adversarial_generator_lr
        for group in self.opt_g.param_groups:
            group["lr"] = rate

    def _adversarial_losses(self, name: str, adversary: nn.Module, x: torch.Tensor, y: torch.Tensor,
                            bandwidth: float) -> dict[str, torch.Tensor]:
        """The generator's adversarial and feature-matching losses from one adversary (its weights frozen)."""
        adversary.requires_grad_(False)
        with torch.no_grad(), self.autocast("adversary"):
            _, real_maps = adversary(x, bandwidth)
        with self.autocast("adversary"):
            fake_logits, fake_maps = adversary(y, bandwidth)
        adversary.requires_grad_(True)
        return {f"adv_{name}": generator_adversarial_loss(_float(fake_logits), self.config.generator_loss),
                f"feat_{name}": self.feature_loss(real_maps, fake_maps, self.config.relative_feature_loss)}

    def _discriminator_step(self, x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> Record:
        record: Record = {}
        self.opt_d.zero_grad(set_to_none=True)
        total = x.new_zeros(())
        both = torch.cat([x, y]) if self.fused_adversary else None
        for name, adversary in self.adversaries.items():
            with self.autocast("adversary"):
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
        if main and self.monitor is not None and not (self.out_dir / PROBES_NAME).exists():
            self._probe()  # the curve starts where the run starts (step 0, or the step a run continues from)
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
        # every row has the same columns, whether or not this step updated the discriminators (disc_*)
        adversarial = [f"{kind}_{name}" for name in self.config.adversaries for kind in ("adv", "feat", "disc")]
        monitor = ["latent_offset_share", f"latent_top{TOP_DIRECTIONS}_share", "latent_effective_rank",
                   *(f"si_snr_db@{b:g}kbps" for b in self.bandwidths),
                   *(f"{VISQOL_COLUMN}@{b:g}kbps" for b in self.bandwidths),
                   *(f"{BAND_COLUMN}@{b:g}kbps" for b in self.bandwidths)]
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


def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX tiles), so autocast pays."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def effective_precision(precision: str, device: torch.device) -> str:
    """The precision a run trains in: ``precision`` as configured, except float32 for a bfloat16 precision on a CPU
    without bfloat16 arithmetic (with a warning that names the fallback)."""
    if precision != "fp32" and device.type == "cpu" and not cpu_has_bfloat16():
        warnings.warn(f"precision {precision!r}: this CPU has no bfloat16 arithmetic (AVX-512 BF16 or AMX), where "
                      "bfloat16 would run slower than float32; training in float32", RuntimeWarning, stacklevel=3)
        return "fp32"
    return precision


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
