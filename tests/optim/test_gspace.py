"""G-SGD and the G-space wrapper: the basis-path coordinates of the thesis (section 2) on a
tiny network by explicit path enumeration, the inverse chain rule on random architectures,
rescaling invariance of the trajectories, state kept across steps and checkpoints."""

from __future__ import annotations

import copy
import itertools
import warnings

import pytest
import torch
from hypothesis import given
from torch import nn

import pathcond
from pathcond import PathcondError, UnsupportedModelError
from pathcond.models import MLP, tiny_resnet
from pathcond.optim import GSGD, GSpace
from tests.bruteforce import archs, build

from .helpers import SETTINGS, assert_same_function, batches, mse_steps, rescaled, train


def tiny_mlp(widths=(3, 3, 3, 2), bias=False, seed=0) -> MLP:
    torch.manual_seed(seed)
    return MLP(list(widths), bias=bias).double()


def entry_sets(model: nn.Module, gs: GSpace) -> tuple[set, set]:
    """(fixed entries, root entries) as {(param name, flat index)}."""
    e = gs.engine
    slots = gs.structure.slots
    fixed = {(slots[int(s)].name, int(i)) for s, i in zip(e.fixed.slot, e.fixed.index,
                                                        strict=True)}
    roots = {(slots[int(s)].name, int(i)) for s, i in zip(e.up.root_slot, e.up.root_index,
                                                        strict=True)}
    return fixed, roots


