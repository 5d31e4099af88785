"""PathCond: the criterion, its three solvers and rescale() (SPEC section 4)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

import pathcond
from pathcond.models import cifar_resnet
from pathcond.rescale import build_problem
from pathcond.solver import solve_block, solve_coordinate, solve_newton

SOLVERS = {"newton": solve_newton, "block": solve_block, "coordinate": solve_coordinate}


class ResidualBN(nn.Module):
    """Conv -> BN -> ReLU, a residual block with BatchNorm, max-pool, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(4)
        self.conv1 = nn.Conv2d(4, 3, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        y = self.conv2(torch.relu(self.bn1(self.conv1(x))))
        x = torch.relu(x + y)
        return self.head(torch.flatten(self.pool(x), 1))


def conv_pool_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, padding=1),
        nn.Conv2d(3, 5, 2), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(5, 2))


class TinyUNet(nn.Module):
    """An encoder-decoder: a strided convolution, a grouped transposed convolution with
    BatchNorm, a bilinear upsampling, a skip connection by concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2, groups=2, bias=False)
        self.bn_up = nn.BatchNorm2d(4)
        self.lift = nn.Upsample(scale_factor=2, mode="bilinear")
        self.head = nn.Conv2d(8, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = torch.relu(self.enc(x))                              # (4, 4, 4)
        h = torch.relu(self.bn(self.down(skip)))                    # (4, 2, 2)
        h = torch.relu(self.bn_up(self.up(h)))                      # (4, 4, 4)
        return self.head(self.lift(torch.cat([h, skip], 1)))        # (2, 8, 8)


def mlp(widths: list[int], bias: bool = True) -> nn.Module:
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1], bias=bias))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


CASES = {
    "mlp": (lambda: mlp([5, 9, 3, 7, 4]), (5,)),
    "mlp_nobias": (lambda: mlp([6, 4, 8, 3], bias=False), (6,)),
    "conv_pool": (conv_pool_net, (1, 6, 6)),
    "residual_bn": (ResidualBN, (2, 6, 6)),
    # option-A shortcuts: strided slices and zero-padded channels tie across stages
    "cifar_resnet": (lambda: cifar_resnet(8, 3, 2, widths=(2, 3, 5)), (2, 8, 8)),
    "unet": (TinyUNet, (2, 8, 8)),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    factory, shape = CASES[name]
    model = factory().double()
    # non-trivial BatchNorm statistics and affine parameters
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model, shape


def random_rescale(model: nn.Module, shape: tuple[int, ...], seed: int) -> None:
    graph = pathcond.rescaling_graph(model, shape)
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(graph.num_groups, generator=gen, dtype=torch.float64)
    pathcond.apply_rescaling(model, graph, u)


@pytest.mark.parametrize("name", list(CASES))
def test_solvers_reach_scipy_minimum(name: str) -> None:
    model, shape = build(name)
    graph = pathcond.rescaling_graph(model, shape)
    problem = build_problem(model, graph)

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = problem.criterion(torch.from_numpy(x))
        return float(value), grad.numpy()

    ref = scipy.optimize.minimize(fun, np.zeros(graph.num_groups), jac=True, method="L-BFGS-B",
                                  options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-11})
    for solver in SOLVERS.values():
        result = solver(problem, tol=None, step_tol=1e-12, max_sweeps=5000)
        assert result.converged
        value = problem.value(result.log_scales)
        assert value <= ref.fun + 1e-8 * abs(ref.fun)
        assert abs(value - ref.fun) <= 1e-8 * abs(ref.fun)
        np.testing.assert_allclose(result.log_scales.numpy(), ref.x, atol=1e-4)


@pytest.mark.parametrize("name", list(CASES))
def test_solvers_agree_and_decrease_monotonically(name: str) -> None:
    model, shape = build(name, seed=1)
    problem = build_problem(model, pathcond.rescaling_graph(model, shape))
    results = {k: s(problem, tol=None, step_tol=1e-13, max_sweeps=5000)
               for k, s in SOLVERS.items()}
    for result in results.values():
        history = np.array(result.history)
        assert np.all(np.diff(history) <= 1e-13 * np.abs(history[1:]))
    reference = results["newton"].log_scales
    for result in results.values():
        assert float((result.log_scales - reference).abs().max()) < 1e-8


def test_gradient_matches_autograd() -> None:
    model, shape = build("residual_bn")
    problem = build_problem(model, pathcond.rescaling_graph(model, shape))
    u = torch.randn(problem.num_groups, dtype=torch.float64, requires_grad=True)
    total = problem.group_sums(u).total
    value = problem.num_parameters * torch.log(total) + 2.0 * (problem.imbalance * u).sum()
    (auto,) = torch.autograd.grad(value, u)
    _, grad = problem.criterion(u.detach())
    torch.testing.assert_close(grad, auto, rtol=1e-10, atol=1e-10)
    curv = problem.curvature(u.detach())
    v = torch.randn_like(grad)
    eps = 1e-6
    _, g_plus = problem.criterion(u.detach() + eps * v)
    _, g_minus = problem.criterion(u.detach() - eps * v)
    torch.testing.assert_close(curv.hessian_vector(v), (g_plus - g_minus) / (2 * eps),
                               rtol=1e-5, atol=1e-6)


def test_constant_diagonal_gives_zero_log_scales() -> None:
    """Prop. J.1: with all path magnitudes equal, u = 0 is the minimiser."""
    model = mlp([3, 5, 3], bias=False).double()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.where(torch.rand(p.shape, generator=gen) < 0.5, -1.0, 1.0))
    mags = pathcond.path_magnitudes(model, (3,))
    values = torch.cat([m.flatten() for m in mags.values()])
    assert torch.allclose(values, values[0].expand_as(values))
    before = [p.clone() for p in model.parameters()]
    report = pathcond.rescale(model, (3,))
    assert report.converged
    assert float(report.log_scales.abs().max()) == pytest.approx(0.0, abs=1e-12)
    assert report.am_gm_after == pytest.approx(1.0, abs=1e-12)
    for p, q in zip(model.parameters(), before, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["mlp", "conv_pool", "residual_bn"])
@pytest.mark.parametrize("solver", ["newton", "block"])
def test_canonical_form(name: str, solver: str) -> None:
    """Rescaling-equivalent inputs end at the same parameters."""
    model, shape = build(name, seed=2)
    other = copy.deepcopy(model)
    random_rescale(other, shape, seed=5)
    assert any(not torch.allclose(p, q) for p, q in zip(model.parameters(), other.parameters(),
                                                         strict=True))
    for net in (model, other):
        report = pathcond.rescale(net, shape, solver=solver, tol=None, step_tol=1e-12)  # type: ignore[arg-type]
        assert report.converged
    for (name_p, p), q in zip(model.named_parameters(), other.parameters(), strict=True):
        rel = float((p - q).detach().norm() / p.detach().norm())
        assert rel < 1e-8, name_p


@pytest.mark.parametrize("name", list(CASES))
def test_rescale_preserves_function_mode_and_dtype(name: str) -> None:
    model, shape = build(name, seed=4)
    model = model.float()
    model.train()
    x = torch.randn(5, *shape)
    with torch.no_grad():
        train_ref = copy.deepcopy(model)(x)
        eval_ref = copy.deepcopy(model).eval()(x)
    report = pathcond.rescale(model, shape)
    assert report.converged
    assert model.training
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    with torch.no_grad():
        torch.testing.assert_close(copy.deepcopy(model)(x), train_ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(copy.deepcopy(model).eval()(x), eval_ref, rtol=1e-4,
                                   atol=1e-5)
    assert report.am_gm_after <= report.am_gm_before
    assert report.criterion_after <= report.criterion_before


def test_report_fields_and_tolerance() -> None:
    model, shape = build("mlp")
    loose = pathcond.rescale(copy.deepcopy(model), shape, tol=1e-3)
    tight = pathcond.rescale(copy.deepcopy(model), shape, tol=None, step_tol=1e-12)
    assert loose.sweeps <= tight.sweeps
    assert tight.history[0] == pytest.approx(tight.criterion_before)
    assert tight.history[-1] == pytest.approx(tight.criterion_after)
    assert tight.log_scales.shape == (pathcond.rescaling_graph(model, shape).num_groups,)
    assert "converged" in str(tight)
    capped = pathcond.rescale(copy.deepcopy(model), shape, solver="block", tol=None,
                              step_tol=0.0, max_sweeps=2)
    assert not capped.converged and capped.sweeps == 2


def test_dead_units_are_reported_and_left_alone() -> None:
    model = mlp([4, 6, 5, 3]).double()
    torch.manual_seed(0)
    with torch.no_grad():
        model[0].weight[2].zero_()
        model[0].bias[2] = 0.0
        model[2].weight[:, 4].zero_()  # unit 4 of layer 2 has no incoming path magnitude
        model[4].weight[:, 1].zero_()  # unit 1 of layer 3 has no outgoing path magnitude
    x = torch.randn(7, 4, dtype=torch.float64)
    before = model(x)
    for solver in ("newton", "block", "coordinate"):
        net = copy.deepcopy(model)
        report = pathcond.rescale(net, (4,), solver=solver)  # type: ignore[arg-type]
        names = {d.name for d in report.dead_groups}
        assert "0[2]" in names and "4[1]" not in names
        assert "2[1]" in names
        assert all(torch.isfinite(p).all() for p in net.parameters())
        assert torch.isfinite(report.log_scales).all()
        for d in report.dead_groups:
            assert report.log_scales[d.index] == 0.0
            assert d.reason
        torch.testing.assert_close(net(x), before, rtol=1e-10, atol=1e-12)


def test_non_finite_parameters_raise() -> None:
    model = mlp([3, 4, 2]).double()
    with torch.no_grad():
        model[0].weight[1, 1] = float("nan")
    with pytest.raises(pathcond.NonFiniteParameterError, match=r"0\.weight"):
        pathcond.rescale(model, (3,))
    with torch.no_grad():
        model[0].weight[1, 1] = float("inf")
    with pytest.raises(pathcond.NonFiniteParameterError):
        pathcond.rescale(model, (3,))


def test_bad_arguments() -> None:
    model = mlp([3, 4, 2])
    with pytest.raises(ValueError, match="solver"):
        pathcond.rescale(model, (3,), solver="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_sweeps"):
        pathcond.rescale(model, (3,), max_sweeps=0)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_optimizer_state_is_transported(kind: str) -> None:
    model, shape = build("mlp", seed=6)
    if kind == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(16, *shape, dtype=torch.float64)
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    old_state = {n: {k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)}
                 for n, p in model.named_parameters()}
    graph = pathcond.rescaling_graph(model, shape)
    report = pathcond.rescale(model, shape, optimizer=opt, graph=graph)
    scales = pathcond.parameter_log_scales(graph, report.log_scales)
    powers = {"momentum_buffer": -1.0, "exp_avg": -1.0, "exp_avg_sq": -2.0}
    for n, p in model.named_parameters():
        for key, old in old_state[n].items():
            if key == "step":
                continue
            expected = old * torch.exp(powers[key] * scales[n])
            torch.testing.assert_close(opt.state[p][key], expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("tiny", [1e-100, 1e-150])
@pytest.mark.parametrize("solver", ["newton", "block"])
def test_parameters_spanning_float64_stay_finite(tiny: float, solver: str) -> None:
    """A unit whose incoming weights are tiny: its activations are denormal in float64 and
    the next layer's bias is 2**1000 times larger. Magnitudes, log-scales and the model
    must stay finite and the function unchanged (regression: NaN log-scales, inf
    magnitudes from scaling a bias by 2**1062)."""
    torch.manual_seed(0)
    model = mlp([4, 1, 5, 2]).double()
    with torch.no_grad():
        model[0].weight.mul_(tiny)
        model[0].bias.mul_(tiny)
    mags = pathcond.path_magnitudes(model, (4,))
    assert all(torch.isfinite(m).all() for m in mags.values())
    assert float(mags["2.bias"].min()) > 0
    x = torch.randn(6, 4, dtype=torch.float64)
    before = model(x)
    report = pathcond.rescale(model, (4,), solver=solver)  # type: ignore[arg-type]
    assert report.converged
    assert torch.isfinite(report.log_scales).all()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    torch.testing.assert_close(model(x), before, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("tiny", [1e-170, 1e-200])
def test_magnitudes_below_float64_are_an_error_not_a_wrong_minimum(tiny: float) -> None:
    """Weights of 1e-200 give path magnitudes of 1e-400, which float64 cannot hold: the
    solver would minimise a criterion missing those paths, so rescale refuses (the model
    untouched) rather than report a converged wrong minimum."""
    torch.manual_seed(0)
    model = mlp([4, 1, 5, 2]).double()
    with torch.no_grad():
        model[0].weight.mul_(tiny)
        model[0].bias.mul_(tiny)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(pathcond.NonFiniteParameterError, match="underflow torch.float64"):
        pathcond.rescale(model, (4,))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


class ConcatGrouped(nn.Module):
    """A grouped convolution (non-dense reduced layer) and a concatenation, so that one
    dense layer reads units of two aggregates."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1)
        self.b = nn.Conv2d(2, 4, 1)
        self.g = nn.Conv2d(4, 6, 3, padding=1, groups=2)
        self.mix = nn.Conv2d(10, 3, 1)
        self.head = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.a(x))
        y = torch.cat([torch.relu(self.g(a)), torch.relu(self.b(x))], dim=1)
        return self.head(torch.flatten(torch.relu(self.mix(y)), 1))


