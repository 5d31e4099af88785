"""Rescaling symmetry: apply_rescaling keeps the function (train and eval mode, BatchNorm
running statistics included), the path-lifting invariants, transforms magnitudes and
optimizer state as SPEC sections 2, 3 and 5 say, and leaves everything else alone."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from torch import nn

import pathcond
from pathcond import (
    NonFiniteParameterError,
    UnsupportedOptimizerError,
    apply_rescaling,
    parameter_log_scales,
    rescaling_graph,
)
from tests.bruteforce import Arch, archs, build
from tests.lifting.test_bruteforce import CASES, make

RTOL = 1e-10
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow])


def log_scales(graph, seed: int, std: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return std * torch.randn(graph.num_groups, generator=gen, dtype=torch.float64)


def batch(arch: Arch, seed: int, n: int = 6) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 17)
    return torch.randn((n, *arch.in_shape), generator=gen, dtype=torch.float64)


def assert_close_rel(got: torch.Tensor, want: torch.Tensor, rtol: float = RTOL) -> None:
    scale = max(float(want.abs().max()), 1e-300)
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale)


def assert_dicts_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor],
                       rtol: float = RTOL) -> None:
    """Entrywise, relative to the largest entry of all tensors: a gradient that is zero in
    exact arithmetic (a bias before a train-mode BatchNorm) carries only rounding noise."""
    assert got.keys() == want.keys()
    scale = max(max(float(w.abs().max()) for w in want.values()), 1e-300)
    for name, w in want.items():
        torch.testing.assert_close(got[name], w, rtol=rtol, atol=rtol * scale, msg=name)


def folded_log_scales(graph, u: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B u) for the lifting parameters (BatchNorm folded), keyed like path_magnitudes:
    weight u[row] - u[col], bias u[row]; built here from the graph's row/col groups (in the
    lifting layout, then laid out like the weight)."""
    ext = torch.cat([u, u.new_zeros(1)])
    out = {}
    for lay in graph.layers:
        rows = ext[lay.row_groups]
        cols = ext[lay.col_groups]
        extra = (1,) * (len(lay.weight_shape) - 2)
        w = rows.reshape(-1, 1, *extra) - cols.reshape(*cols.shape, *extra)
        out[lay.weight_name] = lay.to_native(w.expand(lay.lifting_shape))  # as the weight
        if lay.has_lifting_bias:
            out[lay.lifting_bias_name] = rows
    return out


def full_log_scales(model: nn.Module, graph, u: torch.Tensor) -> dict[str, torch.Tensor]:
    """parameter_log_scales expanded to every model parameter (0 where untouched)."""
    scales = parameter_log_scales(graph, u)
    return {n: (scales[n].expand_as(p) if n in scales else torch.zeros_like(p)).detach()
            for n, p in model.named_parameters()}


def buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.detach().clone() for n, b in model.named_buffers()}


# ----------------------------------------------------------------------- function invariance
@SETTINGS
@given(arch=archs(upsampling=True), seed=st.integers(0, 2**31 - 1))
def test_function_invariant_in_eval_mode(arch: Arch, seed: int) -> None:
    model = build(arch, seed).eval()
    ref = copy.deepcopy(model)
    graph = rescaling_graph(model, arch.in_shape)
    u = log_scales(graph, seed)
    x = batch(arch, seed)
    apply_rescaling(model, graph, u)
    assert not model.training and not any(m.training for m in model.modules())
    with torch.no_grad():
        assert_close_rel(model(x), ref(x))
    if graph.num_groups:
        moved = [n for (n, p), q in zip(model.named_parameters(), ref.parameters(), strict=True)
                 if not torch.equal(p, q)]
        assert moved, "a non-zero rescaling changed no parameter"
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), ref.buffers(), strict=True))


