"""Convolutions with EnCodec's padding rules and norms.

Padding is computed in Python integers: a float division (as in Hugging Face's port) gets the alignment padding
wrong past 2^24 samples. Module and parameter names follow the official checkpoints, so that their state dicts load
as they are: ``<layer>.conv.conv.weight_g`` for a padded conv, ``<layer>.convtr.convtr.weight_v`` for a transposed
one, ``<layer>.conv.norm.weight`` for the time-group norm.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

NORMS = ("weight_norm", "time_group_norm", "none")


def extra_padding(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Right padding that makes the last window full, so a transposed conv can rebuild the whole length."""
    span = length - kernel_size + padding_total
    n_frames = -(-span // stride) + 1  # ceil(span / stride) + 1 in integers
    ideal_length = (n_frames - 1) * stride + kernel_size - padding_total
    return ideal_length - length


def pad1d(x: torch.Tensor, left: int, right: int, mode: str = "reflect") -> torch.Tensor:
    """F.pad that also reflects inputs shorter than the padding (zero-extend, reflect, drop the extension).

    Any non-zero padding returns a new tensor, which callers may then modify in place. A reflection is built as
    one concatenation of the flipped edges and the input: the same values as ``F.pad(mode="reflect")``, whose
    kernel is several times slower on long signals (``benchmarks/profile_encodec.py`` shows its share of the
    encoder's time).
    """
    if mode != "reflect":
        return F.pad(x, (left, right), mode="constant" if mode in ("zero", "constant") else mode)
    length = x.shape[-1]
    max_pad = max(left, right)
    if length > max_pad:
        if not (left or right):
            return x
        # empty pieces left out: they would make cat drop a channels-last layout
        pieces = [x[..., 1: left + 1].flip(-1)] if left else []
        pieces.append(x)
        if right:
            pieces.append(x[..., length - right - 1: length - 1].flip(-1))
        return torch.cat(pieces, -1)
    extension = max_pad - length + 1
    x = F.pad(x, (0, extension))
    padded = F.pad(x, (left, right) if x.dim() < 4 else (left, right, 0, 0), mode="reflect")  # 4D: [B, C, 1, T]
    return padded[..., : padded.shape[-1] - extension]


class _WeightNorm:
    """Weight norm with the official parameter names ``weight_g`` and ``weight_v`` (norm over all but dim 0).

    ``fold()`` replaces g and v by the weight they stand for, computed by the same kernel the reference runs at
    every forward, so inference gives identical numbers without recomputing the norm each call.
    """

    weight_g: nn.Parameter
    weight_v: nn.Parameter

    def _init_weight_norm(self, enabled: bool) -> None:
        self.weight_normed = enabled
        if enabled:
            weight = self.weight.detach()
            del self.weight
            self.weight_g = nn.Parameter(torch.norm_except_dim(weight, 2, 0))
            self.weight_v = nn.Parameter(weight.clone())

    def effective_weight(self) -> torch.Tensor:
        if self.weight_normed:
            return torch._weight_norm(self.weight_v, self.weight_g, 0)
        return self.weight

    def fold(self) -> None:
        if self.weight_normed:
            weight = self.effective_weight().detach()
            del self.weight_g, self.weight_v
            self.weight_normed = False
            self.weight = nn.Parameter(weight)


class WNConv1d(_WeightNorm, nn.Conv1d):
    """nn.Conv1d with optional weight norm."""

    def __init__(self, *args, weight_norm: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_weight_norm(weight_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # [B, C, 1, T] in channels-last memory: see SEANetEncoder.channels_last
            if self.kernel_size[0] == 1 and self.stride[0] == 1 and self.groups == 1:
                return self._pointwise_channels_last(x)
            return F.conv2d(x, self.effective_weight().unsqueeze(2), self.bias, (1, self.stride[0]), 0,
                            (1, self.dilation[0]), self.groups)
        return self._conv_forward(x, self.effective_weight(), self.bias)

    def _pointwise_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """A 1x1 conv as one matrix product on the time-major rows: torch sends single-threaded 1x1 convs to a
        slow path whose bias broadcast alone, across channels-last memory, costs as much as the product."""
        batch, channels, _, length = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(batch * length, channels)  # a view for channels-last input
        weight = self.effective_weight()[:, :, 0].t()
        out = rows @ weight if self.bias is None else torch.addmm(self.bias, rows, weight)
        return out.view(batch, 1, length, -1).permute(0, 3, 1, 2)


class WNConvTranspose1d(_WeightNorm, nn.ConvTranspose1d):
    """nn.ConvTranspose1d with optional weight norm (its norm runs per *input* channel, as in the reference)."""

    def __init__(self, *args, weight_norm: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_weight_norm(weight_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # [B, C, 1, T], channels-last
            return F.conv_transpose2d(x, self.effective_weight().unsqueeze(2), self.bias, (1, self.stride[0]),
                                      (0, self.padding[0]), (0, self.output_padding[0]), self.groups,
                                      (1, self.dilation[0]))
        return F.conv_transpose1d(x, self.effective_weight(), self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


def _make_norm(norm: str, channels: int) -> nn.Module:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
    return nn.GroupNorm(1, channels, eps=1e-5) if norm == "time_group_norm" else nn.Identity()


class NormConv1d(nn.Module):
    """A conv and its norm: weight norm inside the conv, or a GroupNorm(1, C) over channels and time after it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 norm: str = "none", bias: bool = True) -> None:
        super().__init__()
        self.conv = WNConv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation, bias=bias,
                             weight_norm=norm == "weight_norm")
        self.norm = _make_norm(norm, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class NormConvTranspose1d(nn.Module):
    """A transposed conv and its norm (see NormConv1d)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 norm: str = "none") -> None:
        super().__init__()
        self.convtr = WNConvTranspose1d(in_channels, out_channels, kernel_size, stride,
                                        weight_norm=norm == "weight_norm")
        self.norm = _make_norm(norm, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.convtr(x))


class PaddedConv1d(nn.Module):
    """Conv1d that pads its input so that the output has ceil(length / stride) frames.

    Causal: all the fixed padding goes left. Non-causal: it is split, the odd sample going left. The alignment
    padding always goes right.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 causal: bool = False, norm: str = "none", pad_mode: str = "reflect") -> None:
        super().__init__()
        self.conv = NormConv1d(in_channels, out_channels, kernel_size, stride, dilation, norm)
        self.causal = causal
        self.pad_mode = pad_mode
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.padding_total = (kernel_size - 1) * dilation - (stride - 1)

    def paddings(self, length: int) -> tuple[int, int]:
        """(left, right) padding for an input of ``length`` samples."""
        extra = extra_padding(length, self.kernel_size, self.stride, self.padding_total)
        if self.causal:
            return self.padding_total, extra
        right = self.padding_total // 2
        return self.padding_total - right, right + extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = self.paddings(x.shape[-1])
        return self.conv(pad1d(x, left, right, self.pad_mode))


class PaddedConvTranspose1d(nn.Module):
    """ConvTranspose1d that trims its fixed padding so that T frames become T * stride samples."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 causal: bool = False, norm: str = "none", trim_right_ratio: float = 1.0) -> None:
        super().__init__()
        if not causal and trim_right_ratio != 1.0:
            raise ValueError("trim_right_ratio only applies to causal models")
        self.convtr = NormConvTranspose1d(in_channels, out_channels, kernel_size, stride, norm)
        self.causal = causal
        self.kernel_size, self.stride = kernel_size, stride
        padding_total = kernel_size - stride
        right = math.ceil(padding_total * trim_right_ratio) if causal else padding_total // 2
        self.trim = (padding_total - right, right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convtr(x)
        left, right = self.trim
        return y[..., left: y.shape[-1] - right]


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace weight-norm parameters by plain weights everywhere in ``module`` (for inference)."""
    for child in module.modules():
        if isinstance(child, _WeightNorm):
            child.fold()
    return module


def has_weight_norm(module: nn.Module) -> bool:
    """Whether any conv in ``module`` still carries unfolded weight-norm parameters."""
    return any(isinstance(c, _WeightNorm) and c.weight_normed for c in module.modules())
