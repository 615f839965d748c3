"""Everything a training run depends on, in one dataclass that YAML files (the ablation configs) fill in."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml

from ..config import EncodecConfig
from .init import INITS

PAPER_WEIGHTS = {"l1": 0.1, "mel": 1.0, "adv": 3.0, "feat": 3.0}
PRECISIONS = ("fp32", "bf16", "bf16-adversary")
# Settings added after runs were recorded: at these values they are left out of config_hash, so earlier runs keep
# theirs (the speed settings, and the discriminator warm-up).
LATER_DEFAULTS = {"precision": "fp32", "num_workers": 0, "fused_adversary": None, "adversary_warmup_steps": 0,
                  "compile_feature_loss": False, "adversary_lr": None, "adversarial_generator_lr": None}


def _field_types(cls: type) -> dict[str, str]:
    return {f.name: str(f.type) for f in fields(cls)}


def _checked(name: str, value: Any, annotation: str) -> Any:
    """``value`` for a numeric or boolean setting, checked: a number written as text (YAML 1.1 reads ``1e-3``, with
    no dot, as a string) becomes the number; anything else that is not of the setting's type is an error. Numbers
    are otherwise kept as written, so that config hashes stay those of earlier runs."""
    optional = annotation.startswith("Optional[")
    kind = annotation[len("Optional["):-1] if optional else annotation
    if value is None and optional:
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"training setting {name} must be true or false, got {value!r}")
        return value
    if kind in ("int", "float"):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"training setting {name} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"training setting {name} must be a number, got {value!r}")
        if kind == "int":
            if value != int(value):
                raise ValueError(f"training setting {name} must be a whole number, got {value!r}")
            return int(value)
    return value


@dataclass
class TrainConfig:
    name: str = "encodec"
    model: str = "encodec_24khz"  # an EncodecConfig preset
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {n_filters: 16, lstm: 0, causal: false}
    bandwidths: Optional[list[float]] = None  # drawn per batch; None = the model's target bandwidths
    adversaries: list[str] = field(default_factory=lambda: ["msstft"])  # [] trains without an adversary
    adversary_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    adversary_per_bandwidth: bool = True
    adversary_start_step: int = 0  # train on reconstruction alone until the output is sensible, then add adversaries
    # Steps from adversary_start_step during which the discriminators alone learn (updated every step) while the
    # generator keeps to its reconstruction losses. A discriminator that starts from random weights against a
    # trained generator outputs about zero: its gradients say nothing yet, and the balancer would still give them
    # their full share (measured: without a warm-up, a trained generator's mel loss rose from 0.3 to 1.1 in 100
    # steps while the discriminator's hinge loss stayed at 2.0; MODEL_CARD.md).
    adversary_warmup_steps: int = 0
    disc_update_probability: Optional[float] = None  # None: 2/3 at 24 kHz, 1/2 at 48 kHz (paper)
    weights: dict[str, float] = field(default_factory=lambda: dict(PAPER_WEIGHTS))
    commitment_weight: float = 1.0
    # The generator's conv init (train/init.py): PyTorch's default starts the encoder at a near-constant latent.
    init: str = "signal_preserving"  # or "torch_default" (audiocraft's)
    quantize: bool = True  # False trains the SEANet autoencoder alone, quantizer bypassed (a recipe's first check)
    balancer: bool = True
    generator_loss: str = "paper"  # or "audiocraft"
    relative_feature_loss: bool = True
    mel_scales: list[int] = field(default_factory=lambda: list(range(5, 12)))
    # True: the L2 term compares log10 mel powers, as audiocraft's msspec does. The paper's linear-power reading
    # (False) keeps the encoder at its initial near-constant latent (benchmarks/results/learning_diagnosis.csv).
    mel_log_l2: bool = True
    lr: float = 3e-4
    # The generator's learning rate once the adversary has joined (None: ``lr``): a trained generator follows a young
    # discriminator's gradients too fast at the rate that trained it from scratch (MODEL_CARD.md).
    adversarial_generator_lr: Optional[float] = None
    # The discriminators' learning rate (None: ``lr``). A faster discriminator than generator (the two time-scale
    # update rule, Heusel et al. 2017) keeps a discriminator that starts against a trained generator from falling
    # behind: at one rate, a warm-started run's hinge loss stayed at 2.0 (nothing told apart) while the generator
    # followed its gradients (MODEL_CARD.md).
    adversary_lr: Optional[float] = None
    betas: tuple[float, float] = (0.5, 0.9)
    ema_decay: float = 0.99
    batch_size: int = 64
    segment_seconds: float = 1.0
    steps: int = 600_000
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000
    probe_every: int = 250  # steps between collapse-monitor scores of the probe segments (when probes are given)
    # Speed (at their defaults, runs are as before and keep their config_hash):
    # "bf16": generator and discriminators under bfloat16 autocast; losses, mel spectrograms, balancer and quantizer
    # distances stay float32. "bf16-adversary": the discriminators alone under bfloat16 autocast (the generator in
    # float32): on a CPU the discriminators are most of an adversarial step's work, and the generator's numbers stay
    # those of a float32 run. On a CPU without bfloat16 arithmetic either falls back to float32 (trainer.py).
    precision: str = "fp32"
    # > 0: batches drawn by background processes, batch k from its own seed (seed, k), pinned and prefetched; the
    # draws then differ from the single-stream sampler of num_workers 0 (which draws in the training loop).
    num_workers: int = 0
    # Real and generated audio through the discriminators as one batch in their update. Same losses; the gradients,
    # summed over one batch instead of two, round differently. None: on CUDA only, keeping CPU runs exact.
    fused_adversary: Optional[bool] = None
    # torch.compile the feature-matching loss: its casts, differences and means over every feature map fuse into a
    # few passes, forward and backward (the same values; the first step compiles for about a minute on a CPU).
    compile_feature_loss: bool = False

    def encodec_config(self) -> EncodecConfig:
        return EncodecConfig.preset(self.model).with_(**self.model_overrides)

    def resolved_bandwidths(self) -> list[float]:
        return list(self.bandwidths or self.encodec_config().target_bandwidths)

    def resolved_disc_probability(self) -> float:
        if self.disc_update_probability is not None:
            return self.disc_update_probability
        return 0.5 if self.encodec_config().sample_rate >= 48000 else 2 / 3

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out

    def config_hash(self) -> str:
        """Short sha256 of the settings that shape the result (name and logging cadence excluded)."""
        logging_only = ("name", "log_every", "checkpoint_every", "probe_every")
        data = {k: v for k, v in self.to_dict().items()
                if k not in logging_only and not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        types = _field_types(cls)
        config = cls(**{k: _checked(k, v, types[k]) for k, v in data.items()})
        config.betas = tuple(config.betas)
        config.encodec_config()  # fail now on a bad preset or override
        if config.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {config.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if config.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {config.num_workers}")
        if config.init not in INITS:
            raise ValueError(f"unknown init {config.init!r}; expected one of {', '.join(INITS)}")
        return config

    @classmethod
    def from_yaml(cls, path: Path | str, **overrides: Any) -> "TrainConfig":
        path = Path(path)
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of training settings")
        data.pop("ablation", None)  # the ablation table's description of the config, not a training setting
        data.setdefault("name", path.stem)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)