def mlp_paths(model: MLP):
    """Every input-to-output path of a bias-free MLP as a tuple of (name, flat index)."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    widths = [linears[0][1].in_features] + [m.out_features for _, m in linears]
    for units in itertools.product(*[range(w) for w in widths]):
        yield tuple((f"{name}.weight", units[i + 1] * widths[i] + units[i])
                    for i, (name, _) in enumerate(linears))


def test_thesis_skeleton_on_equal_widths():
    """Equal hidden widths, no bias: roots are the first-layer diagonal (w_j), fixed
    entries the diagonals of the next layers and W_L[j mod out, j] (thesis Algorithm 1)."""
    model = tiny_mlp((3, 3, 3, 2))
    gs = GSpace(model, (3,), torch.optim.SGD, lr=0.1)
    fixed, roots = entry_sets(model, gs)
    assert roots == {("layers.0.weight", 4 * j) for j in range(3)}
    assert fixed == {("layers.2.weight", 4 * j) for j in range(3)} | {
        ("layers.4.weight", (j % 2) * 3 + j) for j in range(3)}
    params = dict(model.named_parameters())
    for name, index in fixed:  # set to one, sign kept
        assert abs(float(params[name].detach().view(-1)[index])) == pytest.approx(1.0, abs=1e-15)


def test_basis_paths_explicit():
    """Thesis section 2 by brute force on a 3-3-3-2 network: the basis paths are the paths
    with at most one non-skeleton weight, there are m - H of them and they are independent;
    G-space values are their values; one G-space SGD step moves them by -lr dL/dv with dL/dv
    from the inverse chain rule dL/dw = sum_p dL/dv_p dv_p/dw; the fixed weights stay."""
    model = tiny_mlp((3, 3, 3, 2), seed=3)
    shape = (3,)
    gs = GSpace(model, shape, torch.optim.SGD, lr=0.05)
    fixed, roots = entry_sets(model, gs)
    skeleton = fixed | roots
    params = dict(model.named_parameters())
    names = [n for n, _ in model.named_parameters()]
    free = [(n, i) for n in names for i in range(params[n].numel()) if (n, i) not in fixed]
    m, h = sum(p.numel() for p in params.values()), 6
    basis = [p for p in mlp_paths(model) if sum(e not in skeleton for e in p) <= 1]
    assert len(basis) == m - h == len(free)
    incidence = torch.tensor([[float(e in p) for e in free] for p in basis])
    assert int(torch.linalg.matrix_rank(incidence)) == m - h

    def path_values(flat: torch.Tensor) -> torch.Tensor:
        values = {e: flat[k] for k, e in enumerate(free)}
        for e in fixed:
            values[e] = params[e[0]].detach().view(-1)[e[1]]
        return torch.stack([torch.stack([values[e] for e in p]).prod() for p in basis])

    theta = torch.stack([params[n].detach().view(-1)[i] for n, i in free])
    v = path_values(theta)
    # G-space values of the library, matched to basis paths by their non-skeleton entry
    lib = gs.values()
    by_entry = {}
    for k, p in enumerate(basis):
        extra = [e for e in p if e not in skeleton]
        key = extra[0] if extra else next(e for e in p if e in roots)
        by_entry[key] = k
    for (name, index), k in by_entry.items():
        assert float(lib[name].view(-1)[index]) == pytest.approx(float(v[k]), rel=1e-12)
    # gradient by the inverse chain rule, then one step
    (x, y), = batches(model, shape, 1, seed=5)
    gs.zero_grad()
    ((model(x) - y) ** 2).mean().backward()
    g = torch.stack([params[n].grad.view(-1)[i] for n, i in free])
    jac = torch.autograd.functional.jacobian(path_values, theta)
    gv = torch.linalg.solve(jac.T, g)
    before = {e: float(params[e[0]].detach().view(-1)[e[1]]) for e in fixed}
    gs.step()
    new_theta = torch.stack([params[n].detach().view(-1)[i] for n, i in free])
    torch.testing.assert_close(path_values(new_theta), v - 0.05 * gv, rtol=1e-10, atol=1e-12)
    assert before == {e: float(params[e[0]].detach().view(-1)[e[1]]) for e in fixed}


def differentiable_values(gs: GSpace, flat: list[torch.Tensor]) -> list[torch.Tensor]:
    """Basis-path values (3) of parameters ``flat`` (one flat tensor per slot), written
    from the definitions (1)-(2) with loops over groups: an independent re-derivation."""
    e = gs.engine
    st = gs.structure
    h = st.num_groups
    fixed_val = [flat[int(s)][int(i)] for s, i in zip(e.fixed.slot, e.fixed.index, strict=True)]
    d: dict[int, torch.Tensor] = {-1: torch.tensor(1.0, dtype=torch.float64)}
    for g in sorted(range(h), key=lambda g: int(st.distance[g])):
        d[g] = fixed_val[g] * d[int(e.fixed.dst[g])]
    u: dict[int, torch.Tensor] = {-1: torch.tensor(1.0, dtype=torch.float64)}
    root_of = {int(c): r for r, c in enumerate(e.up.root_group)}
    for g in sorted(range(h), key=lambda g: int(st.first_layer[g])):
        a = int(e.up.parent[g])
        if a >= 0:
            u[g] = u[a] * fixed_val[a]
        else:
            r = root_of[g]
            u[g] = u[int(e.up.root_src[r])] * flat[int(e.up.root_slot[r])][int(e.up.root_index[r])]
    out = []
    for s, f in zip(st.slots, flat, strict=True):
        shape = s.param.shape
        dst = torch.full(shape, -1) if s.dst is None else s.dst.expand(shape)
        src = torch.full(shape, -1) if s.src is None else s.src.expand(shape)
        factors = torch.stack([u[int(a)] * d[int(b)] for a, b in
                               zip(src.reshape(-1), dst.reshape(-1), strict=True)])
        out.append(f * factors)
    return out


@SETTINGS
@given(arch=archs(tiny=True, upsampling=True))
def test_inverse_chain_rule_random(arch):
    """On random architectures (unequal widths, biases, convs, BatchNorm, residual ties):
    v(theta) restricted to the free entries is invertible (G - H coordinates), and the
    G-space gradients satisfy dL/dtheta = J^T dL/dv."""
    model = build(arch, seed=11)
    shape = arch.in_shape
    gs = GSpace(model, shape, torch.optim.SGD, lr=0.01)
    st = gs.structure
    fixed = {(int(s), int(i)) for s, i in zip(gs.engine.fixed.slot, gs.engine.fixed.index,
                                                strict=True)}
    sizes = [s.param.numel() for s in st.slots]
    free = [(k, i) for k, n in enumerate(sizes) for i in range(n) if (k, i) not in fixed]
    assert len(free) == sum(sizes) - st.num_groups
    base = [s.param.detach().reshape(-1).clone() for s in st.slots]

    def values_of(theta: torch.Tensor) -> torch.Tensor:
        flat = [b.clone() for b in base]
        for (k, i), t in zip(free, theta, strict=True):
            flat[k] = flat[k].index_put((torch.tensor([i]),), t.reshape(1))
        vals = differentiable_values(gs, flat)
        return torch.stack([vals[k][i] for k, i in free])

    theta = torch.stack([base[k][i] for k, i in free])
    lib = gs.values()
    v = values_of(theta)
    want = torch.stack([lib[st.slots[k].name].reshape(-1)[i] for k, i in free])
    torch.testing.assert_close(want, v, rtol=1e-10, atol=1e-12)
    jac = torch.autograd.functional.jacobian(values_of, theta)
    assert int(torch.linalg.matrix_rank(jac)) == len(free)
    (x, y), = batches(model, shape, 1, seed=2)
    gs.zero_grad()
    ((model(x) - y) ** 2).mean().backward()
    g = torch.stack([st.slots[k].param.grad.reshape(-1)[i] for k, i in free])
    # what GSpace feeds its inner optimizer
    captured = {}
    inner_step = gs.inner.step

    def spy(*a, **kw):
        for k, vt in enumerate(gs._values):
            captured[k] = (st.slots[k].param.grad if vt is None else vt.grad).clone()
        return inner_step(*a, **kw)

    gs.inner.step = spy  # type: ignore[method-assign]
    gs.step()
    gv = torch.stack([captured[k].reshape(-1)[i] for k, i in free])
    torch.testing.assert_close(jac.T @ gv, g, rtol=1e-8, atol=1e-10 * float(g.abs().max()))


MAKERS = {
    "gsgd": lambda m, s: GSGD(m, s, lr=0.02),
    "gsgd-momentum": lambda m, s: GSGD(m, s, lr=0.02, momentum=0.9),
    "gsgd-keep-values": lambda m, s: GSGD(m, s, lr=0.02, momentum=0.5, init="keep"),
    "gspace-adam": lambda m, s: GSpace(m, s, torch.optim.Adam, lr=0.003),
}


@pytest.mark.parametrize("name", list(MAKERS))
@SETTINGS
@given(arch=archs(upsampling=True))
def test_same_function_from_rescaled_start(name, arch):
    """From theta and from a random rescaling D theta, G-space training computes the same
    functions (the coordinates and their gradients are invariant)."""
    model = build(arch, seed=7)
    other = rescaled(model, arch.in_shape, seed=8)
    make = MAKERS[name]
    train(model, make(model, arch.in_shape), arch.in_shape, steps=4)
    train(other, make(other, arch.in_shape), arch.in_shape, steps=4)
    assert_same_function(model, other, arch.in_shape, rtol=1e-6)


@SETTINGS
@given(arch=archs(upsampling=True))
def test_gsgd_is_gspace_sgd(arch):
    """The fused G-SGD equals the generic wrapper around torch.optim.SGD (with momentum)."""
    model = build(arch, seed=3)
    other = copy.deepcopy(model)
    train(model, GSGD(model, arch.in_shape, lr=0.02, momentum=0.9), arch.in_shape, steps=4)
    train(other, GSpace(other, arch.in_shape, torch.optim.SGD, lr=0.02, momentum=0.9),
          arch.in_shape, steps=4)
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_inner_state_kept_and_invariant():
    """The inner optimizer is built once: Adam's moments persist across steps (its step
    count grows), and an external rescaling between steps changes nothing in G-space."""
    model = tiny_resnet(widths=(4, 8), blocks=(1, 1)).double()
    shape = (3, 8, 8)
    other = copy.deepcopy(model)
    gs = GSpace(model, shape, torch.optim.Adam, lr=1e-3)
    inner = gs.inner
    train(model, gs, shape, steps=3)
    assert gs.inner is inner
    states = list(gs.inner.state.values())
    assert states and all(float(s["step"]) == 3 for s in states)
    go = GSpace(other, shape, torch.optim.Adam, lr=1e-3)
    train(other, go, shape, steps=1)
    pathcond.apply_rescaling(other, go.graph,
                             torch.randn(go.graph.num_groups, dtype=torch.float64))
    gen_steps = list(batches(other, shape, 3, seed=0))[1:]
    for x, y in gen_steps:
        go.zero_grad()
        ((other(x) - y) ** 2).mean().backward()
        go.step()
    assert_same_function(model, other, shape, rtol=1e-6)


NETS = {
    "mlp": (lambda: MLP([6, 5, 4, 3], bias=True), (6,)),
    # kernels: a saved root may sit at another tap than the strategy picks on other weights
    "conv": (lambda: nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(4, 3, 1), nn.Flatten()), (2, 4, 4)),
    "conv_transpose": (lambda: nn.Sequential(
        nn.ConvTranspose2d(2, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 3, 1), nn.Flatten()), (2, 4, 4)),
}


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("strategy", ["skeleton", "hungarian", "largest"])
@pytest.mark.parametrize("make", [
    lambda m, s, strategy: GSGD(m, s, lr=0.02, momentum=0.9, strategy=strategy),
    lambda m, s, strategy: GSpace(m, s, torch.optim.Adam, lr=1e-3, strategy=strategy),
])
def test_state_dict_round_trip(make, strategy, net):
    """Train 3 steps, checkpoint model and optimizer, restore both into fresh objects built
    on a model initialised otherwise (as when resuming a run) and train 2 more: identical to
    5 uninterrupted steps, also for strategies whose skeleton depends on the weights."""
    build, shape = NETS[net]
    torch.manual_seed(1)
    model = build().double()
    ref = copy.deepcopy(model)
    torch.manual_seed(7)
    fresh = build().double()
    data = list(batches(model, shape, 5, seed=4))

    opt = make(model, shape, strategy)
    mse_steps(model, opt, data[:3])
    ckpt = copy.deepcopy((model.state_dict(), opt.state_dict()))
    fresh_opt = make(fresh, shape, strategy)
    fresh.load_state_dict(ckpt[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no root is zero: none may be replaced
        fresh_opt.load_state_dict(ckpt[1])
    assert fresh_opt.engine.up.root_index.tolist() == opt.engine.up.root_index.tolist()
    mse_steps(fresh, fresh_opt, data[3:])
    ref_opt = make(ref, shape, strategy)
    mse_steps(ref, ref_opt, data)
    for a, b in zip(fresh.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_state_of_another_architecture_is_named_so():
    """Loading the state of another model's optimizer says so, whatever the init."""
    for init in ("ones", "keep"):
        small = tiny_mlp((4, 5, 3), bias=True)
        opt = GSGD(small, (4,), lr=0.1, init=init)
        train(small, opt, (4,), steps=1)
        other = tiny_mlp((4, 6, 3), bias=True)
        with pytest.raises(ValueError, match="belongs to another model"):
            GSGD(other, (4,), lr=0.1, init=init).load_state_dict(opt.state_dict())


