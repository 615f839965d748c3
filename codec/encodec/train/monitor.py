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
  bandwidth. A codec that learns shows SI-SNR rising with the bandwidth; a collapsed one shows equal values. On the
  speech probes it also scores ViSQOL speech at 16 kHz, so that a curve shows whether training (the adversarial
  phase above all) buys perceptual quality, which SI-SNR does not see, and the energy the output keeps at 2-8 kHz
  relative to the reference, which a codec trained on reconstruction losses alone loses.

SI-SNR and ViSQOL are computed here rather than through ``encodec_eval.metrics`` because ``codec`` never imports the
evaluation package; both follow its definitions (SI-SNR: zero mean, whole signal; ViSQOL: the ``visqol-python``
package's speech mode with its lattice model, both signals resampled to 16 kHz), and a test holds them equal.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ... import audio
from ..model import EncodecModel

TOP_DIRECTIONS = 4
VISQOL_RATE = 16000
VISQOL_COLUMN = "visqol_speech16k"  # mean over the speech probes; columns <this>@<bandwidth>kbps and @continuous
BAND_HZ = (2000.0, 8000.0)
BAND_COLUMN = "band_2_8khz_db"  # mean over all probes of band_energy_db


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


def band_energy_db(estimate: Tensor, reference: Tensor, sample_rate: int,
                   band: tuple[float, float] = BAND_HZ) -> Tensor:
    """Energy of ``estimate`` in ``band`` (Hz) relative to the reference's, in dB per item of ``[B, C, T]``: how much
    of the reference's upper-middle spectrum (consonants, brightness) the output keeps. A codec trained on L1 and mel
    losses alone averages it away (about -5 to -11 dB at 2-8 kHz on the default set's speech); the adversarial
    losses exist to put it back. NaN for a reference with no energy in the band."""
    freqs = torch.fft.rfftfreq(reference.shape[-1], 1 / sample_rate)
    chosen = (freqs >= band[0]) & (freqs < band[1])

    def energy(signal: Tensor) -> Tensor:
        spectrum = torch.fft.rfft(signal.detach().double().reshape(signal.shape[0], -1, signal.shape[-1]))
        return spectrum[..., chosen].abs().square().sum(dim=(-1, -2))

    ratio = energy(estimate) / energy(reference)
    return torch.where(torch.isfinite(ratio) & (ratio > 0), 10 * torch.log10(ratio), torch.full_like(ratio, math.nan))


@functools.lru_cache(maxsize=1)
def _visqol_speech_api():
    """ViSQOL v3 in speech mode with its lattice model, as ``encodec_eval.metrics`` scores it; None without the
    package (the ``bench`` extra)."""
    try:
        from visqol import VisqolApi
    except ImportError:
        warnings.warn("collapse monitor: visqol-python is not installed (pip install '.[bench]'); the probes' "
                      "ViSQOL speech columns are NaN", RuntimeWarning, stacklevel=2)
        return None
    api = VisqolApi()
    api.create(mode="speech", use_lattice_model=True)
    return api


def visqol_speech(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """ViSQOL speech MOS-LQO of two mono signals ``[T]`` (mean-mixed to mono first), resampled to 16 kHz; NaN
    without the package."""
    api = _visqol_speech_api()
    if api is None:
        return math.nan
    ref, deg = (audio.convert(np.atleast_2d(x).astype(np.float32), sample_rate, VISQOL_RATE, 1)[0]
                for x in (reference, degraded))
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints progress notes per call
        return float(api.measure_from_arrays(ref.astype(np.float64), deg.astype(np.float64), VISQOL_RATE).moslqo)


class ProbeMonitor:
    """Scores a model on fixed probe segments ``[N, C, T]`` (float32, the model's rate and channels); the probes at
    ``speech`` (indices) are also scored with ViSQOL speech, about 0.07 s per probe and bandwidth after a first call
    that compiles the package's kernels."""

    def __init__(self, probes: Tensor, bandwidths: Sequence[float], speech: Sequence[int] = (),
                 sample_rate: int = 24000) -> None:
        if probes.dim() != 3 or probes.shape[0] == 0:
            raise ValueError(f"probes must be a non-empty [N, C, T] batch, got shape {tuple(probes.shape)}")
        if any(not 0 <= i < probes.shape[0] for i in speech):
            raise ValueError(f"speech probe indices {list(speech)} outside the {probes.shape[0]} probes")
        self.probes, self.bandwidths = probes, list(bandwidths)
        self.speech, self.sample_rate = list(speech), sample_rate

    def _visqol(self, y: Tensor, x: Tensor) -> float:
        """Mean ViSQOL speech over the speech probes (NaN when there are none, or when they are under 1 s)."""
        if not self.speech or self.probes.shape[-1] < self.sample_rate:  # ViSQOL needs at least 1 s
            return math.nan
        scores = [visqol_speech(x[i].mean(0).cpu().numpy(), y[i].mean(0).float().cpu().numpy(), self.sample_rate)
                  for i in self.speech]
        return float(np.mean(scores))

    @torch.no_grad()
    def measure(self, model: EncodecModel) -> dict[str, float]:
        """Latent statistics, mean SI-SNR (dB), mean ViSQOL speech (speech probes) and the 2-8 kHz energy balance (dB)
        per bandwidth, with the quantizer bypassed as ``continuous``."""
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
            outputs = {"continuous": rescale(model.decoder(latent)[..., : x.shape[-1]])}
            for bandwidth in self.bandwidths:
                n_q = model.quantizer.num_codebooks(model.frame_rate, bandwidth)
                quantized = model.quantizer.decode(model.quantizer.encode(latent, n_q))
                outputs[f"{bandwidth:g}kbps"] = rescale(model.decoder(quantized)[..., : x.shape[-1]])
            for name, y in outputs.items():
                row[f"si_snr_db@{name}"] = float(si_snr_db(y, x).mean())
                row[f"{VISQOL_COLUMN}@{name}"] = self._visqol(y, x)
                row[f"{BAND_COLUMN}@{name}"] = float(band_energy_db(y, x, model.sample_rate).mean())
        finally:
            model.train(was_training)
        return row
