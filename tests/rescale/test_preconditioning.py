"""A rescaling is a diagonal preconditioner of SGD: SGD (with momentum) from ``D theta`` at
learning rate ``lr`` is SGD from ``theta`` at per-entry learning rates
``lr * learning_rate_factors``, step by step (pathcond.rescale.preconditioning)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from pathcond import apply_rescaling, learning_rate_factors, rescaling_graph
from tests.bruteforce import Arch, archs, build
from tests.rescale.test_invariance import SETTINGS, assert_close_rel, batch, log_scales


def _sgd_steps(model: torch.nn.Module, arch: Arch, factors: dict[str, torch.Tensor] | None,
               *, steps: int, lr: float, momentum: float) -> None:
    """SGD with momentum written out: ``v <- m v + g``, ``theta <- theta - lr F v``."""
    buffers = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for step in range(steps):
        x = batch(arch, 100 + step, n=5)
        model.zero_grad()
        out = model(x)
        loss = F.mse_loss(out, torch.tanh(x.flatten(1)[:, :1]).expand_as(out))
        loss.backward()
        with torch.no_grad():
            for n, p in model.named_parameters():
                buffers[n].mul_(momentum).add_(p.grad)
                f = factors[n] if factors is not None and n in factors else 1.0
                p.sub_(lr * f * buffers[n])


@SETTINGS
@given(arch=archs(), seed=st.integers(0, 2**16), momentum=st.sampled_from([0.0, 0.9]))
def test_sgd_on_rescaled_equals_preconditioned_sgd(arch: Arch, seed: int,
                                                   momentum: float) -> None:
    base = build(arch, seed).train()
    graph = rescaling_graph(base, arch.in_shape)
    u = log_scales(graph, seed, std=0.5)
    factors = learning_rate_factors(base, graph, u)
    rescaled = copy.deepcopy(base)
    apply_rescaling(rescaled, graph, u)
    preconditioned = copy.deepcopy(base)
    _sgd_steps(rescaled, arch, None, steps=4, lr=0.05, momentum=momentum)
    _sgd_steps(preconditioned, arch, factors, steps=4, lr=0.05, momentum=momentum)
    x = batch(arch, seed)
    assert_close_rel(rescaled(x).detach(), preconditioned(x).detach(), rtol=1e-9)
    # The iterates themselves stay related by D: rescaling the preconditioned run gives the
    # rescaled run's parameters.
    apply_rescaling(preconditioned, graph, u)
    for (name, p), q in zip(rescaled.named_parameters(), preconditioned.parameters(),
                            strict=True):
        assert_close_rel(p.detach(), q.detach(), rtol=1e-8)
        assert name  # keeps the pairing readable in a failure


def test_factors_are_exp_minus_two_bu_in_parameter_shape() -> None:
    arch = Arch(kind="mlp", in_shape=(3,), widths=(4, 2), bias=(True, False, True),
                batchnorm=(False, True), residual=(False, False))
    model = build(arch, 0)
    graph = rescaling_graph(model, (3,))
    u = log_scales(graph, 1)
    factors = learning_rate_factors(model, graph, u)
    params = dict(model.named_parameters())
    assert factors, "the rescaling touches parameters"
    for name, f in factors.items():
        assert f.shape == params[name].shape
        assert f.dtype == torch.float64
        assert bool((f > 0).all())
    # u = 0 changes nothing: every factor is 1.
    ones = learning_rate_factors(model, graph, torch.zeros_like(u))
    assert all(bool((f == 1).all()) for f in ones.values())


def test_factors_refuse_a_graph_of_another_model() -> None:
    small = build(Arch(kind="mlp", in_shape=(3,), widths=(4,), bias=(True, True),
                       batchnorm=(False,), residual=(False,)), 0)
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    graph = rescaling_graph(other, (3,))
    with pytest.raises(ValueError, match="another model"):
        learning_rate_factors(small, graph, torch.zeros(graph.num_groups, dtype=torch.float64))
