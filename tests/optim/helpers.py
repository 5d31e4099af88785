"""Shared helpers for the optimizer tests: random rescalings, seeded training runs."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from hypothesis import HealthCheck, Phase, settings
from torch import nn

import pathcond

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow])


def random_log_scales(graph: pathcond.RescalingGraph, seed: int, std: float = 1.0
                      ) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return std * torch.randn(graph.num_groups, generator=gen, dtype=torch.float64)


def rescaled(model: nn.Module, input_shape, seed: int, std: float = 1.0) -> nn.Module:
    """A copy of ``model`` rescaled by a random ``u`` (same function)."""
    other = copy.deepcopy(model)
    graph = pathcond.rescaling_graph(other, input_shape)
    pathcond.apply_rescaling(other, graph, random_log_scales(graph, seed, std))
    return other


def batches(model: nn.Module, input_shape, steps: int, seed: int, n: int = 8):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.eval()
        out = model(torch.zeros((2, *input_shape), dtype=torch.float64)).shape[1]
        model.train()
    for _ in range(steps):
        x = torch.randn((n, *input_shape), generator=gen, dtype=torch.float64)
        y = torch.randn((n, out), generator=gen, dtype=torch.float64)
        yield x, y


def mse_steps(model: nn.Module, optimizer: torch.optim.Optimizer, data) -> None:
    """One step of ``optimizer`` per batch ``(x, y)`` of ``data``, on the mean squared error."""
    for x, y in data:
        optimizer.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        optimizer.step()


def train(model: nn.Module, optimizer: torch.optim.Optimizer, input_shape, steps: int,
          seed: int = 0, use_closure: bool = False) -> list[float]:
    losses = []
    for x, y in batches(model, input_shape, steps, seed):
        def closure(x=x, y=y) -> float:
            optimizer.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            return float(loss.detach())
        if use_closure:
            losses.append(float(optimizer.step(closure)))
        else:
            losses.append(closure())
            optimizer.step()
    return losses


def outputs(model: nn.Module, input_shape, seed: int = 123) -> torch.Tensor:
    """Eval-mode outputs on a fixed batch (running statistics untouched)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((6, *input_shape), generator=gen, dtype=torch.float64)
    was = model.training
    model.eval()
    with torch.no_grad():
        y = model(x)
    model.train(was)
    return y


def assert_same_function(a: nn.Module, b: nn.Module, input_shape, rtol: float) -> None:
    ya, yb = outputs(a, input_shape), outputs(b, input_shape)
    scale = max(float(ya.abs().max()), 1e-12)
    err = float((ya - yb).abs().max()) / scale
    assert err <= rtol, f"relative output difference {err:.3g} > {rtol:g}"


Maker = Callable[[nn.Module, tuple[int, ...]], torch.optim.Optimizer]


def assert_enorm_descends(enorm, cycles: int, *, strictly: bool = True) -> None:
    """``cycles`` ENorm cycles never raise its objective (to rounding), and lower it."""
    values = [enorm.objective()]
    for _ in range(cycles):
        enorm.step()
        values.append(enorm.objective())
    assert all(b <= a * (1 + 1e-12) for a, b in zip(values, values[1:], strict=False))
    if strictly:
        assert values[-1] < values[0]