def test_param_groups_and_scheduler():
    """param_groups are live: an LR scheduler on GSpace / GSGD changes their steps."""
    model = tiny_mlp((4, 5, 3), bias=True)
    gs = GSpace(model, (4,), torch.optim.SGD, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(gs, step_size=1, gamma=0.5)
    train(model, gs, (4,), steps=1)
    sched.step()
    assert gs.inner.param_groups[0]["lr"] == pytest.approx(0.05)
    other = copy.deepcopy(model)
    gsgd = GSGD(other, (4,), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(gsgd, step_size=1, gamma=0.5)
    train(other, gsgd, (4,), steps=1)
    sched.step()
    assert gsgd.param_groups[0]["lr"] == pytest.approx(0.05)


def test_zero_incoming_has_no_basis_path():
    """A unit whose incoming weights and bias are all zero has no basis path: clear error."""
    model = tiny_mlp((3, 4, 2), bias=True)
    with torch.no_grad():
        model.layers[0].weight[1].zero_()
        model.layers[0].bias[1] = 0.0
    with pytest.raises(UnsupportedModelError, match=r"layers\.0\[1\].*no skeleton"):
        GSGD(model, (3,), lr=0.1)


def test_zero_skeleton_weight_is_refused():
    model = tiny_mlp((3, 4, 2), bias=True)
    with torch.no_grad():
        model.layers[2].weight[:, 1] = 0.0  # unit 1 of layer 0 has no non-zero outgoing
    with pytest.raises(PathcondError, match="zero"):
        GSGD(model, (3,), lr=0.1, init="keep")


def test_float32_model_trains():
    torch.manual_seed(0)
    model = MLP([8, 16, 16, 4])
    opt = GSGD(model, (8,), lr=0.002, momentum=0.9)
    x = torch.randn(64, 8)
    y = torch.randn(64, 4)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < first


@pytest.mark.parametrize("make", [
    lambda m, s: GSGD(m, s, lr=0.02, momentum=0.9),
    lambda m, s: GSpace(m, s, torch.optim.Adam, lr=1e-3),
])
def test_enorm_between_steps_changes_nothing(make):
    """ENorm attached to a G-space optimizer rescales the weights between steps; G-space
    notices the moved skeleton weights and its trajectory (functions) is unchanged."""
    shape = (3, 8, 8)
    torch.manual_seed(2)
    model = tiny_resnet(widths=(4, 8), blocks=(1, 1)).double()
    other = copy.deepcopy(model)
    train(model, make(model, shape), shape, steps=4)
    opt = make(other, shape)
    from pathcond.optim import ENorm

    enorm = ENorm(other, shape, exclude_batchnorm=False, optimizer=opt)
    train(other, opt, shape, steps=4)
    assert enorm.cycles == 4
    assert_same_function(model, other, shape, rtol=1e-6)


def test_gspace_refuses_param_groups_added_after_construction() -> None:
    """The inner optimizer would step a foreign tensor (or a model weight as if it were a
    G-space coordinate): adding a group is refused, and nothing is added."""
    model = tiny_mlp()
    gs = GSpace(model, (3,), torch.optim.SGD, lr=0.1)
    groups = len(gs.param_groups)
    for extra in (torch.zeros(2, requires_grad=True), model.layers[0].weight):
        with pytest.raises(ValueError, match="add_param_group is not supported"):
            gs.add_param_group({"params": [extra]})
    assert len(gs.param_groups) == len(gs.inner.param_groups) == groups
