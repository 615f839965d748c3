"""The loss balancer (paper section 3.4): each loss's weight becomes its fraction of the gradient on the output.

For every loss ell_i the gradient g_i = d ell_i / d x_hat is taken on the decoder output only. With an EMA
(beta 0.999, bias-corrected) of its norm <||g_i||>, the gradient sent into the decoder is
    sum_i R * (lambda_i / sum_j lambda_j) * g_i / <||g_i||>
so that, whatever a loss's natural scale, it contributes the fraction lambda_i / sum lambda of a gradient of norm R.
With ``enabled=False`` it backpropagates sum_i lambda_i * ell_i (training on raw loss weights).

The norm averages stay on the loss's device as float64 tensors (the same arithmetic as Python floats), so a step
never waits for the GPU; ``state_dict`` reads them as numbers.
"""

from __future__ import annotations

from typing import Mapping, Union

import torch
from torch import distributed as dist


class Balancer:
    def __init__(self, weights: Mapping[str, float], enabled: bool = True, total_norm: float = 1.0,
                 ema_decay: float = 0.999, per_batch_item: bool = True, eps: float = 1e-12) -> None:
        if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise ValueError(f"balancer weights must be >= 0 with at least one positive, got {dict(weights)}")
        self.weights = dict(weights)
        self.enabled, self.total_norm, self.ema_decay = enabled, total_norm, ema_decay
        self.per_batch_item, self.eps = per_batch_item, eps
        self.ema_total: dict[str, Union[float, torch.Tensor]] = {}  # a 0-dim float64 tensor once updated
        self.ema_count: dict[str, float] = {}
        self.last_norms: dict[str, torch.Tensor] = {}

    def backward(self, losses: Mapping[str, torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        """Backpropagate the combined gradient into ``output``'s graph; returns the weighted loss for logging."""
        unknown = set(losses) - set(self.weights)
        if unknown:
            raise KeyError(f"losses without a balancer weight: {sorted(unknown)}")
        active = {k: v for k, v in losses.items() if self.weights[k] > 0}
        if not self.enabled:
            total = sum(self.weights[k] * v for k, v in active.items())
            total.backward()
            return total.detach()
        grads, norms = {}, {}
        for name, loss in active.items():
            (grad,) = torch.autograd.grad(loss, [output], retain_graph=True, allow_unused=True)
            grad = torch.zeros_like(output) if grad is None else grad
            grads[name] = grad
            if self.per_batch_item:
                norms[name] = grad.reshape(grad.shape[0], -1).norm(dim=1).mean()
            else:
                norms[name] = grad.norm()
        averages = self._update_ema(norms, output.shape[0])
        weight_sum = sum(self.weights[k] for k in active)
        combined = torch.zeros_like(output)
        logged = output.new_zeros(())
        for name, grad in grads.items():
            scale = (self.weights[name] / weight_sum * self.total_norm / (self.eps + averages[name])).to(output.dtype)
            combined = combined + scale * grad
            logged = logged + scale * active[name].detach()
        output.backward(combined)
        return logged

    def _update_ema(self, norms: Mapping[str, torch.Tensor], batch_size: int) -> dict[str, torch.Tensor]:
        names = sorted(norms)
        values = torch.stack([norms[k].detach().double() for k in names])
        if dist.is_available() and dist.is_initialized():
            # Average the norms across workers, weighted by batch size, so every rank uses the same scales.
            packed = torch.cat([values * batch_size, values.new_tensor([batch_size])])
            dist.all_reduce(packed)
            values = packed[:-1] / packed[-1]
        averages = {}
        for name, value in zip(names, values.unbind()):
            self.last_norms[name] = value
            self.ema_total[name] = self.ema_decay * self.ema_total.get(name, 0.0) + value
            self.ema_count[name] = self.ema_decay * self.ema_count.get(name, 0.0) + 1.0
            averages[name] = self.ema_total[name] / self.ema_count[name]
        return averages

    def state_dict(self) -> dict:
        return {"ema_total": {k: float(v) for k, v in self.ema_total.items()}, "ema_count": dict(self.ema_count)}

    def load_state_dict(self, state: Mapping) -> None:
        self.ema_total = dict(state["ema_total"])
        self.ema_count = dict(state["ema_count"])
