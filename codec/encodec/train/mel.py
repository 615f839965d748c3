"""Mel spectrograms without torchaudio: an HTK mel filterbank and a normalised power STFT built on torch.stft."""

from __future__ import annotations

import math

import torch
from torch import nn


def hz_to_mel_htk(freq: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + freq / 700.0)


def mel_to_hz_htk(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Triangular HTK-scale filters without area normalisation, shape [n_freqs, n_mels].

    Same construction as torchaudio's ``melscale_fbanks(norm=None, mel_scale="htk")`` (which we cannot install), so
    losses match the reference recipes. Filters narrower than one FFT bin come out as all-zero columns.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"mel range must satisfy 0 <= f_min < f_max <= sr/2, got {f_min}..{f_max} at {sample_rate} Hz")
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    m_pts = torch.linspace(hz_to_mel_htk(torch.tensor(float(f_min))).item(),
                           hz_to_mel_htk(torch.tensor(float(f_max))).item(), n_mels + 2, dtype=torch.float64)
    f_pts = mel_to_hz_htk(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).float()


class MelSpectrogram(nn.Module):
    """Power mel spectrogram of a normalised STFT (window energy 1), framed without centring.

    The signal is reflect-padded by (n_fft - hop) // 2 on each side and zero-padded on the right to a whole last
    frame, so every sample is covered at every scale.
    """

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int = 64, f_min: float = 0.0,
                 f_max: float | None = None) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("fbank", mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate, f_min, f_max),
                             persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """[..., T] -> [..., n_mels, frames]."""
        lead = wav.shape[:-1]
        x = wav.reshape(-1, 1, wav.shape[-1])
        side = (self.n_fft - self.hop_length) // 2
        if x.shape[-1] > side:
            x = nn.functional.pad(x, (side, side), mode="reflect")
        else:
            x = nn.functional.pad(x, (side, side))
        length = x.shape[-1]
        frames = max(1, math.ceil((length - self.n_fft) / self.hop_length) + 1)
        x = nn.functional.pad(x, (0, (frames - 1) * self.hop_length + self.n_fft - length))
        spec = torch.stft(x.squeeze(1), self.n_fft, self.hop_length, window=self.window, center=False,
                          return_complex=True)
        power = (spec.real.square() + spec.imag.square()) / self.window.square().sum()
        mel = torch.einsum("bft,fm->bmt", power, self.fbank)
        return mel.reshape(*lead, *mel.shape[-2:])
