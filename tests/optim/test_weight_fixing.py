"""Weight fixing: one fixed outgoing entry per group that breaks every rescaling, the
set-to-one reparametrisation (function kept, |fixed| = 1, signs kept), the Hungarian choice,
fixed entries that stay put under any optimizer, and rescaling-invariant training."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from scipy.optimize import linear_sum_assignment

import pathcond
from pathcond.models import MLP, tiny_resnet
from pathcond.optim import WeightFixing
from tests.bruteforce import archs, build

from .helpers import SETTINGS, assert_same_function, batches, mse_steps, rescaled, train


def attached_sgd(model, shape, lr=0.003, **kw):
    wf = WeightFixing(model, shape, **kw)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    wf.attach(opt)
    return opt


def b_rows_of_fixed(wf: WeightFixing) -> torch.Tensor:
    """(H, H) matrix: row h = (B e_g)[k(h)] for every group g; the symmetry is broken iff it
    is invertible."""
    graph = wf.graph
    h = graph.num_groups
    out = torch.zeros(h, h, dtype=torch.float64)
    fixed = wf.fixed_entries()
    entries = [(name, int(i)) for name, (idx, _) in fixed.items() for i in idx]
    assert len(entries) == h
    for g in range(h):
        e = torch.zeros(h, dtype=torch.float64)
        e[g] = 1.0
        scales = pathcond.parameter_log_scales(graph, e)
        params = dict(wf.model.named_parameters())
        for row, (name, i) in enumerate(entries):
            ls = scales.get(name)
            if ls is not None:
                out[row, g] = float(ls.expand(params[name].shape).reshape(-1)[i])
    return out


@pytest.mark.parametrize("strategy", ["skeleton", "largest", "hungarian"])
@SETTINGS
@given(arch=archs(upsampling=True))
def test_fixing_breaks_the_symmetry(arch, strategy):
    model = build(arch, seed=2)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((4, *arch.in_shape), generator=gen, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        y0 = model(x)
    wf = WeightFixing(model, arch.in_shape, strategy=strategy)
    with torch.no_grad():
        y1 = model(x)
    torch.testing.assert_close(y1, y0, rtol=1e-10, atol=1e-10 * float(y0.abs().max()))
    h = wf.graph.num_groups
    assert wf.report.num_fixed == h
    if h:
        mat = b_rows_of_fixed(wf)
        assert int(torch.linalg.matrix_rank(mat)) == h
        for _, (_, values) in wf.fixed_entries().items():
            assert bool((values.abs() == 1).all())


@pytest.mark.parametrize("strategy", ["skeleton", "largest"])
@SETTINGS
@given(arch=archs(upsampling=True))
def test_same_function_from_rescaled_start(arch, strategy):
    """Set to one with a rescaling-invariant choice is a canonical form: training from theta
    and from D theta computes the same functions."""
    model = build(arch, seed=9)
    other = rescaled(model, arch.in_shape, seed=10)
    losses = train(model, attached_sgd(model, arch.in_shape, strategy=strategy),
                   arch.in_shape, 4)
    others = train(other, attached_sgd(other, arch.in_shape, strategy=strategy),
                   arch.in_shape, 4)
    # both runs diverge together or not at all (fixed weights set to +-1 can blow some nets
    # up at this lr); functions are compared where the training did not diverge
    assert [math.isfinite(v) for v in losses] == [math.isfinite(v) for v in others]
    assume(all(math.isfinite(v) and v < 1e6 for v in losses))
    assert others == pytest.approx(losses, rel=1e-6)
    assert_same_function(model, other, arch.in_shape, rtol=1e-6)


def test_signs_kept_and_values_fixed_with_any_optimizer():
    torch.manual_seed(0)
    shape = (3, 8, 8)
    model = tiny_resnet(widths=(4, 8), blocks=(1, 1)).double()
    signs = {}
    wf0 = WeightFixing(copy.deepcopy(model), shape, init="keep")
    for name, (idx, vals) in wf0.fixed_entries().items():
        signs[name] = (idx, torch.sign(vals))
    for make in (lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=0.1),
                 lambda p: torch.optim.Adam(p, lr=1e-3),
                 lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.5)):
        m = copy.deepcopy(model)
        wf = WeightFixing(m, shape)
        fixed = wf.fixed_entries()
        for name, (idx, vals) in fixed.items():
            assert torch.equal(idx, signs[name][0])
            assert torch.equal(vals, signs[name][1])
        opt = make(m.parameters())
        wf.attach(opt)
        train(m, opt, shape, steps=3)
        params = dict(m.named_parameters())
        for name, (idx, vals) in fixed.items():
            assert torch.equal(params[name].detach().view(-1)[idx], vals)
            assert bool((params[name].grad.view(-1)[idx] == 0).all())


def test_without_set_to_one_values_kept():
    torch.manual_seed(1)
    model = MLP([4, 6, 5, 3]).double()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wf = WeightFixing(model, (4,), init="keep")
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n])
    assert wf.report.max_log_scale == 0.0
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    train(model, opt, (4,), steps=2)  # not attached: the gradient hook alone
    wf.step()
    for name, (idx, vals) in wf.fixed_entries().items():
        assert torch.equal(dict(model.named_parameters())[name].detach().view(-1)[idx], vals)
        assert torch.equal(vals, before[name].view(-1)[idx])


def test_skeleton_is_the_wrapped_diagonal():
    """Thesis 3.0.3: the fixed entry of input column j of a layer is its row j mod out."""
    model = MLP([3, 4, 6, 2], bias=False).double()
    wf = WeightFixing(model, (3,), init="keep")
    fixed = {n: idx.tolist() for n, (idx, _) in wf.fixed_entries().items()}
    assert fixed == {"layers.2.weight": [j * 4 + j for j in range(4)],
                     "layers.4.weight": [(j % 2) * 6 + j for j in range(6)]}


def test_hungarian_is_an_optimal_assignment():
    """Last hidden layer first (thesis 6.3.1): within a square consumer layer the fixed
    entries form a permutation minimising sum | |D W| - 1 |, D the already-applied row
    scales, and set-to-one moves the weights less than the skeleton's diagonal."""
    torch.manual_seed(5)
    model = MLP([4, 5, 5, 5], bias=True).double()
    ref = copy.deepcopy(model)
    wf = WeightFixing(model, (4,), strategy="hungarian")
    fixed = wf.fixed_entries()
    # last hidden layer: consumer = output layer (rows never rescaled, D = 1)
    w = ref.layers[4].weight.detach().numpy()
    cost = np.abs(np.abs(w) - 1.0)  # rows: outputs, columns: hidden units
    r, c = linear_sum_assignment(cost.T)
    idx = sorted(fixed["layers.4.weight"][0].tolist())
    assert idx == sorted(int(col * 5 + unit) for unit, col in zip(r, c, strict=True))
    best = cost.T[r, c].sum()
    for perm in itertools.permutations(range(5)):
        assert cost.T[range(5), perm].sum() >= best - 1e-12
    # previous layer: costs after the last layer's rescaling of its rows
    u = wf.report.log_scales
    graph = wf.graph
    rows = graph.layers[2].row_groups
    dw = np.abs(ref.layers[2].weight.detach().numpy()) * np.exp(u[rows].numpy())[:, None]
    cost2 = np.abs(dw - 1.0)
    r2, c2 = linear_sum_assignment(cost2.T)
    idx2 = sorted(fixed["layers.2.weight"][0].tolist())
    assert idx2 == sorted(int(col * 5 + unit) for unit, col in zip(r2, c2, strict=True))
    skeleton = WeightFixing(copy.deepcopy(ref), (4,), strategy="skeleton").report
    assert wf.report.max_log_scale <= skeleton.max_log_scale + 1e-12


