import pytest
import torch

from codec.encodec.train.balancer import Balancer


def _graph(seed=0):
    """A tiny 'decoder output' with two losses of wildly different scales."""
    torch.manual_seed(seed)
    weight = torch.randn(3, 8, requires_grad=True)
    output = torch.randn(4, 3) @ weight  # [B=4, 8]
    target = torch.randn(4, 8)
    losses = {"mel": 1000 * (output - target).square().mean(), "l1": (output - target).abs().mean()}
    return weight, output, losses


def _fractions(balancer_grad: torch.Tensor, grads: dict[str, torch.Tensor]) -> dict[str, float]:
    """Solve balancer_grad = sum_i a_i g_i and report each part's per-item norm a_i * mean_b ||g_i[b]||."""
    names = list(grads)
    basis = torch.stack([grads[n].flatten() for n in names], dim=1).double()
    coef = torch.linalg.lstsq(basis, balancer_grad.flatten().double()[:, None]).solution.flatten()
    return {n: (coef[i] * grads[n].norm(dim=1).mean()).item() for i, n in enumerate(names)}


def _leaf_graph(seed=0):
    torch.manual_seed(seed)
    output = torch.randn(4, 8, requires_grad=True)
    target = torch.randn(4, 8)
    return output, {"mel": 1000 * (output - target).square().mean(), "l1": (output - target).abs().mean()}


def test_balancer_gives_each_loss_its_promised_fraction_of_the_gradient():
    output, losses = _leaf_graph()
    grads = {k: torch.autograd.grad(v, output, retain_graph=True)[0] for k, v in losses.items()}
    Balancer({"mel": 1.0, "l1": 3.0}).backward(losses, output)
    measured = _fractions(output.grad, grads)
    assert measured["mel"] == pytest.approx(0.25, rel=1e-4)
    assert measured["l1"] == pytest.approx(0.75, rel=1e-4)


def test_balancer_gradient_reaches_the_parameters_behind_the_output():
    weight, output, losses = _graph()
    Balancer({"mel": 1.0, "l1": 3.0}).backward(losses, output)
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_balancer_ema_remembers_past_norms():
    balancer = Balancer({"mel": 1.0, "l1": 1.0}, ema_decay=0.5)
    output, losses = _leaf_graph(0)
    norm_first = torch.autograd.grad(losses["mel"], output, retain_graph=True)[0].norm(dim=1).mean().item()
    balancer.backward(losses, output)
    output, losses = _leaf_graph(1)
    losses["mel"] = 10 * losses["mel"]
    grad_mel = torch.autograd.grad(losses["mel"], output, retain_graph=True)[0]
    grads = {"mel": grad_mel, "l1": torch.autograd.grad(losses["l1"], output, retain_graph=True)[0]}
    balancer.backward(losses, output)
    norm_second = grad_mel.norm(dim=1).mean().item()
    ema = (0.5 * norm_first + norm_second) / 1.5
    assert _fractions(output.grad, grads)["mel"] == pytest.approx(0.5 * norm_second / ema, rel=1e-4)
    state = balancer.state_dict()
    clone = Balancer({"mel": 1.0, "l1": 1.0}, ema_decay=0.5)
    clone.load_state_dict(state)
    assert clone.state_dict() == state


def test_disabled_balancer_uses_raw_weights():
    weight, output, losses = _graph()
    expected = torch.autograd.grad(2 * losses["mel"] + 0.5 * losses["l1"], weight, retain_graph=True)[0]
    Balancer({"mel": 2.0, "l1": 0.5}, enabled=False).backward(losses, output)
    torch.testing.assert_close(weight.grad, expected)


def test_balancer_rejects_unknown_losses_and_bad_weights():
    _, output, losses = _graph()
    with pytest.raises(KeyError, match="without a balancer weight"):
        Balancer({"mel": 1.0}).backward(losses, output)
    with pytest.raises(ValueError, match="at least one positive"):
        Balancer({"mel": 0.0})