@SETTINGS
@given(arch=archs(upsampling=True), seed=st.integers(0, 2**31 - 1))
def test_function_invariant_in_train_mode(arch: Arch, seed: int) -> None:
    """Train mode: BatchNorm normalises by batch statistics and updates its running ones;
    outputs and updated running statistics must match the un-rescaled model's."""
    base = build(arch, seed)
    graph = rescaling_graph(base, arch.in_shape)
    u = log_scales(graph, seed)
    ref, model = copy.deepcopy(base).train(), copy.deepcopy(base).train()
    apply_rescaling(model, graph, u)
    assert model.training and all(m.training for m in model.modules())
    x = batch(arch, seed)
    with torch.no_grad():
        y_ref, y = ref(x), model(x)
    assert_close_rel(y, y_ref)
    for (name, b), b_ref in zip(model.named_buffers(), ref.buffers(), strict=True):
        if b.is_floating_point():
            assert_close_rel(b, b_ref)
        else:
            assert torch.equal(b, b_ref), name
    if arch.has_batchnorm:
        assert any(not torch.equal(b, b0) for b, b0 in zip(model.buffers(), base.buffers(),
                                                          strict=True))
    # and then in eval mode, with the running statistics both have updated
    ref.eval()
    model.eval()
    with torch.no_grad():
        assert_close_rel(model(x), ref(x))


def test_function_invariant_train_mode_batchnorm_mlp_regression() -> None:
    """SPEC section 2's failing case of the reference implementation:
    Linear -> BatchNorm1d -> ReLU nets, with large log-scales."""
    arch = Arch(kind="mlp", in_shape=(5,), widths=(8, 8, 8), bias=(False, False, False, True),
                batchnorm=(True, True, True), residual=(False, True, False))
    base = build(arch, 11)
    graph = rescaling_graph(base, arch.in_shape)
    u = log_scales(graph, 5, std=3.0)
    for mode in ("train", "eval"):
        ref, model = copy.deepcopy(base), copy.deepcopy(base)
        ref.train(mode == "train")
        model.train(mode == "train")
        apply_rescaling(model, graph, u)
        x = batch(arch, 3, n=16)
        with torch.no_grad():
            assert_close_rel(model(x), ref(x))
        for b, b_ref in zip(model.buffers(), ref.buffers(), strict=True):
            assert torch.equal(b, b_ref) if not b.is_floating_point() else True
            if b.is_floating_point():
                assert_close_rel(b, b_ref)


@pytest.mark.parametrize("name", sorted(CASES))
def test_function_invariant_on_fixed_structures(name: str) -> None:
    """The hand-written structures of the brute-force tests (residuals, input residual with a
    subtraction, channel and spatial concatenation, reshape into channels, mean across
    features, grouped convolution, pools, BatchNorm, two outputs), train and eval mode."""
    base, _ = make(name, seed=3)
    shape = CASES[name].input_shape
    graph = rescaling_graph(base, shape)
    assert graph.num_groups > 0
    u = log_scales(graph, 9, std=1.5)
    x = torch.randn((5, *shape), generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)
    for train in (False, True):
        ref, model = copy.deepcopy(base).train(train), copy.deepcopy(base).train(train)
        apply_rescaling(model, graph, u)
        with torch.no_grad():
            y_ref, y = ref(x), model(x)
        for a, b in zip(y if isinstance(y, tuple) else (y,),
                        y_ref if isinstance(y_ref, tuple) else (y_ref,), strict=True):
            assert_close_rel(a, b)
        for b, b_ref in zip(model.buffers(), ref.buffers(), strict=True):
            if b.is_floating_point():
                assert_close_rel(b, b_ref)
            else:
                assert torch.equal(b, b_ref)
        assert pathcond.path_norm(model, graph=graph) == pytest.approx(
            pathcond.path_norm(ref, graph=graph), rel=RTOL)


def test_mixed_training_flags_kept() -> None:
    arch = Arch(kind="conv", in_shape=(2, 5, 5), widths=(3, 2), bias=(True, False, True),
                batchnorm=(True, False), residual=(False, True), pool=("max", "none"),
                stride=(1, 2), head="adaptive")
    model = build(arch, 2).train()
    model.body["bn0"].eval()
    flags = {n: m.training for n, m in model.named_modules()}
    graph = rescaling_graph(model, arch.in_shape)
    apply_rescaling(model, graph, log_scales(graph, 1))
    assert {n: m.training for n, m in model.named_modules()} == flags


