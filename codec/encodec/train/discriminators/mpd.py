"""The multi-period discriminator (HiFi-GAN; audiocraft's MPD settings), one of the paper's ablation adversaries."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .layers import NormConv2d


class PeriodDiscriminator(nn.Module):
    """Folds the waveform into [B, C, T/p, p] and runs (5, 1) convs along the folded time axis."""

    def __init__(self, period: int, in_channels: int = 1, filters: int = 8, filters_scale: int = 4,
                 max_filters: int = 1024, n_layers: int = 5, kernel_size: int = 5, stride: int = 3,
                 negative_slope: float = 0.2, norm: str = "weight_norm") -> None:
        super().__init__()
        self.period = period
        self.activation = nn.LeakyReLU(negative_slope)
        self.convs = nn.ModuleList()
        channels = in_channels
        for i in range(n_layers):
            out = min(filters * filters_scale ** (i + 1), max_filters)
            self.convs.append(NormConv2d(channels, out, (kernel_size, 1), stride=(stride if i < n_layers - 1 else 1, 1),
                                         padding=((kernel_size - 1) // 2, 0), norm=norm))
            channels = out
        self.conv_post = NormConv2d(channels, 1, (3, 1), padding=(1, 0), norm=norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, channels, length = x.shape
        pad = (-length) % self.period
        if pad:
            x = F.pad(x, (0, pad), mode="reflect" if pad < length else "constant")
        z = x.reshape(batch, channels, -1, self.period)
        feature_maps = []
        for conv in self.convs:
            z = self.activation(conv(z))
            feature_maps.append(z)
        z = self.conv_post(z)
        feature_maps.append(z)
        return z, feature_maps


class MultiPeriodDiscriminator(nn.Module):
    """One PeriodDiscriminator per prime period."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), in_channels: int = 1, **options) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, in_channels, **options) for p in periods)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        outputs = [disc(x) for disc in self.discriminators]
        return [o[0] for o in outputs], [o[1] for o in outputs]
