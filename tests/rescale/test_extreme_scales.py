"""Badly scaled networks: the rescaling is computed in float64 and written only if the
model's dtype can hold it; the Newton solver bounds its steps; a solver that leaves float64's
range says so, with the model untouched; invalid tolerances are refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

import pathcond
from pathcond import NonFiniteParameterError


def mlp(depth: int, width: int, scale: float, *, seed: int = 0,
        dtype: torch.dtype = torch.float32) -> nn.Sequential:
    torch.manual_seed(seed)
    mods: list[nn.Module] = [nn.Linear(2, width)]
    for _ in range(depth - 2):
        mods += [nn.ReLU(), nn.Linear(width, width)]
    mods += [nn.ReLU(), nn.Linear(width, 2)]
    model = nn.Sequential(*mods).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_float32_values_that_fit_are_written_exactly() -> None:
    """Layer scales 1e30, 1e-30, 1e30 in float32: each factor alone overflows float32, the
    rescaled values do not; they are the float64 products, rounded once."""
    model = layered((1e30, 1e-30, 1e30))
    ref = copy.deepcopy(model)
    report = pathcond.rescale(model, (2,))
    graph = pathcond.rescaling_graph(ref, (2,))
    scales = pathcond.parameter_log_scales(graph, report.log_scales.to(torch.float64))
    params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        want = (params[name].detach().double() * torch.exp(scales[name])).float() \
            if name in scales else params[name].detach()
        assert torch.equal(p.detach(), want), name
    x = torch.ones(1, 2)
    torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=0.0)


def test_a_rescaling_beyond_the_dtype_is_refused_with_the_model_untouched() -> None:
    model = mlp(24, 32, 1.0)  # float32, PyTorch's init: the optimum needs values ~1e51
    before = state(model)
    with pytest.raises(NonFiniteParameterError, match="beyond torch.float32's range: the "
                                                      "model was left unchanged"):
        pathcond.rescale(model, (2,))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    report = pathcond.rescale(model.double(), (2,))  # float64 holds it
    assert report.converged and report.am_gm_after < report.am_gm_before


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_entries_are_the_float64_products_rounded_once(dtype: torch.dtype
                                                                     ) -> None:
    """In float16/bfloat16 each rescaled entry is its float64 value rounded once, so the
    function moves only by the dtype's rounding."""
    model = mlp(4, 16, 1.0, dtype=dtype)
    ref = copy.deepcopy(model)
    graph = pathcond.rescaling_graph(ref, (2,))
    u = torch.linspace(-2.0, 2.0, graph.num_groups, dtype=torch.float64)
    pathcond.apply_rescaling(model, graph, u)
    scales = pathcond.parameter_log_scales(graph, u)
    params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        want = (params[name].detach().double() * torch.exp(scales[name])).to(dtype) \
            if name in scales else params[name].detach()
        assert torch.equal(p.detach(), want), name
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, after = ref.double()(x.double()), model.double()(x.double())
    eps = torch.finfo(dtype).eps
    assert float((after - before).abs().max()) < 50 * eps * float(before.abs().max())


def test_an_entry_rounded_to_zero_is_refused_with_the_model_untouched() -> None:
    """float16's smallest value is about 6e-8: scaling a layer by exp(-25) would zero its
    weights, which no later rescaling could restore."""
    model = mlp(3, 8, 1.0, dtype=torch.float16)
    graph = pathcond.rescaling_graph(model, (2,))
    before = state(model)
    u = torch.full((graph.num_groups,), -25.0, dtype=torch.float64)
    with pytest.raises(NonFiniteParameterError, match="would round [0-9]+ nonzero entries to "
                                                      "zero, below torch.float16's smallest "
                                                      "value: the model was left unchanged"):
        pathcond.apply_rescaling(model, graph, u)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    pathcond.apply_rescaling(model.float(), graph, u)  # float32 holds exp(-25) * 0.5


