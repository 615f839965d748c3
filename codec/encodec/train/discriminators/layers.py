"""Weight-normalised convolutions shared by the discriminators, and the bridge to the official state-dict names."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

NORMS = ("none", "weight_norm", "spectral_norm")


def normed(conv: nn.Module, norm: str) -> nn.Module:
    """Apply ``norm`` (one of NORMS) to a conv layer through torch's parametrizations."""
    if norm == "weight_norm":
        return parametrizations.weight_norm(conv)
    if norm == "spectral_norm":
        return parametrizations.spectral_norm(conv)
    if norm == "none":
        return conv
    raise ValueError(f"unknown conv norm {norm!r}; expected one of {NORMS}")


class NormConv2d(nn.Module):
    """A Conv2d under ``.conv`` (the official layout, so state-dict keys line up)."""

    def __init__(self, *args, norm: str = "none", **kwargs) -> None:
        super().__init__()
        self.conv = normed(nn.Conv2d(*args, **kwargs), norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def from_official_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the legacy ``weight_g``/``weight_v`` keys of torch.nn.utils.weight_norm to the parametrization names."""
    renamed = {}
    for key, value in state.items():
        if key.endswith(".weight_g"):
            key = key[: -len("weight_g")] + "parametrizations.weight.original0"
        elif key.endswith(".weight_v"):
            key = key[: -len("weight_v")] + "parametrizations.weight.original1"
        renamed[key] = value
    return renamed
