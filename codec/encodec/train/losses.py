"""EnCodec's training losses as the paper defines them (section 3.4), with the audiocraft variants as options.

Discriminator outputs are ``(logits, feature_maps)``: one logit tensor and one list of feature maps per
sub-discriminator.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .mel import MelSpectrogram

Logits = Sequence[torch.Tensor]
FeatureMaps = Sequence[Sequence[torch.Tensor]]


def time_l1(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ell_t: mean absolute error of the waveforms."""
    return F.l1_loss(x_hat, x)


class MultiScaleMelLoss(nn.Module):
    """ell_f: L1 + alpha * L2 between 64-bin mel spectrograms at windows 2^i (hop 2^i / 4), averaged over scales.

    The paper uses i = 5..11 and squared error on the mel power itself; ``log_l2=True`` compares log10(1e-5 + mel)
    in the L2 term instead, as audiocraft does (which, with scales 6..10, reproduces its ``msspec`` loss).
    """

    def __init__(self, sample_rate: int, scales: Sequence[int] = range(5, 12), n_mels: int = 64,
                 alpha: float = 1.0, f_min: float = 0.0, log_l2: bool = False) -> None:
        super().__init__()
        if not scales:
            raise ValueError("MultiScaleMelLoss needs at least one scale")
        self.alpha, self.log_l2 = alpha, log_l2
        self.mels = nn.ModuleList(MelSpectrogram(sample_rate, 2 ** i, 2 ** i // 4, n_mels, f_min) for i in scales)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        total = x_hat.new_zeros(())
        for mel in self.mels:
            m_hat, m = mel(x_hat), mel(x)
            l2 = (F.mse_loss(torch.log10(1e-5 + m_hat), torch.log10(1e-5 + m)) if self.log_l2
                  else F.mse_loss(m_hat, m))
            total = total + F.l1_loss(m_hat, m) + self.alpha * l2
        return total / len(self.mels)


def discriminator_hinge_loss(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """L_d = 1/K sum_k mean(relu(1 - D_k(x))) + mean(relu(1 + D_k(x_hat)))."""
    _check_same_count(real_logits, fake_logits)
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits)]
    return torch.stack(terms).mean()


def generator_adversarial_loss(fake_logits: Logits, kind: str = "paper") -> torch.Tensor:
    """ell_g. ``paper``: 1/K sum_k mean(relu(1 - D_k(x_hat))); ``audiocraft``: 1/K sum_k -mean(D_k(x_hat))."""
    if kind == "paper":
        terms = [F.relu(1 - f).mean() for f in fake_logits]
    elif kind == "audiocraft":
        terms = [-f.mean() for f in fake_logits]
    else:
        raise ValueError(f"unknown generator adversarial loss {kind!r}; expected 'paper' or 'audiocraft'")
    return torch.stack(terms).mean()


def feature_matching_loss(real_maps: FeatureMaps, fake_maps: FeatureMaps, relative: bool = True,
                          eps: float = 1e-8) -> torch.Tensor:
    """ell_feat = 1/(K L) sum_k sum_l mean|D_k^l(x) - D_k^l(x_hat)| / mean|D_k^l(x)|.

    ``relative=False`` drops the division, which is what audiocraft actually computes (audiocraft#483). Feature maps
    in bfloat16 (autocast) are compared in float32: the cast happens here, so that a compiled loss fuses it.
    """
    _check_same_count(real_maps, fake_maps)
    terms = []
    for real_layers, fake_layers in zip(real_maps, fake_maps):
        _check_same_count(real_layers, fake_layers)
        for real, fake in zip(real_layers, fake_layers):
            real, fake = real.detach().float(), fake.float()
            term = F.l1_loss(fake, real)
            if relative:
                term = term / (real.abs().mean() + eps)
            terms.append(term)
    return torch.stack(terms).mean()


def _check_same_count(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"real and generated discriminator outputs differ in count: {len(a)} vs {len(b)}")