def test_zero_log_scales_change_nothing() -> None:
    arch = Arch(kind="mlp", in_shape=(4,), widths=(5, 3), bias=(True, True, True),
                batchnorm=(True, False), residual=(False, False))
    model = build(arch, 0)
    before = copy.deepcopy(model.state_dict())
    graph = rescaling_graph(model, arch.in_shape)
    apply_rescaling(model, graph, torch.zeros(graph.num_groups, dtype=torch.float64))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@SETTINGS
@given(arch=archs(upsampling=True), seed=st.integers(0, 2**31 - 1))
def test_rescalings_compose(arch: Arch, seed: int) -> None:
    """exp(B u2) exp(B u1) theta = exp(B (u1 + u2)) theta, and u then -u is the identity."""
    model = build(arch, seed)
    graph = rescaling_graph(model, arch.in_shape)
    u1, u2 = log_scales(graph, seed), log_scales(graph, seed + 1)
    a, b, c = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    apply_rescaling(a, graph, u1)
    apply_rescaling(a, graph, u2)
    apply_rescaling(b, graph, u1 + u2)
    apply_rescaling(c, graph, u1)
    apply_rescaling(c, graph, -u1)
    for (name, p), q, r, p0 in zip(a.named_parameters(), b.parameters(), c.parameters(),
                                   model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=0, msg=name)
        torch.testing.assert_close(r, p0, rtol=1e-13, atol=0, msg=name)


# --------------------------------------------------------------------- path-lifting quantities
@SETTINGS
@given(arch=archs(upsampling=True), seed=st.integers(0, 2**31 - 1))
def test_path_lifting_invariant(arch: Arch, seed: int) -> None:
    model = build(arch, seed)
    shape = arch.in_shape
    graph = rescaling_graph(model, shape)
    before = {p: pathcond.path_norm(model, shape, p=p) for p in (1, 2)}
    paths = pathcond.num_paths(model, shape)
    apply_rescaling(model, graph, log_scales(graph, seed))
    for p in (1, 2):
        assert pathcond.path_norm(model, shape, p=p) == pytest.approx(before[p], rel=RTOL)
    assert pathcond.num_paths(model, shape) == paths


@SETTINGS
@given(arch=archs(upsampling=True), seed=st.integers(0, 2**31 - 1))
def test_magnitudes_transform(arch: Arch, seed: int) -> None:
    """m' = m exp(-2 B u) (SPEC section 3), B of the lifting parameters (BatchNorm folded)."""
    model = build(arch, seed)
    graph = rescaling_graph(model, arch.in_shape)
    u = log_scales(graph, seed)
    m = pathcond.path_magnitudes(model, graph=graph)
    apply_rescaling(model, graph, u)
    m_new = pathcond.path_magnitudes(model, graph=graph)
    bu = folded_log_scales(graph, u)
    assert set(m) == set(m_new) == set(bu)
    for key in m:
        assert_close_rel(m_new[key], m[key] * torch.exp(-2.0 * bu[key]))


@SETTINGS
@given(arch=archs(allow_batchnorm=False, upsampling=True), seed=st.integers(0, 2**31 - 1))
def test_magnitudes_transform_plain_b(arch: Arch, seed: int) -> None:
    """Without BatchNorm, the exponent is exactly parameter_log_scales' B u."""
    model = build(arch, seed)
    graph = rescaling_graph(model, arch.in_shape)
    u = log_scales(graph, seed)
    m = pathcond.path_magnitudes(model, graph=graph)
    apply_rescaling(model, graph, u)
    m_new = pathcond.path_magnitudes(model, graph=graph)
    full = full_log_scales(model, graph, u)
    assert set(m) == set(full)
    for key in m:
        assert_close_rel(m_new[key], m[key] * torch.exp(-2.0 * full[key]))
        # B has entries -1, 0, +1 per group: |(Bu)_i| <= 2 max|u|
        assert float(full[key].abs().max()) <= 2 * float(u.abs().max()) + 1e-12


# ------------------------------------------------------------------------- optimizer state
def loss_fn(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(model(x), target)


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, x, target, steps: int) -> None:
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model, x, target).backward()
        opt.step()