def test_state_dict_round_trip():
    torch.manual_seed(2)
    shape = (5,)
    model = MLP([5, 6, 4, 2]).double()
    wf = WeightFixing(model, shape, strategy="largest")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    wf.attach(opt)
    train(model, opt, shape, steps=2)
    state = copy.deepcopy(wf.state_dict())
    fresh = copy.deepcopy(model)
    wf2 = WeightFixing(fresh, shape, strategy="skeleton", init="keep")
    wf2.load_state_dict(state)
    assert {n: i.tolist() for n, (i, _) in wf2.fixed_entries().items()} == \
        {n: i.tolist() for n, (i, _) in wf.fixed_entries().items()}
    opt2 = torch.optim.SGD(fresh.parameters(), lr=0.01)
    wf2.attach(opt2)
    data = list(batches(fresh, shape, 2, seed=3))
    for m, o in ((model, opt), (fresh, opt2)):
        mse_steps(m, o, data)
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_detach_releases_the_entries():
    torch.manual_seed(0)
    model = MLP([3, 4, 2]).double()
    wf = WeightFixing(model, (3,))
    wf.detach()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train(model, opt, (3,), steps=1)
    name, (idx, vals) = next(iter(wf.fixed_entries().items()))
    assert not torch.equal(dict(model.named_parameters())[name].detach().view(-1)[idx], vals)


def test_bad_strategy():
    with pytest.raises(ValueError, match="strategy"):
        WeightFixing(MLP([3, 4, 2]), (3,), strategy="random")  # type: ignore[arg-type]


def test_channels_last_parameters():
    """Flat indices are logical (row-major): a channels-last model works the same."""
    torch.manual_seed(0)
    shape = (3, 8, 8)
    model = tiny_resnet(widths=(4, 8), blocks=(1, 1)).double()
    other = copy.deepcopy(model).to(memory_format=torch.channels_last)
    for m in (model, other):
        opt = torch.optim.SGD(m.parameters(), lr=0.002, weight_decay=0.1)
        WeightFixing(m, shape).attach(opt)
        train(m, opt, shape, steps=2)
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
