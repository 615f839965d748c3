"""Watching a training run for latent collapse, so that a run that stops carrying information is seen in minutes.

A collapsed EnCodec encoder puts nearly all of its latent energy into a constant offset and the little that varies
over time into a handful of directions: two codebooks then reproduce it, and quality no longer depends on the
bitrate. Both are cheap to measure on a few fixed probe segments:

- ``latent_stats``: the share of the latent energy in per-channel time means (the offset), the share of all the
  latent energy (offset included) in its top few principal directions, and the effective rank of the latent (the
  exponential of the entropy of its normalised principal energies, Roy & Vetterli 2007: 1 for a single direction,
  D for a latent that uses all D directions equally). A constant latent has top-4 share 1 and effective rank 1
  however its tiny remainder is spread, so these do not mistake noise around a constant for a rich latent;
- ``ProbeMonitor``: those statistics plus SI-SNR on the probes with the quantizer bypassed and at every training
  bandwidth. A codec that learns shows SI-SNR rising with the bandwidth; a collapsed one shows equal values.

SI-SNR is computed here in torch rather than through ``encodec_eval.metrics`` because ``codec`` never imports the
evaluation package; both follow the same definition (zero mean, whole signal, positive is better).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..model import EncodecModel

TOP_DIRECTIONS = 4


@dataclass(frozen=True)
class LatentStats:
    offset_share: float  # share of the latent's energy in its per-channel time means
    top_share: float  # share of the latent's energy in its TOP_DIRECTIONS strongest principal directions
    effective_rank: float  # exp(entropy) of the latent's normalised principal energies

    def as_row(self) -> dict[str, float]:
        return {"latent_offset_share": self.offset_share, f"latent_top{TOP_DIRECTIONS}_share": self.top_share,
                "latent_effective_rank": self.effective_rank}


def latent_stats(latent: Tensor, top: int = TOP_DIRECTIONS) -> LatentStats:
    """Collapse statistics of latents ``[B, D, T]``, the frames of all items pooled (principal directions through
    the origin, so a constant offset counts as a direction)."""
    if latent.dim() != 3 or latent.shape[-1] < 2:
        raise ValueError(f"latent must be [B, D, T] with T >= 2 frames, got shape {tuple(latent.shape)}")
    z = latent.detach().double()
    total = float(z.square().sum())
    if total == 0.0:
        return LatentStats(offset_share=math.nan, top_share=math.nan, effective_rank=math.nan)
    offset = float(z.mean(dim=-1).square().sum()) * z.shape[-1]
    energies = torch.linalg.svdvals(z.transpose(0, 1).reshape(z.shape[1], -1)).square()
    shares = energies / energies.sum()
    nonzero = shares[shares > 0]
    entropy = -float((nonzero * nonzero.log()).sum())
    return LatentStats(offset_share=offset / total, top_share=float(shares[:top].sum()),
                       effective_rank=math.exp(entropy))


def si_snr_db(estimate: Tensor, reference: Tensor) -> Tensor:
    """SI-SNR in dB per item of ``[B, ..., T]`` signals (flattened per item), float64.

    A silent or constant estimate has no target component: its SI-SNR is -inf, never a perfect score; a silent
    reference gives NaN."""
    est = estimate.detach().double().reshape(estimate.shape[0], -1)
    ref = reference.detach().double().reshape(reference.shape[0], -1)
    est = est - est.mean(dim=1, keepdim=True)
    ref = ref - ref.mean(dim=1, keepdim=True)
    target = (est * ref).sum(1, keepdim=True) / ref.square().sum(1, keepdim=True) * ref
    target_energy, noise_energy = target.square().sum(1), (est - target).square().sum(1)
    ratio = 10 * torch.log10(target_energy / noise_energy)
    return torch.where(target_energy == 0, torch.full_like(ratio, -math.inf), ratio)


class ProbeMonitor:
    """Scores a model on fixed probe segments ``[N, C, T]`` (float32, the model's rate and channels)."""

    def __init__(self, probes: Tensor, bandwidths: Sequence[float]) -> None:
        if probes.dim() != 3 or probes.shape[0] == 0:
            raise ValueError(f"probes must be a non-empty [N, C, T] batch, got shape {tuple(probes.shape)}")
        self.probes, self.bandwidths = probes, list(bandwidths)

    @torch.no_grad()
    def measure(self, model: EncodecModel) -> dict[str, float]:
        """Latent statistics and mean SI-SNR (dB) per bandwidth, with the quantizer bypassed as ``continuous``."""
        was_training = model.training
        model.eval()
        try:
            x = self.probes.to(next(model.parameters()).device)
            scale = model.normalization_scale(x)
            normalized = x if scale is None else x / scale
            latent = model.encoder(normalized)
            row = latent_stats(latent).as_row()
            rescale = (lambda y: y) if scale is None else (lambda y: y * scale)
            y = rescale(model.decoder(latent)[..., : x.shape[-1]])
            row["si_snr_db@continuous"] = float(si_snr_db(y, x).mean())
            for bandwidth in self.bandwidths:
                n_q = model.quantizer.num_codebooks(model.frame_rate, bandwidth)
                quantized = model.quantizer.decode(model.quantizer.encode(latent, n_q))
                y = rescale(model.decoder(quantized)[..., : x.shape[-1]])
                row[f"si_snr_db@{bandwidth:g}kbps"] = float(si_snr_db(y, x).mean())
        finally:
            model.train(was_training)
        return row
