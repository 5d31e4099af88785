"""A rescaling is a diagonal preconditioner of SGD: SGD (with momentum) from ``D theta`` at
learning rate ``lr`` is SGD from ``theta`` at per-entry learning rates
``lr * learning_rate_factors``, step by step (pathcond.rescale.preconditioning)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from pathcond import (
    apply_rescaling,
    learning_rate_factors,
    pathcond_lr_scales,
    rescale,
    rescaling_graph,
)
from pathcond.rescale import pathcond_learning_rate_factors
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
@given(arch=archs(upsampling=True), seed=st.integers(0, 2**16),
       momentum=st.sampled_from([0.0, 0.9]))
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


def test_pathcond_lr_scales_are_geometric_means_of_pathcond_factors() -> None:
    arch = Arch(kind="mlp", in_shape=(5,), widths=(6, 4), bias=(True, True, True),
                batchnorm=(False, False), residual=(False, False))
    model = build(arch, 3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    scales = pathcond_lr_scales(model, (5,))
    factors = pathcond_learning_rate_factors(model, (5,))
    assert set(scales) == set(factors) and scales
    for name, f in factors.items():
        want = math.exp(float(f.log().mean()))
        assert scales[name] == pytest.approx(want, rel=5e-4)  # 4 significant digits
        assert scales[name] == float(f"{scales[name]:.4g}")
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters()), "unchanged"
    # The factors are PathCond's: the solver's own u* gives the same ones.
    graph = rescaling_graph(model, (5,))
    report = rescale(copy.deepcopy(model), graph=graph)
    direct = learning_rate_factors(model, graph, report.log_scales)
    for name, f in factors.items():
        torch.testing.assert_close(f, direct[name], rtol=1e-9, atol=0)


def test_pathcond_lr_scales_equal_pathcond_where_a_tensor_shares_one_factor() -> None:
    """With one unit per hidden layer and no biases every weight tensor takes a single
    factor, so SGD at ``lr_scales`` is SGD on PathCond's rescaling up to the 4-digit
    rounding of the factors."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 1, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(1, 1, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(1, 2, bias=False)).double()
    with torch.no_grad():  # a badly scaled start, so that PathCond moves far from 1
        model[0].weight.abs_().mul_(8.0)
        model[2].weight.abs_().mul_(0.1).add_(0.05)
    scales = pathcond_lr_scales(model, (3,))
    assert max(abs(math.log(s)) for s in scales.values()) > 1.0
    arch = Arch(kind="mlp", in_shape=(3,), widths=(1, 1), bias=(False, False, False),
                batchnorm=(False, False), residual=(False, False))
    rescaled, preconditioned = copy.deepcopy(model), copy.deepcopy(model)
    rescale(rescaled, (3,))
    full = {n: torch.full_like(p, scales.get(n, 1.0))
            for n, p in model.named_parameters()}
    _sgd_steps(rescaled, arch, None, steps=5, lr=0.05, momentum=0.9)
    _sgd_steps(preconditioned, arch, full, steps=5, lr=0.05, momentum=0.9)
    x = batch(arch, 7)
    assert_close_rel(rescaled(x).detach(), preconditioned(x).detach(), rtol=1e-4)
    plain = copy.deepcopy(model)
    _sgd_steps(plain, arch, None, steps=5, lr=0.05, momentum=0.9)
    assert not torch.allclose(plain(x), rescaled(x), rtol=1e-2), "the factors matter here"
