"""The multi-scale STFT discriminator (paper section 3.4; layout of the official encodec/msstftd.py).

Each scale looks at the real and imaginary parts of a normalised complex STFT, laid out [B, 2C, time, frequency],
through 2-D convs that stride along frequency and dilate along time. Differences from the paper's text are options:
``kernel_size=(3, 8)`` is the paper's kernel (the official code uses (3, 9)).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .layers import NormConv2d


def _same_padding(kernel: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    return ((kernel[0] - 1) * dilation[0] // 2, (kernel[1] - 1) * dilation[1] // 2)


class ComplexSpectrogram(nn.Module):
    """Complex STFT without centring; ``normalized`` divides by sqrt(sum(window^2)) like torchaudio's option."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, normalized: bool = True) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length, self.normalized = n_fft, hop_length, win_length, normalized
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T] -> complex [B, C, F, frames]."""
        if x.shape[-1] < self.n_fft:
            raise ValueError(f"the STFT discriminator needs at least {self.n_fft} samples, got {x.shape[-1]}")
        lead = x.shape[:-1]
        spec = torch.stft(x.reshape(-1, x.shape[-1]), self.n_fft, self.hop_length, self.win_length, self.window,
                          center=False, return_complex=True)
        if self.normalized:
            spec = spec / self.window.pow(2).sum().sqrt()
        return spec.reshape(*lead, *spec.shape[-2:])


class STFTDiscriminator(nn.Module):
    """One STFT scale: conv (no norm), three strided dilated convs, a 3x3 conv, then a 3x3 conv to one logit map."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, in_channels: int = 1, filters: int = 32,
                 kernel_size: tuple[int, int] = (3, 9), stride: tuple[int, int] = (1, 2),
                 dilations: Sequence[int] = (1, 2, 4), negative_slope: float = 0.2, norm: str = "weight_norm",
                 normalized: bool = True) -> None:
        super().__init__()
        kernel_size = tuple(kernel_size)
        self.spec_transform = ComplexSpectrogram(n_fft, hop_length, win_length, normalized)
        self.activation = nn.LeakyReLU(negative_slope)
        self.convs = nn.ModuleList([NormConv2d(2 * in_channels, filters, kernel_size,
                                               padding=_same_padding(kernel_size))])
        for dilation in dilations:
            self.convs.append(NormConv2d(filters, filters, kernel_size, stride=tuple(stride), dilation=(dilation, 1),
                                         padding=_same_padding(kernel_size, (dilation, 1)), norm=norm))
        square = (kernel_size[0], kernel_size[0])
        self.convs.append(NormConv2d(filters, filters, square, padding=_same_padding(square), norm=norm))
        self.conv_post = NormConv2d(filters, 1, square, padding=_same_padding(square), norm=norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z = self.spec_transform(x)
        z = torch.cat([z.real, z.imag], dim=1).transpose(-1, -2)
        feature_maps = []
        for conv in self.convs:
            z = self.activation(conv(z))
            feature_maps.append(z)
        return self.conv_post(z), feature_maps


class MultiScaleSTFTDiscriminator(nn.Module):
    """Several STFT scales; with ``separate_channels`` each audio channel is judged on its own (paper, 48 kHz)."""

    def __init__(self, n_ffts: Sequence[int], hop_lengths: Sequence[int] | None = None,
                 win_lengths: Sequence[int] | None = None, in_channels: int = 1, separate_channels: bool = False,
                 **scale_options) -> None:
        super().__init__()
        hop_lengths = hop_lengths or [n // 4 for n in n_ffts]
        win_lengths = win_lengths or list(n_ffts)
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError("n_ffts, hop_lengths and win_lengths must have the same length")
        self.separate_channels = separate_channels
        per_scale_channels = 1 if separate_channels else in_channels
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(n, h, w, in_channels=per_scale_channels, **scale_options)
            for n, h, w in zip(n_ffts, hop_lengths, win_lengths))

    @classmethod
    def paper(cls, sample_rate: int, channels: int, **scale_options) -> "MultiScaleSTFTDiscriminator":
        """Windows 2048..128 (doubled at 48 kHz), hop = window / 4, stereo channels judged separately."""
        factor = 2 if sample_rate >= 48000 else 1
        n_ffts = [factor * n for n in (2048, 1024, 512, 256, 128)]
        return cls(n_ffts, in_channels=channels, separate_channels=channels > 1, **scale_options)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        if self.separate_channels:
            x = x.reshape(-1, 1, x.shape[-1])
        logits, maps = [], []
        for disc in self.discriminators:
            logit, fmap = disc(x)
            logits.append(logit)
            maps.append(fmap)
        return logits, maps