def test_newton_bounds_its_steps_on_a_small_initialisation() -> None:
    """Parameters ~0.003: the Hessian's diagonal spans ~180 orders of magnitude; Newton
    still converges, to the block solver's minimum."""
    model = mlp(8, 32, 0.03, dtype=torch.float64)
    newton = pathcond.rescale(copy.deepcopy(model), (2,), solver="newton")
    block = pathcond.rescale(copy.deepcopy(model), (2,), solver="block")
    assert newton.converged and block.converged
    assert newton.am_gm_after == pytest.approx(block.am_gm_after, rel=1e-6)
    assert newton.am_gm_after < 1e-4 * newton.am_gm_before


def layered(scales: tuple[float, ...]) -> nn.Sequential:
    """A 2-3-...-2 MLP whose layers are multiplied by ``scales``."""
    torch.manual_seed(0)
    mods: list[nn.Module] = []
    for i in range(len(scales)):
        mods += [nn.Linear(2 if i == 0 else 3, 3 if i < len(scales) - 1 else 2), nn.ReLU()]
    model = nn.Sequential(*mods[:-1])
    with torch.no_grad():
        for layer, s in zip(model[::2], scales, strict=True):
            layer.weight.mul_(s)
            layer.bias.mul_(s)
    return model


@pytest.mark.parametrize(("solver", "make"), [
    ("block", lambda: mlp(16, 32, 0.01, dtype=torch.float64)),
    ("coordinate", lambda: layered((1e30, 1e-30, 1e30))),
])
def test_a_solver_leaving_float64_says_so(solver: str, make: Any) -> None:
    model = make()
    before = state(model)
    with pytest.raises(NonFiniteParameterError, match=f"the {solver} solver left float64's "
                                                      "range .*solver='newton'"):
        pathcond.rescale(model, (2,), solver=solver)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("tol", [-1.0, float("nan"), float("inf")])
def test_invalid_tolerances_are_refused(tol: float) -> None:
    model = mlp(3, 4, 1.0)
    with pytest.raises(ValueError, match="tol must be None or a finite number >= 0"):
        pathcond.rescale(model, (2,), tol=tol)
    with pytest.raises(ValueError, match="step_tol must be None"):
        pathcond.rescale(model, (2,), step_tol=tol)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_underflowed_magnitudes_are_not_taken_for_dead_units(scale: float) -> None:
    """Depth 30, width 2, every parameter times 1e-30 (or 1e30): path magnitudes of 1e-1800
    underflow float64; the error says so instead of reporting dead units and a wrong AM/GM.
    A truly dead unit (zero incoming weights) is still one."""
    model = mlp(30, 2, scale, dtype=torch.float64)
    with pytest.raises(NonFiniteParameterError, match="underflow torch.float64 although paths "
                                                      "of non-zero parameters run through"):
        pathcond.rescale(model, (2,))
    dead = mlp(4, 3, 1.0, dtype=torch.float64)
    with torch.no_grad():
        dead[2].weight[1].zero_()
        dead[2].bias[1] = 0.0
    report = pathcond.rescale(dead, (2,))
    assert [d.name for d in report.dead_groups] == ["2[1]"]


def test_path_quantities_beyond_float64_are_errors_not_nan() -> None:
    """W1 = 1e-170, W2 = 1e170: every path value is O(1), but |w|^2 leaves float64."""
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(),
                          nn.Linear(2, 2, bias=False)).double()
    with torch.no_grad():
        model[0].weight.fill_(1e-170)
        model[2].weight.fill_(1e170)
    assert pathcond.path_norm(model, (2,), p=1) == pytest.approx(8.0)
    for p in (2, 3):
        with pytest.raises(NonFiniteParameterError, match=f"L{p} path-norm cannot be computed"):
            pathcond.path_norm(model, (2,), p=p)
    with pytest.raises(NonFiniteParameterError, match="exceed torch.float64's range"):
        pathcond.path_magnitudes(model, (2,))
