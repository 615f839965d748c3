"""EnCodec model description: one small config object instead of positional arguments.

The presets reproduce the official 24 kHz and 48 kHz models (the paper, Défossez et al. 2022, arXiv:2210.13438,
section 3.1, as the official package builds them) and the 32 kHz MusicGen codec of the Hugging Face hub (its
``facebook/encodec_32khz`` config). Ablation variants change fields such as ``n_filters``, ``lstm`` (0 for none)
or ``n_residual_layers``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Optional


@dataclass(frozen=True)
class EncodecConfig:
    """Everything that shapes an EnCodec model; equal configs build models with identical state-dict layouts."""

    name: str = "encodec_24khz"
    sample_rate: int = 24000
    channels: int = 1
    causal: bool = True
    norm: str = "weight_norm"  # or "time_group_norm"
    normalize: bool = False  # per-segment RMS scale, stored beside the codes
    segment: Optional[float] = None  # seconds; None codes the whole signal at once
    overlap: float = 0.01  # fraction of a segment shared with the next one
    target_bandwidths: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0, 24.0)
    # SEANet
    dimension: int = 128
    n_filters: int = 32
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    pad_mode: str = "reflect"
    true_skip: bool = False  # identity shortcut in residual blocks instead of a 1x1 conv
    compress: int = 2
    lstm: int = 2  # LSTM layers at the encoder end and decoder start; 0 for none
    trim_right_ratio: float = 1.0
    # Residual vector quantizer
    bins: int = 1024
    decay: float = 0.99
    kmeans_init: bool = True
    kmeans_iters: int = 50
    threshold_ema_dead_code: float = 2
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # free-form notes (origin of weights, ...)

    def __post_init__(self) -> None:
        if self.norm not in ("weight_norm", "time_group_norm", "none"):
            raise ValueError(f"unknown norm {self.norm!r}; expected 'weight_norm', 'time_group_norm' or 'none'")
        if self.channels < 1 or self.sample_rate < 1:
            raise ValueError(f"channels and sample_rate must be positive, got {self.channels}, {self.sample_rate}")
        if not self.target_bandwidths:
            raise ValueError("target_bandwidths must list at least one bandwidth")
        object.__setattr__(self, "target_bandwidths", tuple(float(b) for b in self.target_bandwidths))
        object.__setattr__(self, "ratios", tuple(int(r) for r in self.ratios))

    # ---- presets -------------------------------------------------------------------------------------------
    @classmethod
    def encodec_24khz(cls) -> "EncodecConfig":
        """The official causal mono model, 1.5 to 24 kbps."""
        return cls()

    @classmethod
    def encodec_48khz(cls) -> "EncodecConfig":
        """The official non-causal stereo model: 1 s segments, 1 % overlap, per-segment scale."""
        return cls(name="encodec_48khz", sample_rate=48000, channels=2, causal=False, norm="time_group_norm",
                   normalize=True, segment=1.0, overlap=0.01, target_bandwidths=(3.0, 6.0, 12.0, 24.0))

    @classmethod
    def encodec_32khz(cls) -> "EncodecConfig":
        """MusicGen's codec as converted to the Hugging Face hub (facebook/encodec_32khz)."""
        return cls(name="encodec_32khz", sample_rate=32000, channels=1, causal=False, ratios=(8, 5, 4, 4),
                   n_filters=64, target_bandwidths=(2.2,), bins=2048, true_skip=True)

    @classmethod
    def encodec_eval_24khz(cls) -> "EncodecConfig":
        """The project's own trained model (``codec/encodec/weights/``): the causal 24 kHz model at 16 channels
        (the paper's Table A.3 variant), 1.5 to 12 kbps."""
        return cls(name="encodec_eval_24khz", n_filters=16, target_bandwidths=(1.5, 3.0, 6.0, 12.0))

    @classmethod
    def preset(cls, name: str) -> "EncodecConfig":
        """A preset by name (``encodec_24khz``, ``24khz``, ...)."""
        key = name.lower().replace("facebook/", "")
        key = key if key.startswith("encodec_") else f"encodec_{key}"
        builders = {"encodec_24khz": cls.encodec_24khz, "encodec_48khz": cls.encodec_48khz,
                    "encodec_32khz": cls.encodec_32khz, "encodec_eval_24khz": cls.encodec_eval_24khz}
        if key not in builders:
            raise ValueError(f"unknown EnCodec preset {name!r}; known: {', '.join(builders)}")
        return builders[key]()

    # ---- derived quantities --------------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """Samples per code frame (320 for the official models)."""
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> int:
        """Code frames per second, rounded up as the reference does (75 Hz at 24 kHz)."""
        return -(-self.sample_rate // self.hop_length)

    @property
    def bits_per_codebook(self) -> int:
        return math.ceil(math.log2(self.bins))

    @property
    def n_q(self) -> int:
        """Codebooks the model holds: enough for its largest bandwidth."""
        return int(round(1000 * max(self.target_bandwidths))) // (self.frame_rate * self.bits_per_codebook)

    @property
    def segment_length(self) -> Optional[int]:
        """Samples per segment, or None when the whole signal is one segment."""
        return None if self.segment is None else int(self.segment * self.sample_rate)

    @property
    def segment_stride(self) -> Optional[int]:
        """Distance between segment starts: the segment minus its overlap."""
        length = self.segment_length
        return None if length is None else max(1, int((1 - self.overlap) * length))

    def num_codebooks(self, bandwidth: Optional[float]) -> int:
        """Codebooks used at ``bandwidth`` kbps; None means all of them, like the official package."""
        if bandwidth is None:
            return self.n_q
        self.check_bandwidth(bandwidth)
        per_codebook = self.frame_rate * self.bits_per_codebook
        return max(1, min(self.n_q, int(round(float(bandwidth) * 1000)) // per_codebook))

    def check_bandwidth(self, bandwidth: float) -> None:
        """Reject a bandwidth the model was not trained for, listing the valid ones."""
        if float(bandwidth) not in self.target_bandwidths:
            valid = ", ".join(f"{b:g}" for b in self.target_bandwidths)
            raise ValueError(f"bandwidth {bandwidth!r} kbps is not supported by {self.name}; valid: {valid}")

    def bandwidth_for(self, num_codebooks: int) -> float:
        """Nominal kbps of ``num_codebooks`` codebooks."""
        return num_codebooks * self.frame_rate * self.bits_per_codebook / 1000

    # ---- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["target_bandwidths"] = list(self.target_bandwidths)
        out["ratios"] = list(self.ratios)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncodecConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EncodecConfig fields: {', '.join(unknown)}")
        return cls(**data)

    def with_(self, **changes: Any) -> "EncodecConfig":
        """A copy with some fields changed (for ablation variants)."""
        return replace(self, **changes)
