"""The SEANet encoder and decoder of EnCodec.

Layers sit in an ``nn.Sequential`` called ``model`` with the ELUs as entries of their own, so the indices, and hence
the state-dict names, are those of the official checkpoints (``encoder.model.13.lstm.weight_ih_l0``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import EncodecConfig
from .conv import PaddedConv1d, PaddedConvTranspose1d


class SkipLSTM(nn.Module):
    """A multi-layer LSTM over time with a residual connection, on ``[B, C, T]`` tensors."""

    def __init__(self, dimension: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dimension, dimension, num_layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:  # [B, C, 1, T], channels-last: time-major already, and so is the sum
            out, _ = self.lstm(x.squeeze(2).permute(2, 0, 1))
            return torch.add(out.permute(1, 2, 0).unsqueeze(2), x, out=torch.empty_like(x))
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

    def forward_consuming(self, x: Tensor) -> Tensor:
        """``forward(x)`` with fewer full-length temporaries, overwriting ``x`` (for callers done with it).

        The ELUs run in place on the very tensors ``forward`` gives them (an ELU's vector loop rounds its last few
        elements differently, so it must see the same shape and strides to give the same bits), and the sum lands
        in the block's output (a + b == b + a exactly).
        """
        if isinstance(self.shortcut, nn.Identity):
            return self.forward(x)
        _, conv_in, _, conv_out = self.block
        shortcut = self.shortcut(x)
        out = conv_out(F.elu_(conv_in(F.elu_(x))))
        return out.add_(shortcut)


def run_layers(layers: nn.Sequential, x: Tensor, channels_last: bool = False) -> Tensor:
    """``layers(x)`` without keeping intermediates alive: every layer after the first may overwrite its input,
    which no one else holds (same numbers as ``layers(x)``)."""
    for index, layer in enumerate(layers):
        if index == 0:
            x = layer(x)
            if channels_last and x.stride(1) != 1:  # a one-channel input leaves oneDNN free to pick [C, T]
                x = x.contiguous(memory_format=torch.channels_last)
        elif isinstance(layer, ResidualBlock):
            x = layer.forward_consuming(x)
        elif isinstance(layer, nn.ELU):
            x = F.elu_(x, layer.alpha)
        else:
            x = layer(x)
    return x


def run_channels_last(layers: nn.Sequential, x: Tensor) -> Tensor:
    """``run_layers`` on ``[B, C, T]`` held as ``[B, C, 1, T]`` in channels-last (time-major) memory.

    oneDNN convolves time-major data without the layout conversions it otherwise makes around every conv (in the
    profile, converting a transposed conv's output back to [C, T] took as long as the conv itself), so each conv
    runs faster (``benchmarks/speed.py`` times the whole model this way). Transposed convs give the same bits either
    way; plain convs sum in another order (about 1e-7 relative), hence an option for the encoder, whose codes must
    match the official ones exactly.
    """
    out = run_layers(layers, x.unsqueeze(2).contiguous(memory_format=torch.channels_last), channels_last=True)
    return out.squeeze(2)


def _autograd(layers: nn.Module, x: Tensor) -> bool:
    """Whether this call builds a graph (training), which the in-place inference paths would break."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in layers.parameters()))


def _run(layers: nn.Sequential, x: Tensor, channels_last: bool, bfloat16: bool) -> Tensor:
    """Training (autograd) runs the plain modules; inference the in-place runner, channels-last when asked, and
    in bfloat16 (autocast: convs and the LSTM on bf16 operands, float32 result) when asked."""
    if _autograd(layers, x):
        return layers(x)
    runner = run_channels_last if channels_last else run_layers
    if not bfloat16:
        return runner(layers, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return runner(layers, x).float()


def _residual_stack(dim: int, config: EncodecConfig) -> list[nn.Module]:
    return [ResidualBlock(dim, config, config.dilation_base ** j) for j in range(config.n_residual_layers)]


def run_many(network: "SEANetEncoder | SEANetDecoder", inputs: Sequence[Tensor]) -> list[Tensor]:
    """``[network(x) for x in inputs]`` for inputs of one shape (the segments of a 48 kHz file), with a single LSTM
    call for all of them; inference only.

    The LSTM reads its 4 MB of recurrent weights at every step, memory-bound, and is a large share of a 48 kHz
    encode or decode: batched, it reads them once per step for all segments. Its batched product rounds
    differently from the official one-segment product: on the default data no code differs from the official
    ones, and decoded audio stays within about 2e-6 of the official decoder's (``benchmarks/speed.py`` measures
    both).
    """
    layers = network.model
    split = next((i for i, layer in enumerate(layers) if isinstance(layer, SkipLSTM)), None)
    if split is None or len(inputs) < 2 or _autograd(network, inputs[0]):
        return [network(x) for x in inputs]
    options = network.channels_last, network.bfloat16
    heads = [_run(layers[:split], x, *options) for x in inputs]
    middle = _run(layers[split:split + 1], torch.cat(heads), *options)
    return [_run(layers[split + 1:], m, *options) for m in middle.split([x.shape[0] for x in inputs])]


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
        # time-major memory: faster, but convs round differently, so codes may differ from the official ones
        self.channels_last = False
        self.bfloat16 = False  # reduced precision: much faster on CPUs with bf16 units, codes differ

    def forward(self, x: Tensor) -> Tensor:
        return _run(self.model, x, self.channels_last, self.bfloat16)

    def forward_many(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        """``[self(x) for x in inputs]`` for inputs of one shape, with one LSTM call for all (``run_many``)."""
        return run_many(self, inputs)


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
        # time-major memory: faster; the audio stays within 1e-5 of the official decoder's
        self.channels_last = False
        self.bfloat16 = False  # reduced precision: much faster on CPUs with bf16 units, audio differs

    def forward(self, z: Tensor) -> Tensor:
        return _run(self.model, z, self.channels_last, self.bfloat16).contiguous()

    def forward_many(self, latents: Sequence[Tensor]) -> list[Tensor]:
        """``[self(z) for z in latents]`` for latents of one shape, with one LSTM call for all (``run_many``)."""
        return [out.contiguous() for out in run_many(self, latents)]
