"""Adversaries by name, and one adversary per bandwidth for multi-bandwidth training (the paper's best setting)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .mpd import MultiPeriodDiscriminator
from .msd import MultiScaleDiscriminator
from .msstft import MultiScaleSTFTDiscriminator

ADVERSARIES = ("msstft", "mpd", "msd", "stft")


def build_adversary(name: str, sample_rate: int, channels: int, **options) -> nn.Module:
    """``msstft`` (the paper's), ``mpd``, ``msd`` or ``stft`` (one 1024-sample STFT scale, SoundStream's)."""
    if name == "msstft":
        return MultiScaleSTFTDiscriminator.paper(sample_rate, channels, **options)
    if name == "stft":
        return MultiScaleSTFTDiscriminator([1024], in_channels=channels, **options)
    if name == "mpd":
        return MultiPeriodDiscriminator(in_channels=channels, **options)
    if name == "msd":
        return MultiScaleDiscriminator(in_channels=channels, **options)
    raise ValueError(f"unknown adversary {name!r}; expected one of {ADVERSARIES}")


class PerBandwidthAdversary(nn.Module):
    """Independent copies of one adversary, one for each target bandwidth; ``forward`` routes by bandwidth."""

    def __init__(self, name: str, sample_rate: int, channels: int, bandwidths: Sequence[float | None],
                 **options) -> None:
        super().__init__()
        self.bandwidths = list(bandwidths)
        self.per_bandwidth = nn.ModuleList(build_adversary(name, sample_rate, channels, **options)
                                           for _ in self.bandwidths)

    def forward(self, x: torch.Tensor, bandwidth: float | None) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        if bandwidth not in self.bandwidths:
            raise ValueError(f"no adversary for bandwidth {bandwidth}; trained bandwidths are {self.bandwidths}")
        return self.per_bandwidth[self.bandwidths.index(bandwidth)](x)