def grads(model: nn.Module, x, target) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss_fn(model, x, target).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def state_of(model: nn.Module, opt: torch.optim.Optimizer, key: str) -> dict[str, torch.Tensor]:
    return {n: opt.state[p][key].detach().clone() for n, p in model.named_parameters()}


OPT_SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                        phases=[Phase.explicit, Phase.generate],
                        suppress_health_check=[HealthCheck.too_slow])


@OPT_SETTINGS
@given(arch=archs(upsampling=True), seed=st.integers(0, 2**31 - 1), train=st.booleans())
def test_gradients_transform_inversely(arch: Arch, seed: int, train: bool) -> None:
    """theta' = D theta gives grad' = D^-1 grad (the premise of SPEC section 5)."""
    base = build(arch, seed).train(train)
    graph = rescaling_graph(base, arch.in_shape)
    u = log_scales(graph, seed, std=0.5)
    x = batch(arch, seed)
    target = torch.randn_like(base(x)).detach()
    model = copy.deepcopy(base)
    g0 = grads(copy.deepcopy(base), x, target)
    apply_rescaling(model, graph, u)
    g1 = grads(model, x, target)
    full = full_log_scales(model, graph, u)
    assert_dicts_close(g1, {n: g * torch.exp(-full[n]) for n, g in g0.items()}, rtol=1e-9)


@OPT_SETTINGS
@given(arch=archs(upsampling=True), seed=st.integers(0, 2**31 - 1))
def test_sgd_momentum_state_transported(arch: Arch, seed: int) -> None:
    """Momentum buffers transform like gradients (D^-1), before and after a further step.
    (The SGD update itself is not equivariant, so the state is checked directly.)"""
    base = build(arch, seed).train()
    graph = rescaling_graph(base, arch.in_shape)
    x = batch(arch, seed)
    target = torch.randn_like(base(x)).detach()
    opt = torch.optim.SGD(base.parameters(), lr=1e-3, momentum=0.9)
    train_steps(base, opt, x, target, 2)
    ref, ref_opt = copy.deepcopy((base, opt))
    model, model_opt = copy.deepcopy((base, opt))
    u = log_scales(graph, seed, std=0.5)
    apply_rescaling(model, graph, u, optimizer=model_opt)
    full = full_log_scales(model, graph, u)
    buf0 = state_of(ref, ref_opt, "momentum_buffer")
    buf1 = state_of(model, model_opt, "momentum_buffer")
    assert_dicts_close(buf1, {n: b * torch.exp(-full[n]) for n, b in buf0.items()})
    # one more step on each: the new buffers (mu * buf + grad) keep the relation
    train_steps(ref, ref_opt, x, target, 1)
    train_steps(model, model_opt, x, target, 1)
    buf0 = state_of(ref, ref_opt, "momentum_buffer")
    buf1 = state_of(model, model_opt, "momentum_buffer")
    assert_dicts_close(buf1, {n: b * torch.exp(-full[n]) for n, b in buf0.items()}, rtol=1e-9)


