"""The SEANet encoder and decoder of EnCodec.

Layers sit in an ``nn.Sequential`` called ``model`` with the ELUs as entries of their own, so the indices, and hence
the state-dict names, are those of the official checkpoints (``encoder.model.13.lstm.weight_ih_l0``).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..config import EncodecConfig
from .conv import PaddedConv1d, PaddedConvTranspose1d


class SkipLSTM(nn.Module):
    """A multi-layer LSTM over time with a residual connection, on ``[B, C, T]`` tensors."""

    def __init__(self, dimension: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dimension, dimension, num_layers)

    def forward(self, x: Tensor) -> Tensor:
        seq = x.permute(2, 0, 1)
        out, _ = self.lstm(seq)
        return (out + seq).permute(1, 2, 0)


class ResidualBlock(nn.Module):
    """ELU, conv (k3) to a narrower width, ELU, conv (k1) back; plus a 1x1-conv (or identity) shortcut."""

    def __init__(self, dim: int, config: EncodecConfig, dilation: int) -> None:
        super().__init__()
        hidden = dim // config.compress
        conv = dict(causal=config.causal, norm=config.norm, pad_mode=config.pad_mode)
        self.block = nn.Sequential(
            nn.ELU(alpha=1.0),
            PaddedConv1d(dim, hidden, config.residual_kernel_size, dilation=dilation, **conv),
            nn.ELU(alpha=1.0),
            PaddedConv1d(hidden, dim, 1, **conv),
        )
        self.shortcut = nn.Identity() if config.true_skip else PaddedConv1d(dim, dim, 1, **conv)

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.block(x)


def _residual_stack(dim: int, config: EncodecConfig) -> list[nn.Module]:
    return [ResidualBlock(dim, config, config.dilation_base ** j) for j in range(config.n_residual_layers)]


class SEANetEncoder(nn.Module):
    """Audio ``[B, channels, T]`` to latents ``[B, dimension, ceil(T / hop_length)]``."""

    def __init__(self, config: EncodecConfig) -> None:
        super().__init__()
        conv = dict(causal=config.causal, norm=config.norm, pad_mode=config.pad_mode)
        width = config.n_filters
        layers: list[nn.Module] = [PaddedConv1d(config.channels, width, config.kernel_size, **conv)]
        for ratio in reversed(config.ratios):
            layers += _residual_stack(width, config)
            layers += [nn.ELU(alpha=1.0), PaddedConv1d(width, width * 2, ratio * 2, stride=ratio, **conv)]
            width *= 2
        if config.lstm:
            layers.append(SkipLSTM(width, config.lstm))
        layers += [nn.ELU(alpha=1.0), PaddedConv1d(width, config.dimension, config.last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class SEANetDecoder(nn.Module):
    """Latents ``[B, dimension, F]`` to audio ``[B, channels, F * hop_length]``."""

    def __init__(self, config: EncodecConfig) -> None:
        super().__init__()
        conv = dict(causal=config.causal, norm=config.norm)
        width = config.n_filters * 2 ** len(config.ratios)
        layers: list[nn.Module] = [
            PaddedConv1d(config.dimension, width, config.kernel_size, pad_mode=config.pad_mode, **conv)]
        if config.lstm:
            layers.append(SkipLSTM(width, config.lstm))
        for ratio in config.ratios:
            layers += [nn.ELU(alpha=1.0),
                       PaddedConvTranspose1d(width, width // 2, ratio * 2, stride=ratio,
                                             trim_right_ratio=config.trim_right_ratio, **conv)]
            width //= 2
            layers += _residual_stack(width, config)
        layers += [nn.ELU(alpha=1.0),
                   PaddedConv1d(width, config.channels, config.last_kernel_size, pad_mode=config.pad_mode, **conv)]
        self.model = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.model(z)
