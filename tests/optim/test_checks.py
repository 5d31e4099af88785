"""Misuse of the optimizers and rescalers fails at construction, in one line, before the
model is touched; frozen parameters and missing gradients behave as documented."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from pathcond.optim import GSGD, ENorm, GSpace, PathSGD, WeightFixing

SHAPE = (4,)


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(),
                         nn.Linear(6, 3))


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def one_step(model: nn.Module, opt: Any) -> None:
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()


BUILDERS: dict[str, Callable[..., Any]] = {
    "PathSGD": lambda m, **kw: PathSGD(m, SHAPE, lr=0.1, **kw),
    "GSGD": lambda m, **kw: GSGD(m, SHAPE, lr=0.1, **kw),
    "GSpace": lambda m, **kw: GSpace(m, SHAPE, torch.optim.Adam, lr=1e-3, **kw),
    "ENorm": lambda m, **kw: ENorm(m, SHAPE, **kw),
    "WeightFixing": lambda m, **kw: WeightFixing(m, SHAPE, **kw),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_the_model_comes_first(name: str) -> None:
    model = mlp()
    with pytest.raises(TypeError, match=f"{name} takes the model first"):
        BUILDERS[name](model.parameters())


@pytest.mark.parametrize("name", ["PathSGD", "GSGD"])
def test_parameter_groups_hold_only_the_models_parameters(name: str) -> None:
    model, other = mlp(0), mlp(1)
    with pytest.raises(ValueError, match=f"{name} got a parameter that is not one of the "
                                         "model's"):
        BUILDERS[name](model, params=other.parameters())
    opt = BUILDERS[name](model, params=[model[0].weight])
    with pytest.raises(ValueError, match="not one of the model's"):
        opt.add_param_group({"params": [other[0].weight]})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [model[2].weight]})
    assert len(opt.param_groups) == 2


def test_path_sgd_options_checked_when_given() -> None:
    model = mlp()
    opt = PathSGD(model, SHAPE, lr=0.1, eps=0.0, params=[model[0].weight])
    with pytest.raises(ValueError, match="same eps in every parameter group"):
        opt.add_param_group({"params": [model[2].weight], "eps": 1e-3})
    assert len(opt.param_groups) == 1
    with pytest.raises(ValueError, match="floating-point dtype"):
        PathSGD(model, SHAPE, lr=0.1, dtype=torch.int32)
    for build in (PathSGD, GSGD):
        with pytest.raises(ValueError, match="lr must be positive and finite"):
            build(model, SHAPE, lr=float("inf"))


@pytest.mark.parametrize(("inner", "options", "message"), [
    (torch.optim.Adam([torch.zeros(1, requires_grad=True)]), {}, "a torch.optim.Optimizer "
     "class .* got an instance of Adam"),
    (torch.optim.Adam, {"lr": -1.0}, "Adam does not take these options: Invalid learning rate"),
    (torch.optim.Adam, {"momentum": 0.9}, "unexpected keyword argument 'momentum'"),
])
def test_gspace_checks_its_inner_optimizer_before_touching_the_model(
        inner: Any, options: dict[str, Any], message: str) -> None:
    model = mlp()
    before = flat(model)
    with pytest.raises((TypeError, ValueError), match=message) as err:
        GSpace(model, SHAPE, inner, init="ones", **options)
    assert "\n" not in str(err.value)
    assert torch.equal(flat(model), before)


@pytest.mark.parametrize("name", ["ENorm", "WeightFixing"])
def test_attached_optimizer_must_be_one_of_this_model(name: str) -> None:
    model, other = mlp(0), mlp(1)
    before = flat(model)
    with pytest.raises(TypeError, match=f"{name}: optimizer must be a torch.optim.Optimizer "
                                        "instance, got str"):
        BUILDERS[name](model, optimizer="sgd")
    with pytest.raises(ValueError, match="holds none of the model's parameters"):
        BUILDERS[name](model, optimizer=torch.optim.SGD(other.parameters(), lr=0.1))
    assert torch.equal(flat(model), before)
    method = BUILDERS[name](model)
    with pytest.raises(ValueError, match="holds none of the model's parameters"):
        method.attach(torch.optim.SGD(other.parameters(), lr=0.1))


@pytest.mark.parametrize("name", ["GSGD", "GSpace"])
def test_gspace_methods_refuse_a_frozen_parameter(name: str) -> None:
    model = mlp()
    model[2].weight.requires_grad_(False)
    before = flat(model)
    with pytest.raises(ValueError, match=f"{name}: parameter '2.weight' is frozen"):
        BUILDERS[name](model, init="ones")
    assert torch.equal(flat(model), before)


def test_weight_fixing_with_a_frozen_parameter() -> None:
    """No gradient hook on a frozen parameter (it never has a gradient); the fixed entries of
    the others stay put while training."""
    model = mlp()
    model[2].weight.requires_grad_(False)
    wf = WeightFixing(model, SHAPE)
    frozen = model[2].weight.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    wf.attach(opt)
    fixed_before = {n: torch.take(dict(model.named_parameters())[n].detach(), i).clone()
                    for n, (i, _) in wf._fixed.items()}
    one_step(model, opt)
    assert torch.equal(model[2].weight, frozen)
    for n, (i, _) in wf._fixed.items():
        assert torch.equal(torch.take(dict(model.named_parameters())[n].detach(), i),
                           fixed_before[n])


def test_gsgd_step_without_gradients_does_nothing() -> None:
    model = mlp()
    opt = GSGD(model, SHAPE, lr=0.05, momentum=0.9, init="ones")
    one_step(model, opt)
    before = copy.deepcopy(model.state_dict())
    opt.zero_grad(set_to_none=True)
    assert opt.step() is None
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_enorm_attached_to_a_gspace_optimizer_of_another_model_is_refused() -> None:
    model, other = mlp(0), mlp(1)
    opt = GSpace(other, SHAPE, torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="ENorm: the optimizer was built on another model"):
        ENorm(model, SHAPE, optimizer=opt)
    ENorm(other, SHAPE, optimizer=opt)


@pytest.mark.parametrize("name", ["GSGD", "GSpace", "WeightFixing", "init_skeleton"])
@pytest.mark.parametrize("init", ["rescale", "keep"])
def test_non_finite_weights_are_named_before_anything_changes(name: str, init: str) -> None:
    """A NaN weight gave "log_scales holds NaN or infinite values" (a rescaling the user
    never asked for) or, with init='keep', an optimizer that stepped NaNs; the error now
    names the parameter, and the model is left as it was."""
    from pathcond import NonFiniteParameterError
    from pathcond.optim import init_skeleton

    model = mlp()
    with torch.no_grad():
        model[2].weight[1, 3] = float("nan")
    before = copy.deepcopy(model.state_dict())
    build = {"GSGD": lambda: GSGD(model, SHAPE, lr=0.1, init=init),
             "GSpace": lambda: GSpace(model, SHAPE, torch.optim.SGD, lr=0.1, init=init),
             "WeightFixing": lambda: WeightFixing(model, SHAPE, init=init),
             "init_skeleton": lambda: init_skeleton(model, SHAPE)}[name]
    with pytest.raises(NonFiniteParameterError, match="'2.weight' holds NaN or infinite"):
        build()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, equal_nan=True)

