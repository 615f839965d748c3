"""The two transforms the oracle builds: Resample and Spectrogram (see the package docstring)."""

from typing import Callable, Optional

import torch
from torch import nn

from .functional import resample


class Resample(nn.Module):
    def __init__(self, orig_freq: int = 16000, new_freq: int = 16000, **_: object) -> None:
        super().__init__()
        self.orig_freq, self.new_freq = int(orig_freq), int(new_freq)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return resample(waveform, self.orig_freq, self.new_freq)


class Spectrogram(nn.Module):
    """torchaudio's Spectrogram semantics for the options the oracle uses (complex output when power is None)."""

    def __init__(self, n_fft: int = 400, win_length: Optional[int] = None, hop_length: Optional[int] = None,
                 pad: int = 0, window_fn: Callable[..., torch.Tensor] = torch.hann_window,
                 power: Optional[float] = 2.0, normalized: bool = False, wkwargs: Optional[dict] = None,
                 center: bool = True, pad_mode: str = "reflect", onesided: bool = True, **_: object) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length or n_fft
        self.hop_length = hop_length or self.win_length // 2
        self.register_buffer("window", window_fn(self.win_length, **(wkwargs or {})))
        self.pad, self.power, self.normalized = pad, power, normalized
        self.center, self.pad_mode, self.onesided = center, pad_mode, onesided

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.pad:
            waveform = torch.nn.functional.pad(waveform, (self.pad, self.pad))
        lead = waveform.shape[:-1]
        spec = torch.stft(waveform.reshape(-1, waveform.shape[-1]), self.n_fft, self.hop_length, self.win_length,
                          self.window, self.center, self.pad_mode, False, self.onesided, return_complex=True)
        spec = spec.reshape(*lead, *spec.shape[-2:])
        if self.normalized:
            spec = spec / self.window.pow(2.0).sum().sqrt()
        if self.power is None:
            return spec
        return spec.abs().pow(self.power)