@OPT_SETTINGS
@given(arch=archs(upsampling=True), seed=st.integers(0, 2**31 - 1), amsgrad=st.booleans())
def test_adam_state_transported(arch: Arch, seed: int, amsgrad: bool) -> None:
    """exp_avg by D^-1, exp_avg_sq (and max_exp_avg_sq) by D^-2; the step counter kept.
    Adam's update -lr m_hat / sqrt(v_hat) is then *invariant*: the step taken on the
    rescaled model equals the original model's step (eps negligible), and the state after
    it is again the transported state.

    Biases right before a BatchNorm are dropped: in train mode their gradient is zero up to
    rounding noise, which Adam would normalise into full-size steps of random sign."""
    arch = dataclasses.replace(arch, bias=tuple(
        b and not (i < len(arch.batchnorm) and arch.batchnorm[i])
        for i, b in enumerate(arch.bias)))
    base = build(arch, seed).train()
    graph = rescaling_graph(base, arch.in_shape)
    x = batch(arch, seed)
    target = torch.randn_like(base(x)).detach()
    opt = torch.optim.Adam(base.parameters(), lr=1e-3, eps=1e-300, amsgrad=amsgrad)
    train_steps(base, opt, x, target, 3)
    ref, ref_opt = copy.deepcopy((base, opt))
    model, model_opt = copy.deepcopy((base, opt))
    u = log_scales(graph, seed, std=0.5)
    apply_rescaling(model, graph, u, optimizer=model_opt)
    full = full_log_scales(model, graph, u)
    keys = {"exp_avg": -1.0, "exp_avg_sq": -2.0}
    if amsgrad:
        keys["max_exp_avg_sq"] = -2.0

    def check_state(rtol: float) -> None:
        for key, power in keys.items():
            s0, s1 = state_of(ref, ref_opt, key), state_of(model, model_opt, key)
            for name in s0:
                assert_close_rel(s1[name], s0[name] * torch.exp(power * full[name]), rtol=rtol)
        for p0, p1 in zip(ref.parameters(), model.parameters(), strict=True):
            assert float(ref_opt.state[p0]["step"]) == float(model_opt.state[p1]["step"])

    check_state(RTOL)
    before0 = {n: p.detach().clone() for n, p in ref.named_parameters()}
    before1 = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(ref, ref_opt, x, target, 1)
    train_steps(model, model_opt, x, target, 1)
    v = state_of(ref, ref_opt, "exp_avg_sq")
    v_max = max(float(t.max()) for t in v.values())
    for (name, p0), p1 in zip(ref.named_parameters(), model.parameters(), strict=True):
        step0 = p0.detach() - before0[name]
        step1 = p1.detach() - before1[name]
        live = v[name] > 1e-20 * v_max  # a dead unit's zero gradient becomes noise (~1e-17)
        torch.testing.assert_close(step1[live], step0[live], rtol=1e-7, atol=1e-12, msg=name)
    check_state(1e-9)


@pytest.mark.parametrize(("make_opt", "keys"), [
    (lambda ps: torch.optim.RMSprop(ps, lr=1e-3, momentum=0.9),
     {"square_avg": -2.0, "momentum_buffer": -1.0}),
    (lambda ps: torch.optim.Adagrad(ps, lr=1e-2), {"sum": -2.0}),
    (lambda ps: torch.optim.RMSprop(ps, lr=1e-3, centered=True),
     {"square_avg": -2.0, "grad_avg": -1.0}),
    (lambda ps: torch.optim.Adamax(ps, lr=1e-3), {"exp_avg": -1.0, "exp_inf": -1.0}),
    (lambda ps: torch.optim.Rprop(ps, lr=1e-3), {"prev": -1.0, "step_size": 1.0}),
    (lambda ps: torch.optim.Adadelta(ps, lr=1e-1), {"square_avg": -2.0, "acc_delta": 2.0}),
    (lambda ps: torch.optim.ASGD(ps, lr=1e-3), {"ax": 1.0}),
])
def test_other_optimizer_states_transported(make_opt, keys: dict[str, float]) -> None:
    arch = Arch(kind="conv", in_shape=(2, 4, 4), widths=(3, 2), bias=(False, True, True),
                batchnorm=(True, False), residual=(False, True), pool=("avg", "none"),
                stride=(1, 1), head="mean")
    base = build(arch, 5).train()
    graph = rescaling_graph(base, arch.in_shape)
    x = batch(arch, 5)
    target = torch.randn_like(base(x)).detach()
    opt = make_opt(base.parameters())
    train_steps(base, opt, x, target, 2)
    model, model_opt = copy.deepcopy((base, opt))
    u = log_scales(graph, 6)
    apply_rescaling(model, graph, u, optimizer=model_opt)
    full = full_log_scales(model, graph, u)
    for key, power in keys.items():
        s0, s1 = state_of(base, opt, key), state_of(model, model_opt, key)
        for name in s0:
            assert_close_rel(s1[name], s0[name] * torch.exp(power * full[name]))


