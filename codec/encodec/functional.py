"""Building blocks for researchers who script with plain tensors rather than modules.

Latents are ``[B, D, T]`` and codes ``[B, K, T]``, the layouts ``EncodecModel`` uses, and codebooks are one tensor
``[K, bins, D]``; ``rvq_quantize`` gives the same codes as the model's quantizer, bit for bit.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

from .config import EncodecConfig
from .model import EncodecModel
from .quantization.rvq import kmeans, nearest_code


def build(num_codebooks: int = 32, codebook_size: int = 1024, hidden_dim: int = 128, sample_rate: int = 24000,
          bandwidth: Optional[float] = None, **config_fields) -> EncodecModel:
    """A randomly initialised model with ``num_codebooks`` codebooks of ``codebook_size`` entries.

    The model's largest bandwidth is the one its codebooks fill; ``bandwidth`` (kbps) becomes its default and is
    added to its target bandwidths. Other ``EncodecConfig`` fields (``channels``, ``causal``, ``ratios``...) pass
    through.
    """
    ratios = tuple(config_fields.get("ratios", EncodecConfig.ratios))
    frame_rate = -(-sample_rate // math.prod(ratios))
    bits = math.ceil(math.log2(codebook_size))
    largest = num_codebooks * frame_rate * bits / 1000
    bandwidths = {largest} if bandwidth is None else {largest, float(bandwidth)}
    if bandwidth is not None and bandwidth > largest:
        raise ValueError(f"bandwidth {bandwidth} kbps needs more than {num_codebooks} codebooks "
                         f"({largest:g} kbps at most)")
    config = EncodecConfig(name=config_fields.pop("name", f"encodec_custom_{sample_rate // 1000}khz"),
                           sample_rate=sample_rate, dimension=hidden_dim, bins=codebook_size,
                           target_bandwidths=tuple(sorted(bandwidths)), **config_fields)
    model = EncodecModel(config)
    if config.n_q != num_codebooks:
        raise ValueError(f"{num_codebooks} codebooks do not fit the frame rate {frame_rate} Hz evenly")
    model.set_target_bandwidth(bandwidth)
    return model


def codebooks_of(model: EncodecModel) -> Tensor:
    """The model's codebooks as one ``[K, bins, D]`` tensor (a copy)."""
    return torch.stack([layer._codebook.embed.detach().clone() for layer in model.quantizer.vq.layers])


def init_codebooks(num_codebooks: int, codebook_size: int, hidden_dim: int, data: Optional[Tensor] = None,
                   kmeans_iters: int = 50, seed: int = 0) -> Tensor:
    """Codebooks ``[K, bins, D]``: residual k-means on latents ``data`` ``[B, D, T]``, or random without data."""
    gen = torch.Generator().manual_seed(seed)
    if data is None:
        bound = math.sqrt(6 / hidden_dim)  # kaiming-uniform, as codebooks are initialised without k-means
        return (torch.rand(num_codebooks, codebook_size, hidden_dim, generator=gen) * 2 - 1) * bound
    if data.dim() != 3 or data.shape[1] != hidden_dim:
        raise ValueError(f"data must be latents shaped [B, {hidden_dim}, T], got {tuple(data.shape)}")
    residual = data.transpose(1, 2).reshape(-1, hidden_dim).float()
    books = []
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # kmeans draws its starting means from torch's global generator
    try:
        for _ in range(num_codebooks):
            means, _ = kmeans(residual, codebook_size, kmeans_iters)
            books.append(means)
            residual = residual - means[nearest_code(residual, means)]
    finally:
        torch.random.set_rng_state(state)
    return torch.stack(books)


def rvq_quantize(z: Tensor, codebooks: "Tensor | Sequence[Tensor]") -> tuple[Tensor, Tensor]:
    """Residual quantization of latents ``[B, D, T]``: returns (quantized ``[B, D, T]``, codes ``[B, K, T]``)."""
    if z.dim() != 3:
        raise ValueError(f"latents must be shaped [B, D, T], got {tuple(z.shape)}")
    books = _check_books(codebooks, z.shape[1])
    residual = z
    codes = []
    for book in books:
        index = nearest_code(residual.transpose(1, 2).reshape(-1, z.shape[1]), book).view(z.shape[0], z.shape[2])
        residual = residual - book[index].transpose(1, 2)
        codes.append(index)
    indices = torch.stack(codes, dim=1)
    return rvq_dequantize(indices, books), indices


def rvq_dequantize(indices: Tensor, codebooks: "Tensor | Sequence[Tensor]") -> Tensor:
    """Codes ``[B, K, T]`` back to latents ``[B, D, T]`` (summed left to right, as the model does)."""
    if indices.dim() != 3:
        raise ValueError(f"codes must be shaped [B, K, T], got {tuple(indices.shape)}")
    books = _check_books(codebooks, None)
    if indices.shape[1] > len(books):
        raise ValueError(f"{indices.shape[1]} codebooks in the codes but only {len(books)} given")
    out: Tensor = torch.tensor(0.0, device=indices.device)
    for k in range(indices.shape[1]):
        out = out + torch.nn.functional.embedding(indices[:, k], books[k]).transpose(1, 2)
    return out


def output_size(num_samples: int, ratios: Sequence[int] = EncodecConfig.ratios) -> int:
    """Code frames for ``num_samples`` input samples: ceil(samples / hop), computed in integers."""
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    return -(-num_samples // math.prod(ratios))


def _check_books(codebooks: "Tensor | Sequence[Tensor]", dim: Optional[int]) -> list[Tensor]:
    books = list(codebooks)
    if not books:
        raise ValueError("no codebooks given")
    for book in books:
        if book.dim() != 2 or (dim is not None and book.shape[1] != dim):
            raise ValueError(f"each codebook must be [bins, {dim or 'D'}], got {tuple(book.shape)}")
    return books
