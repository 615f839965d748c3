"""The multi-scale waveform discriminator (MelGAN), used with a single-scale STFT adversary in the paper's ablation.

Unlike audiocraft's version, the average pooling between scales is applied: scale k sees audio at 1 / 2^k rate.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .layers import normed


class ScaleDiscriminator(nn.Module):
    """Grouped strided 1-D convs over the waveform."""

    def __init__(self, in_channels: int = 1, filters: int = 16, max_filters: int = 1024,
                 downsample_scales: Sequence[int] = (4, 4, 4, 4), groups: int = 4, negative_slope: float = 0.2,
                 norm: str = "weight_norm") -> None:
        super().__init__()
        self.activation = nn.LeakyReLU(negative_slope)
        self.convs = nn.ModuleList([nn.Sequential(nn.ReflectionPad1d(7),
                                                  normed(nn.Conv1d(in_channels, filters, 15), norm))])
        channels = filters
        for scale in downsample_scales:
            out = min(channels * scale, max_filters)
            self.convs.append(normed(nn.Conv1d(channels, out, 10 * scale + 1, stride=scale, padding=5 * scale,
                                               groups=groups), norm))
            channels = out
        out = min(channels * 2, max_filters)
        self.convs.append(normed(nn.Conv1d(channels, out, 5, padding=2), norm))
        self.conv_post = normed(nn.Conv1d(out, 1, 3, padding=1), norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feature_maps = []
        for conv in self.convs:
            x = self.activation(conv(x))
            feature_maps.append(x)
        x = self.conv_post(x)
        feature_maps.append(x)
        return x, feature_maps


class MultiScaleDiscriminator(nn.Module):
    """Three ScaleDiscriminators on the waveform at full, half and quarter rate (spectral norm on the first)."""

    def __init__(self, in_channels: int = 1, norms: Sequence[str] = ("spectral_norm", "weight_norm", "weight_norm"),
                 **options) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(ScaleDiscriminator(in_channels, norm=n, **options) for n in norms)
        self.downsample = nn.AvgPool1d(4, stride=2, padding=2)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, maps = [], []
        for i, disc in enumerate(self.discriminators):
            if i:
                x = self.downsample(x)
            logit, fmap = disc(x)
            logits.append(logit)
            maps.append(fmap)
        return logits, maps