def test_unsupported_optimizer_state_changes_nothing() -> None:
    """L-BFGS keeps a flat history no rescaling can transport: the error is raised before
    the model or the state is touched."""
    arch = Arch(kind="mlp", in_shape=(3,), widths=(4,), bias=(True, True), batchnorm=(False,),
                residual=(False,))
    model = build(arch, 2)
    graph = rescaling_graph(model, arch.in_shape)
    x = batch(arch, 2)
    target = torch.randn_like(model(x)).detach()
    opt = torch.optim.LBFGS(model.parameters(), lr=1e-2)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        return loss

    opt.step(closure)
    before = copy.deepcopy((model.state_dict(), opt.state_dict()))
    with pytest.raises(UnsupportedOptimizerError, match="LBFGS keeps state '.*' that "
                                                        "pathcond does not know how to rescale"):
        apply_rescaling(model, graph, log_scales(graph, 2), optimizer=opt)
    params, state = before
    for name, value in model.state_dict().items():
        assert torch.equal(value, params[name])

    def same(a: object, b: object) -> bool:
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            return torch.equal(a, b)
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return a == b

    for key, value in opt.state_dict()["state"][0].items():
        assert same(value, state["state"][0][key]), key


def test_flat_optimizer_state_under_another_parameter_is_refused() -> None:
    """L-BFGS keeps its flat history under its *first* parameter: when that parameter is
    outside the rescaling graph, the history (which covers the rescaled weights) was left
    stale without a word, contrary to the README ("L-BFGS is refused before anything
    changes")."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    extra = nn.Parameter(torch.zeros(2))
    x = torch.randn(8, 4)
    opt = torch.optim.LBFGS([extra, *model.parameters()])

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((model(x) + extra) ** 2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(UnsupportedOptimizerError, match="LBFGS keeps state '.*' of shape"):
        pathcond.rescale(model, (4,), optimizer=opt)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])
    # per-entry state of a parameter outside the graph (Adam's moments) is fine
    adam = torch.optim.Adam([extra, *model.parameters()], lr=1e-3)
    ((model(x) + extra) ** 2).mean().backward()
    adam.step()
    assert pathcond.rescale(model, (4,), optimizer=adam).converged


def test_non_affine_batchnorm() -> None:
    """Linear -> BatchNorm1d(affine=False) -> ReLU: the unit cannot be rescaled (nothing
    carries its scale), but the rest of the network can, and apply_rescaling must work."""
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4, affine=False),
                          nn.ReLU(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    graph = rescaling_graph(model, (3,))
    assert graph.layers[0].row_groups.tolist() == [-1] * 4
    assert graph.num_groups == 5
    ref = copy.deepcopy(model).eval()
    model.eval()
    apply_rescaling(model, graph, log_scales(graph, 0))
    x = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        assert_close_rel(model(x), ref(x))


def test_optimizer_without_state_is_fine() -> None:
    arch = Arch(kind="mlp", in_shape=(3,), widths=(4,), bias=(True, True), batchnorm=(False,),
                residual=(False,))
    model = build(arch, 0)
    opt = torch.optim.Adam(model.parameters())
    graph = rescaling_graph(model, arch.in_shape)
    apply_rescaling(model, graph, log_scales(graph, 0), optimizer=opt)
    assert not opt.state


def test_sgd_without_momentum_and_params_outside_the_graph() -> None:
    """Parameters the rescaling does not touch (e.g. a pre-BatchNorm bias) keep their state."""
    arch = Arch(kind="mlp", in_shape=(3,), widths=(4, 4), bias=(True, True, True),
                batchnorm=(True, False), residual=(False, False))
    model = build(arch, 1).train()
    graph = rescaling_graph(model, arch.in_shape)
    x = batch(arch, 1)
    target = torch.zeros(6, 2, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.5)
    train_steps(model, opt, x, target, 1)
    pre_bn_bias = model.body["l0"].bias
    kept = opt.state[pre_bn_bias]["momentum_buffer"].clone()
    apply_rescaling(model, graph, log_scales(graph, 2), optimizer=opt)
    assert torch.equal(opt.state[pre_bn_bias]["momentum_buffer"], kept)


# --------------------------------------------------------------------------- non-finite input
def nan_model(where: str, value: float = math.nan) -> tuple[nn.Module, Arch]:
    arch = Arch(kind="conv", in_shape=(2, 4, 4), widths=(2, 2), bias=(True, False, True),
                batchnorm=(False, True), residual=(False, False), pool=("none", "max"),
                stride=(1, 1), head="flatten")
    model = build(arch, 0)
    with torch.no_grad():
        if where == "weight":
            model.body["l0"].weight[0, 0, 0, 0] = value
        elif where == "bias":
            model.body["out"].bias[1] = value
        elif where == "running_var":
            model.body["bn1"].running_var[0] = value
        elif where == "bn_weight":
            model.body["bn1"].weight[1] = value
    return model, arch


@pytest.mark.parametrize("where", ["weight", "bias", "running_var", "bn_weight"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_parameters_raise(where: str, value: float) -> None:
    model, arch = nan_model(where, value)
    with pytest.raises(NonFiniteParameterError):
        pathcond.path_norm(model, arch.in_shape)
    with pytest.raises(NonFiniteParameterError):
        pathcond.path_norm(model, arch.in_shape, p=1)
    with pytest.raises(NonFiniteParameterError):
        pathcond.path_magnitudes(model, arch.in_shape)
    assert issubclass(NonFiniteParameterError, pathcond.PathcondError)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_log_scales_raise_and_change_nothing(value: float) -> None:
    model, arch = nan_model("none")
    graph = rescaling_graph(model, arch.in_shape)
    before = copy.deepcopy(model.state_dict())
    u = torch.zeros(graph.num_groups, dtype=torch.float64)
    u[-1] = value
    with pytest.raises(NonFiniteParameterError):
        apply_rescaling(model, graph, u)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---------------------------------------------------------------- the user's model untouched
def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "dtypes": {k: v.dtype for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone()
                  for n, p in model.named_parameters()},
        "ids": {n: id(p) for n, p in model.named_parameters()},
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["training"] == b["training"]
    assert a["requires_grad"] == b["requires_grad"]
    assert a["dtypes"] == b["dtypes"]
    assert a["ids"] == b["ids"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    for k, g in a["grads"].items():
        assert (g is None) == (b["grads"][k] is None), k
        if g is not None:
            assert torch.equal(g, b["grads"][k]), k


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quantities_leave_the_model_untouched(dtype: torch.dtype) -> None:
    arch = Arch(kind="conv", in_shape=(2, 5, 5), widths=(3, 2), bias=(True, False, True),
                batchnorm=(True, True), residual=(False, True), pool=("avg", "none"),
                stride=(1, 1), head="mean")
    model = build(arch, 4).to(dtype).train()
    model.body["bn1"].eval()
    model.body["l1"].weight.requires_grad_(False)
    x = torch.randn((4, *arch.in_shape), dtype=dtype)
    model(x).sum().backward()  # grads present, running statistics moved once
    before = snapshot(model)
    shape = arch.in_shape
    pathcond.check_support(model, shape)
    graph = pathcond.rescaling_graph(model, shape)
    assert_same(before, snapshot(model))
    for p in (1, 2):
        pathcond.path_norm(model, shape, p=p)
        pathcond.path_norm(model, graph=graph, p=p, log=True)
    pathcond.num_paths(model, shape)
    pathcond.num_paths(model, shape, log=True)
    mags = pathcond.path_magnitudes(model, shape)
    assert all(m.dtype == torch.float64 for m in mags.values())
    assert_same(before, snapshot(model))


def test_channels_last_weights_and_momentum_keep_their_memory_format() -> None:
    """Rescaling writes in place: a channels_last network (and its SGD momentum) stays
    channels_last, and computes the same function."""
    from pathcond.models import tiny_resnet

    torch.manual_seed(0)
    model = tiny_resnet().double().to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(x).square().mean().backward()
    opt.step()
    model.eval()
    before = model(x)
    report = pathcond.rescale(model, (3, 16, 16), optimizer=opt)
    assert report.am_gm_after < report.am_gm_before
    torch.testing.assert_close(model(x), before, rtol=1e-9, atol=1e-12)
    for p in model.parameters():
        if p.dim() == 4:
            assert p.is_contiguous(memory_format=torch.channels_last)
            assert opt.state[p]["momentum_buffer"].is_contiguous(
                memory_format=torch.channels_last)
