"""Residual vector quantization: inference and the training behaviour of EnCodec's RVQ.

Training follows the paper (Défossez et al. 2022, arXiv:2210.13438, section 3.2) and the official package's
quantizer: k-means initialisation, EMA codebook updates (decay 0.99), dead-code replacement, a straight-through
estimator, and the commitment loss with the gradient fix of encodec#25 (each layer's quantized output is detached
before it is subtracted, so every layer's commitment gradient reaches the encoder). Under ``torch.distributed``
the codebook statistics are summed over ranks and random decisions are broadcast from rank 0, so the buffers stay
identical everywhere.

Two upstream quirks are fixed (neither touches inference or checkpoints): the k-means start of the EMA sums
(``_init_embed``) and dead-code replacement, which upstream undoes in the same step (``_expire_codes``).

Buffer names follow the official checkpoints: ``vq.layers.{i}._codebook.{inited,cluster_size,embed,embed_avg}``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn
from torch import distributed as dist
from torch.nn import functional as F


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _broadcast(tensors: list[Tensor]) -> None:
    if _distributed():
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


def _all_reduce_sum(tensor: Tensor) -> Tensor:
    if _distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def squared_norms(codebook: Tensor) -> Tensor:
    """``|E|^2`` per codebook row as ``[1, bins]``, spelt as the reference spells it (same rounding)."""
    return codebook.t().pow(2).sum(0, keepdim=True)


def nearest_code(x: Tensor, codebook: Tensor, codebook_norms: Optional[Tensor] = None) -> Tensor:
    """Index of the nearest codebook row for each row of ``x`` ``[N, D]``; ties go to the lowest index.

    The distance is spelt as in the reference (``-(|x|^2 - 2 x.E^T + |E|^2)``) so that float32 rounding, and hence
    every code, is identical. ``codebook_norms`` may pass ``squared_norms(codebook)`` computed beforehand.
    """
    norms = squared_norms(codebook) if codebook_norms is None else codebook_norms
    dist_ = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.t() + norms)
    return dist_.max(dim=-1).indices


def sample_vectors(samples: Tensor, num: int) -> Tensor:
    """``num`` rows drawn from ``samples``: without replacement when there are enough."""
    count = samples.shape[0]
    if count >= num:
        index = torch.randperm(count, device=samples.device)[:num]
    else:
        index = torch.randint(0, count, (num,), device=samples.device)
    return samples[index]


def kmeans(samples: Tensor, num_clusters: int, num_iters: int = 50) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means on ``[N, D]`` rows; empty clusters keep their previous mean. Returns (means, counts)."""
    means = sample_vectors(samples, num_clusters)
    counts = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    for _ in range(num_iters):
        assign = nearest_code(samples, means)
        counts = torch.bincount(assign, minlength=num_clusters)
        empty = counts == 0
        sums = torch.zeros_like(means).index_add_(0, assign, samples)
        new_means = sums / counts.clamp(min=1).unsqueeze(1).to(samples.dtype)
        means = torch.where(empty.unsqueeze(1), means, new_means)
    return means, counts


