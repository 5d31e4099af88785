"""The minimal loop's PathCond options: ``solve`` passes solver settings to the rescaling."""

from __future__ import annotations

import pytest
import torch

from pathcond import rescale
from pathcond.errors import ConfigError
from pathcond.experiments._train import (
    MINIMAL_METHOD_OPTIONS,
    check_minimal_method,
    reference_bn_pathcond,
    solve_options,
)
from pathcond.models import mlp_bn


def test_solve_options_are_rescale_keywords() -> None:
    opts = solve_options({"name": "pathcond", "solve": {"solver": "coordinate", "max_sweeps": 10,
                                                        "tol": None, "step_tol": 0.01}})
    assert opts == {"solver": "coordinate", "max_sweeps": 10, "tol": None, "step_tol": 0.01}
    assert solve_options({"name": "pathcond"}) == {}


@pytest.mark.parametrize(("solve", "message"), [
    ({"sweeps": 3}, "unknown solve option 'sweeps'"),
    ({"solver": "lbfgs"}, "solve.solver must be one of"),
    ({"max_sweeps": 2.5}, "solve.max_sweeps must be an integer"),
    ({"max_sweeps": 0}, "max_sweeps >= 1"),
    ({"tol": -1.0}, "finite tol"),
    ({"step_tol": "small"}, "solve.step_tol must be a number"),
    ("coordinate", "solve must be a mapping"),
    ([], "solve must be a mapping"),
    (False, "solve must be a mapping"),
])
def test_bad_solve_options_are_config_errors(solve: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        solve_options({"name": "pathcond", "solve": solve})


def test_reference_emulation_with_the_published_sweeps_stops_early() -> None:
    """Ten coordinate sweeps leave the criterion above the converged solve's, with smaller
    log-scales, on the same net (the deep-net case of the Fig 2 investigation)."""
    def net() -> torch.nn.Module:
        torch.manual_seed(0)
        return mlp_bn(6, width=24, in_features=20)

    converged = reference_bn_pathcond(net())
    capped = reference_bn_pathcond(net(), solve=solve_options(
        {"solve": {"solver": "coordinate", "max_sweeps": 10, "tol": None, "step_tol": 1e-2}}))
    assert converged["converged"] and not capped["converged"]
    assert capped["sweeps"] == 10
    assert capped["am_gm_after"] > converged["am_gm_after"] * (1 + 1e-6)
    assert capped["u_inf"] < converged["u_inf"]


def test_reference_emulation_solves_the_net_without_batchnorm() -> None:
    """Its log-scales are PathCond's on the same MLP with the BatchNorm layers removed, so
    its AM/GM after equals that of rescaling that plain MLP directly."""
    from pathcond.models import MLP

    torch.manual_seed(1)
    model = mlp_bn(3, width=16, in_features=12)
    linears = [m for m in model.layers if isinstance(m, torch.nn.Linear)]
    plain = MLP(list(model.widths), bias=False, output_bias=True, batchnorm=False).double()
    with torch.no_grad():
        for a, b in zip([m for m in plain.layers if isinstance(m, torch.nn.Linear)], linears,
                        strict=True):
            a.weight.copy_(b.weight)
            if a.bias is not None and b.bias is not None:
                a.bias.copy_(b.bias)
    direct = rescale(plain, (12,))
    info = reference_bn_pathcond(model)
    assert info["am_gm_after"] == pytest.approx(direct.am_gm_after, rel=1e-9)
    assert info["function_preserving"] is False


@pytest.mark.parametrize(("method", "message"), [
    ({"name": "enorm", "every_epochs": 1}, "has no option 'every_epochs'.*counts steps"),
    ({"name": "pathcond", "calibrate_nb": 40}, "has no option 'calibrate_nb'"),
    ({"name": "pathcond", "bn": "ignore"}, "bn must be 'reference'"),
    ({"name": "pathcond", "solve": {"solver": "lbfgs"}}, "solve.solver"),
    ({"name": "adamw"}, "unknown method 'adamw'"),
    ({"name": "pathcond", "bn": "reference", "calibrate_bn": 40}, "calibrate_bn has no effect"),
    ({"name": "weightfix", "value": 2.0, "init": "keep"}, "init has no effect"),
    ({"name": "baseline", "skeleton": {"valu": 2.0}}, "skeleton must be a mapping of value"),
])
def test_minimal_loop_refuses_options_it_would_ignore(method: dict[str, object],
                                                      message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_minimal_method(method)


def test_every_method_of_the_experiments_passes_the_check() -> None:
    """The method mappings the configs and catalogues hand to the minimal loop."""
    from pathcond.experiments import experiment_config
    from pathcond.experiments.thesis import METHOD_SPECS

    for _, _, minimal in METHOD_SPECS.values():
        if minimal is not None:
            check_minimal_method(minimal)
    info = experiment_config("fig2_bn")
    for scale in ("smoke", "cpu", "full"):
        for variant in info.params(scale)["variants"].values():
            check_minimal_method({k: v for k, v in variant.items() if k != "batchnorm"})
    from pathcond.experiments.fig3_cifar_nv import _methods

    for name in ("fig3", "app_l"):
        for scale in ("smoke", "cpu"):  # the narrow model: the minimal loop
            params = experiment_config(name).params(scale)
            assert params["model"] == "narrow"
            for _, method in _methods(params):
                check_minimal_method(method)
    check_minimal_method({"name": "weightfix", "value": 2.0, "skeleton": {"value": 1.0}})
    assert set(MINIMAL_METHOD_OPTIONS) == {"baseline", "pathcond", "enorm", "weightfix",
                                           "gspace"}
