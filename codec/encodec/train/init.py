"""Weight initialisation for training from scratch.

PyTorch's default conv init (uniform, a = sqrt(5)) gives each layer a variance gain of about 1/3 while every bias
adds a constant, so after the SEANet encoder's dozen convs the signal is a few thousandths of what comes in and the
latent is more than 99.9 % constant offset (measured in ``benchmarks/results/learning_diagnosis.csv``). The decoder
then sees a constant, its output is near silent, and a short training budget ends before the encoder leaves that
state: the collapse the shipped model showed. ``signal_preserving_init`` draws every conv weight with variance
1 / fan-in and zero bias, so the signal keeps its scale through the network and the initial latent already varies
in many directions. The LSTMs keep their default init: their residual connection carries the signal past them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..modules.conv import WNConv1d, WNConvTranspose1d

INITS = ("signal_preserving", "torch_default")


@torch.no_grad()
def signal_preserving_init(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Re-draw every (weight-normed) conv of ``model`` with std 1/sqrt(fan-in) and zero bias, in place."""
    for module in model.modules():
        if not isinstance(module, (WNConv1d, WNConvTranspose1d)):
            continue
        weight = module.weight_v if module.weight_normed else module.weight
        if isinstance(module, WNConvTranspose1d):  # [in, out, k]: each output sample sums in * k / stride taps
            fan_in = weight.shape[0] * weight.shape[2] / module.stride[0]
        else:  # [out, in / groups, k]
            fan_in = weight.shape[1] * weight.shape[2]
        weight.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
        if module.weight_normed:
            module.weight_g.copy_(torch.norm_except_dim(weight, 2, 0))
        if module.bias is not None:
            module.bias.zero_()


def initialize(model: nn.Module, init: str) -> None:
    """Apply the named init (``INITS``) to a freshly built model."""
    if init == "signal_preserving":
        signal_preserving_init(model)
    elif init != "torch_default":
        raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")