def _dead_mlp() -> nn.Module:
    model = mlp([4, 6, 5, 3])
    with torch.no_grad():
        model[0].weight[2].zero_()
        model[0].bias[2] = 0.0
    return model


@pytest.mark.parametrize("name", [*CASES, "concat_grouped", "dead_unit"])
def test_coarse_hessian_is_the_galerkin_projection(name: str) -> None:
    """Curvature.coarse equals R H R^T, R the 0/1 aggregation matrix of the live groups
    (checked against Hessian-vector products on the aggregates' indicator vectors)."""
    if name == "concat_grouped":
        torch.manual_seed(1)
        model, shape = ConcatGrouped().double(), (2, 4, 4)
    elif name == "dead_unit":
        torch.manual_seed(2)
        model, shape = _dead_mlp().double(), (4,)
    else:
        model, shape = build(name)
    problem = build_problem(model, pathcond.rescaling_graph(model, shape))
    if name == "concat_grouped":
        assert any(not blk.dense for blk in problem.layers)
        assert any(c.onehot is not None for c in problem.coarse_layers)
    if name == "dead_unit":
        assert bool(problem.dead.any())
    k, h = problem.num_aggregates, problem.num_groups
    assert k >= 1
    agg = problem.aggregates[:h]
    assert bool((agg[problem.dead] == k).all()) and bool((agg[~problem.dead] < k).all())
    u = 0.3 * torch.randn(h, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    curv = problem.curvature(u)
    alive = (~problem.dead).to(torch.float64)
    indicators = torch.stack([(agg == a).to(torch.float64) * alive for a in range(k)], dim=1)
    hr = torch.stack([curv.hessian_vector(indicators[:, a]) for a in range(k)], dim=1)
    torch.testing.assert_close(curv.coarse, indicators.t() @ hr, rtol=1e-10, atol=1e-12)
    evaluation = problem.evaluate(u)  # reused sums give the same curvature
    again = problem.curvature(u, evaluation)
    torch.testing.assert_close(again.gradient, curv.gradient, rtol=0, atol=0)
    torch.testing.assert_close(again.coarse, curv.coarse, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["concat_grouped", "dead_unit"])
def test_newton_matches_block_on_mixed_aggregates(name: str) -> None:
    if name == "concat_grouped":
        torch.manual_seed(1)
        model, shape = ConcatGrouped().double(), (2, 4, 4)
    else:
        torch.manual_seed(2)
        model, shape = _dead_mlp().double(), (4,)
    problem = build_problem(model, pathcond.rescaling_graph(model, shape))
    newton = solve_newton(problem, tol=None, step_tol=1e-13, max_sweeps=200)
    block = solve_block(problem, tol=None, step_tol=1e-13, max_sweeps=20000)
    assert newton.converged and block.converged
    assert float((newton.log_scales - block.log_scales).abs().max()) < 1e-8