class EuclideanCodebook(nn.Module):
    """One codebook with its EMA statistics."""

    def __init__(self, dim: int, bins: int, decay: float = 0.99, epsilon: float = 1e-5, kmeans_init: bool = True,
                 kmeans_iters: int = 50, threshold_ema_dead_code: float = 2) -> None:
        super().__init__()
        self.dim, self.bins = dim, bins
        self.decay, self.epsilon = decay, epsilon
        self.kmeans_iters, self.threshold_ema_dead_code = kmeans_iters, threshold_ema_dead_code
        embed = torch.zeros(bins, dim) if kmeans_init else nn.init.kaiming_uniform_(torch.empty(bins, dim))
        self.register_buffer("inited", torch.Tensor([not kmeans_init]))
        self.register_buffer("cluster_size", torch.zeros(bins))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    def encode(self, x: Tensor) -> Tensor:
        """``[..., D]`` vectors to ``[...]`` code indices."""
        return nearest_code(x.reshape(-1, self.dim), self.embed, self._norms()).view(*x.shape[:-1])

    def _norms(self) -> Tensor:
        # Inference encodes with a fixed codebook: compute |E|^2 once, again only when the codebook changes
        # (a new tensor, or an in-place update that bumps its version counter).
        if self.embed.is_inference():  # made under torch.inference_mode: no version counter to notice updates
            return squared_norms(self.embed)
        key = (self.embed.data_ptr(), self.embed._version, self.embed.device, self.embed.dtype)
        if getattr(self, "_norms_key", None) != key:
            self._norms_cache = squared_norms(self.embed)
            self._norms_key = key
        return self._norms_cache

    def decode(self, codes: Tensor) -> Tensor:
        """``[...]`` indices to ``[..., D]`` vectors."""
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def _init_embed(self, data: Tensor) -> None:
        """k-means on the first batch. ``embed_avg`` holds sums, so it starts at means x counts; upstream starts it
        at the means, which makes the first EMA step shrink every code towards zero by about its count."""
        means, counts = kmeans(data, self.bins, self.kmeans_iters)
        self.embed.copy_(means)
        self.embed_avg.copy_(means * counts.unsqueeze(1).to(means.dtype))
        self.cluster_size.copy_(counts.to(self.cluster_size.dtype))
        self.inited.fill_(1)
        _broadcast([self.inited, self.cluster_size, self.embed, self.embed_avg])

    @torch.no_grad()
    def _expire_codes(self, data: Tensor) -> None:
        """Move codes used less than the threshold onto random batch vectors.

        Upstream replaces only ``embed``, which the EMA step right after overwrites from ``embed_avg``, so the
        replacement never takes effect. Here the statistics move too (``embed_avg`` = vector x threshold,
        ``cluster_size`` = threshold), so the EMA keeps the new position.
        """
        if self.threshold_ema_dead_code <= 0:
            return
        dead = self.cluster_size < self.threshold_ema_dead_code
        # On an accelerator, reading dead.any() would wait for it at every layer and step: replace branch-free there.
        if data.device.type == "cpu" and not bool(dead.any()):
            return
        replacement = sample_vectors(data, self.bins)
        mask = dead.unsqueeze(1)
        self.embed.copy_(torch.where(mask, replacement, self.embed))
        self.embed_avg.copy_(torch.where(mask, replacement * self.threshold_ema_dead_code, self.embed_avg))
        self.cluster_size.masked_fill_(dead, float(self.threshold_ema_dead_code))
        _broadcast([self.embed, self.embed_avg, self.cluster_size])

    @torch.no_grad()
    def _ema_update(self, data: Tensor, codes: Tensor) -> None:
        onehot = F.one_hot(codes, self.bins).to(data.dtype)
        counts = _all_reduce_sum(onehot.sum(0))
        sums = _all_reduce_sum(data.t() @ onehot).t()
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        self.embed.copy_(self.embed_avg / self._smoothed_sizes().unsqueeze(1))

    def _known_inited(self) -> bool:
        """Whether ``inited`` is set, read from the device once per change of the buffer (a read waits for it)."""
        key = (self.inited.data_ptr(), self.inited._version)
        if getattr(self, "_inited_key", None) != key:
            if not bool(self.inited.item()):
                return False
            self._inited_key = key
        return True

    def _smoothed_sizes(self) -> Tensor:
        """Usage counts with Laplace smoothing: what the EMA sums are divided by to give the codebook."""
        total = self.cluster_size.sum()
        return (self.cluster_size + self.epsilon) / (total + self.bins * self.epsilon) * total

    @torch.no_grad()
    def restore_ema_sums(self) -> None:
        """Rebuild ``embed_avg`` from the codebook and its usage (for states saved without it)."""
        self.embed_avg.copy_(self.embed * self._smoothed_sizes().unsqueeze(1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Quantize ``[..., D]``; in training, also initialise and update the codebook. Returns (vectors, codes)."""
        flat = x.reshape(-1, self.dim)
        if self.training and not self._known_inited():
            self._init_embed(flat.detach())
        codes = nearest_code(flat, self.embed)
        quantized = F.embedding(codes, self.embed)
        if self.training:
            self._expire_codes(flat.detach())
            self._ema_update(flat.detach(), codes)
        return quantized.view_as(x), codes.view(*x.shape[:-1])


class VectorQuantizer(nn.Module):
    """One RVQ stage on ``[B, D, T]`` latents."""

    def __init__(self, dim: int, bins: int, **codebook_kwargs) -> None:
        super().__init__()
        self._codebook = EuclideanCodebook(dim, bins, **codebook_kwargs)

    def encode(self, x: Tensor) -> Tensor:
        return self._codebook.encode(x.transpose(1, 2))

    def decode(self, codes: Tensor) -> Tensor:
        return self._codebook.decode(codes).transpose(1, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (straight-through quantized ``[B, D, T]``, codes ``[B, T]``, commitment loss)."""
        quantized, codes = self._codebook(x.transpose(1, 2))
        quantized = quantized.transpose(1, 2)
        commitment = F.mse_loss(quantized.detach(), x) if self.training else x.new_zeros(())
        if self.training:
            quantized = x + (quantized - x).detach()
        return quantized, codes, commitment


class ResidualVQ(nn.Module):
    """A stack of quantizers, each coding the residual the previous ones left."""

    def __init__(self, n_q: int, dim: int, bins: int, **codebook_kwargs) -> None:
        super().__init__()
        self.layers = nn.ModuleList([VectorQuantizer(dim, bins, **codebook_kwargs) for _ in range(n_q)])

    def encode(self, x: Tensor, n_q: int) -> Tensor:
        """``[B, D, T]`` to codes ``[n_q, B, T]``."""
        residual = x
        codes = []
        for layer in self.layers[:n_q]:
            index = layer.encode(residual)
            residual = residual - layer.decode(index)
            codes.append(index)
        return torch.stack(codes)

    def decode(self, codes: Tensor) -> Tensor:
        """Codes ``[K, B, T]`` to ``[B, D, T]``, summed left to right from 0 as the reference does."""
        out: Tensor = torch.tensor(0.0, device=codes.device)
        for layer, index in zip(self.layers, codes):
            out = out + layer.decode(index)
        return out

    def forward(self, x: Tensor, n_q: int) -> tuple[Tensor, Tensor, Tensor]:
        residual = x
        quantized_out: Tensor = torch.zeros_like(x)
        codes, losses = [], []
        for layer in self.layers[:n_q]:
            quantized, index, loss = layer(residual)
            quantized = quantized.detach()  # encodec#25: keep later layers' commitment gradients alive
            residual = residual - quantized
            quantized_out = quantized_out + quantized
            codes.append(index)
            losses.append(loss)
        if self.training:
            quantized_out = x + (quantized_out - x).detach()
        return quantized_out, torch.stack(codes), torch.stack(losses).mean()


class QuantizedResult(NamedTuple):
    quantized: Tensor  # [B, D, T], straight-through in training
    codes: Tensor  # [n_q, B, T]
    bandwidth: Tensor  # nominal kbps, scalar
    penalty: Tensor  # mean commitment loss over the layers used


class ResidualVectorQuantizer(nn.Module):
    """The model's quantizer: chooses how many codebooks a bandwidth allows."""

    def __init__(self, dimension: int = 128, n_q: int = 32, bins: int = 1024, decay: float = 0.99,
                 kmeans_init: bool = True, kmeans_iters: int = 50, threshold_ema_dead_code: float = 2) -> None:
        super().__init__()
        self.dimension, self.n_q, self.bins = dimension, n_q, bins
        self.vq = ResidualVQ(n_q, dimension, bins, decay=decay, kmeans_init=kmeans_init, kmeans_iters=kmeans_iters,
                             threshold_ema_dead_code=threshold_ema_dead_code)

    def encode(self, x: Tensor, n_q: Optional[int] = None) -> Tensor:
        """Latents ``[B, D, T]`` to codes ``[K, B, T]`` with the first ``n_q`` codebooks (all when None)."""
        return self.vq.encode(x, self._check_n_q(n_q))

    def decode(self, codes: Tensor) -> Tensor:
        """Codes ``[K, B, T]`` to latents ``[B, D, T]``."""
        if codes.shape[0] > self.n_q:
            raise ValueError(f"{codes.shape[0]} codebooks given but the quantizer has {self.n_q}")
        return self.vq.decode(codes)

    @property
    def bits_per_codebook(self) -> int:
        return math.ceil(math.log2(self.bins))

    def num_codebooks(self, frame_rate: int, bandwidth: Optional[float]) -> int:
        """Codebooks that fit in ``bandwidth`` kbps at ``frame_rate`` (all of them when None)."""
        if bandwidth is None:
            return self.n_q
        return max(1, min(self.n_q, int(round(bandwidth * 1000)) // (frame_rate * self.bits_per_codebook)))

    def forward(self, x: Tensor, frame_rate: int, bandwidth: Optional[float] = None,
                n_q: Optional[int] = None) -> QuantizedResult:
        """Training-time quantization at ``bandwidth`` kbps, or with exactly ``n_q`` codebooks."""
        n_q = self._check_n_q(self.num_codebooks(frame_rate, bandwidth) if n_q is None else n_q)
        quantized, codes, penalty = self.vq(x, n_q)
        nominal = torch.full((), n_q * self.bits_per_codebook * frame_rate / 1000, device=x.device)  # no copy
        return QuantizedResult(quantized, codes, nominal, penalty)

    def _check_n_q(self, n_q: Optional[int]) -> int:
        n_q = self.n_q if n_q is None else int(n_q)
        if not 1 <= n_q <= self.n_q:
            raise ValueError(f"number of codebooks must be in 1..{self.n_q}, got {n_q}")
        return n_q
