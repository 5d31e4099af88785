"""The ``init=`` option of G-SGD / G-space / weight fixing and :func:`init_skeleton`:
``"ones"`` (the G-SGD paper's initialisation) writes exactly 1 into every skeleton weight on
any graph, ``"rescale"`` keeps the function, ``"keep"`` touches nothing; checkpoints never
re-apply the initialisation; from ``"ones"`` G-SGD trains at an SGD-sized learning rate
where the function-preserving start blows up."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pathcond import PathcondError
from pathcond.models import MLP
from pathcond.optim import GSGD, GSpace, WeightFixing, init_skeleton

from .helpers import assert_same_function, batches, mse_steps, train


def unequal_mlp(bias: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return MLP([5, 7, 3, 6, 2], bias=bias).double()


def small_cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 5 * 5, 3)).double()


CASES = [(unequal_mlp, (5,)), (lambda: unequal_mlp(bias=True), (5,)), (small_cnn, (2, 5, 5))]
IDS = ["mlp-unequal", "mlp-unequal-bias", "cnn"]


def skeleton_entries(opt: GSpace | GSGD) -> dict[str, set[int]]:
    """Fixed entries and roots of a G-space optimizer, per parameter name."""
    e, slots = opt.engine, opt.structure.slots
    out: dict[str, set[int]] = {}
    pairs = list(zip(e.fixed.slot.tolist(), e.fixed.index.tolist(), strict=True)) + \
        list(zip(e.up.root_slot.tolist(), e.up.root_index.tolist(), strict=True))
    for slot, index in pairs:
        out.setdefault(slots[slot].name, set()).add(index)
    return out


@pytest.mark.parametrize(("make", "shape"), CASES, ids=IDS)
@pytest.mark.parametrize("cls", ["gsgd", "gspace"])
def test_ones_sets_every_skeleton_weight_to_one(make, shape, cls):
    """Every fixed entry and every root is exactly 1, nothing else moved, and the G-space
    coordinates are the weights themselves (U = D = 1 on every path)."""
    model = make()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = GSGD(model, shape, lr=0.1, init="ones") if cls == "gsgd" else \
        GSpace(model, shape, torch.optim.SGD, lr=0.1, init="ones")
    entries = skeleton_entries(opt)
    assert sum(len(v) for v in entries.values()) == opt.graph.num_groups + \
        opt.engine.up.root_slot.numel()
    for name, p in model.named_parameters():
        flat, old = p.detach().reshape(-1), before[name].reshape(-1)
        idx = torch.tensor(sorted(entries.get(name, set())), dtype=torch.long)
        other = torch.ones_like(flat, dtype=torch.bool)
        other[idx] = False
        assert bool((flat[idx] == 1).all()), name
        assert torch.equal(flat[other], old[other]), name
    values = (opt.values() if cls == "gspace" else
              GSpace(model, shape, torch.optim.SGD, lr=0.1, init="keep").values())
    for name, p in model.named_parameters():
        torch.testing.assert_close(values[name], p.detach(), rtol=0, atol=0)


def test_ones_on_the_thesis_mlp_is_the_diagonal():
    """On the equal-width bias-free MLP: the first layer's diagonal (roots) and the
    (wrapped) diagonals of the later layers, no other entry."""
    torch.manual_seed(3)
    model = MLP([6, 4, 4, 3], bias=False).double()
    w0 = [m.weight.detach().clone() for m in model.layers if isinstance(m, nn.Linear)]
    GSGD(model, (6,), lr=0.1, init="ones")
    w1 = [m.weight.detach() for m in model.layers if isinstance(m, nn.Linear)]
    expect = [[(j, j) for j in range(4)], [(j, j) for j in range(4)],
              [(j % 3, j) for j in range(4)]]
    for old, new, ones in zip(w0, w1, expect, strict=True):
        mask = torch.zeros_like(old, dtype=torch.bool)
        for r, c in ones:
            mask[r, c] = True
        assert bool((new[mask] == 1).all())
        assert torch.equal(new[~mask], old[~mask])


@pytest.mark.parametrize(("make", "shape"), CASES, ids=IDS)
def test_rescale_keeps_the_function_and_keep_touches_nothing(make, shape):
    model = make()
    ref = copy.deepcopy(model)
    opt = GSGD(model, shape, lr=0.1, init="rescale")
    assert_same_function(model, ref, shape, rtol=1e-10)
    vals = opt.engine.fixed_values()
    torch.testing.assert_close(vals.abs(), torch.ones_like(vals), rtol=1e-12, atol=0)
    kept = make()
    GSGD(kept, shape, lr=0.1, init="keep")
    for a, b in zip(kept.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    changed = make()
    GSGD(changed, shape, lr=0.1, init="ones")
    x = torch.randn((4, *shape), dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(changed(x), ref(x))  # "ones" is not function-preserving


@pytest.mark.parametrize(("make", "shape"), CASES, ids=IDS)
def test_init_skeleton_is_the_optimizer_init(make, shape):
    """init_skeleton + init="keep" is GSGD(init="ones"), step for step."""
    a, b = make(), make()
    opt_a = GSGD(a, shape, lr=0.05, momentum=0.5, init="ones")
    report = init_skeleton(b, shape)
    assert report.changed and report.value == 1.0
    assert report.num_fixed == opt_a.graph.num_groups
    assert report.num_roots == opt_a.engine.up.root_slot.numel()
    opt_b = GSGD(b, shape, lr=0.05, momentum=0.5, init="keep")
    train(a, opt_a, shape, steps=3)
    train(b, opt_b, shape, steps=3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not init_skeleton(copy.deepcopy(b), shape, roots=False).changed  # fixed stay 1


def test_init_skeleton_fixed_only_and_value():
    model = unequal_mlp()
    report = init_skeleton(model, (5,), value=0.5, roots=False)
    assert report.num_roots == 0
    wf = WeightFixing(model, (5,), init="keep")
    for _, (_, vals) in wf.fixed_entries().items():
        assert bool((vals == 0.5).all())
    with pytest.raises(ValueError, match="non-zero"):
        init_skeleton(model, (5,), value=0.0)


@pytest.mark.parametrize(("make", "shape"), CASES, ids=IDS)
def test_weight_fixing_ones(make, shape):
    """The thesis' Fixed SGD: the fixed entries are exactly 1 and stay there."""
    model = make()
    wf = WeightFixing(model, shape, init="ones")
    assert wf.report.init == "ones" and not wf.report.set_to_one
    assert not wf.report.zero_groups
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    wf.attach(opt)
    train(model, opt, shape, steps=3)
    params = dict(model.named_parameters())
    assert sum(i.numel() for i, _ in wf.fixed_entries().values()) == wf.graph.num_groups
    for name, (idx, vals) in wf.fixed_entries().items():
        assert bool((vals == 1).all())
        assert bool((params[name].detach().reshape(-1)[idx] == 1).all())
    state = wf.state_dict()
    assert state["init"] == "ones"
    fresh = WeightFixing(make(), shape, init="rescale")
    fresh.load_state_dict(state)
    assert fresh.init == "ones"


def test_set_to_one_is_a_deprecated_alias():
    for legacy, init in ((True, "rescale"), (False, "keep")):
        for build in (lambda m, v: GSGD(m, (5,), lr=0.1, set_to_one=v),
                      lambda m, v: GSpace(m, (5,), lr=0.1, set_to_one=v),
                      lambda m, v: WeightFixing(m, (5,), set_to_one=v)):
            with pytest.warns(DeprecationWarning, match="init="):
                obj = build(unequal_mlp(), legacy)
            assert obj.init == init and obj.set_to_one is legacy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match="init only"):
            GSGD(unequal_mlp(), (5,), lr=0.1, init="ones", set_to_one=False)
    with pytest.raises(ValueError, match="init must be one of"):
        GSGD(unequal_mlp(), (5,), lr=0.1, init="one")  # type: ignore[arg-type]
    # a legacy weight-fixing state dict (no "init") still loads
    state = WeightFixing(unequal_mlp(), (5,), init="keep").state_dict()
    del state["init"]
    wf = WeightFixing(unequal_mlp(), (5,))
    wf.load_state_dict(state)
    assert wf.init == "keep"


@pytest.mark.parametrize("make", [
    lambda m, s, init: GSGD(m, s, lr=0.05, momentum=0.9, init=init),
    lambda m, s, init: GSpace(m, s, torch.optim.Adam, lr=1e-3, init=init),
], ids=["gsgd", "gspace-adam"])
def test_resume_does_not_reapply_ones(make):
    """Checkpoint after 3 steps; a fresh model + optimizer (init="ones" on the fresh model),
    then the model's and the optimizer's state dicts: bit-identical to 5 steps. Loading the
    model *before* building the optimizer is refused (the init overwrote it), and works
    with init="keep"."""
    shape = (5,)
    model = unequal_mlp(bias=True)
    fresh, ref, late = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    data = list(batches(model, shape, 5, seed=4))

    opt = make(model, shape, "ones")
    mse_steps(model, opt, data[:3])
    ckpt = copy.deepcopy((model.state_dict(), opt.state_dict()))
    assert ckpt[1]["gspace"]["init"] == "ones" and ckpt[1]["gspace"]["steps"] == 3
    fresh_opt = make(fresh, shape, "ones")
    fresh.load_state_dict(ckpt[0])
    fresh_opt.load_state_dict(copy.deepcopy(ckpt[1]))  # (torch aliases loaded buffers)
    mse_steps(fresh, fresh_opt, data[3:])
    ref_opt = make(ref, shape, "ones")
    mse_steps(ref, ref_opt, data)
    for a, b in zip(fresh.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    late.load_state_dict(ckpt[0])
    with pytest.raises(PathcondError, match="loaded before the optimizer"):
        make(late, shape, "ones").load_state_dict(copy.deepcopy(ckpt[1]))
    late.load_state_dict(ckpt[0])
    late_opt = make(late, shape, "keep")
    late_opt.load_state_dict(copy.deepcopy(ckpt[1]))
    mse_steps(late, late_opt, data[3:])
    for a, b in zip(late.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


def test_paper_init_trains_at_a_large_lr():
    """Generated 4-class data, bias-free 20-32-32-32-4 MLP, lr 0.1, batch 32, 5 epochs:
    G-SGD from the paper's init fits it; from the function-preserving set-to-one of the
    PyTorch init the same lr blows the loss up (steps ~ lr / U^2 with U ~ 1/sqrt(fan_in))."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 20, generator=gen)
    y = (x @ torch.randn(20, 4, generator=gen)).argmax(1)
    results = {}
    for init in ("rescale", "ones"):
        torch.manual_seed(0)
        model = MLP([20, 32, 32, 32, 4], bias=False)
        opt = GSGD(model, (20,), lr=0.1, init=init)
        order = torch.Generator().manual_seed(1)
        worst = 0.0
        for _ in range(5):
            perm = torch.randperm(512, generator=order)
            for s in range(0, 512, 32):
                idx = perm[s:s + 32]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                worst = max(worst, float(loss.detach()))
        with torch.no_grad():
            out = model(x)
        results[init] = (float(F.cross_entropy(out, y)), float((out.argmax(1) == y).float()
                                                              .mean()), worst)
    loss, acc, worst = results["ones"]
    assert loss < 0.4 and acc > 0.9 and worst < 5, results
    loss, acc, worst = results["rescale"]
    assert worst > 50 and loss > 2, results


@pytest.mark.parametrize(("make", "shape"), CASES, ids=IDS)
def test_after_ones_the_first_step_moves_path_values_like_sgd(make, shape):
    """With U = D = 1, v_e = theta_e and dL/dv_e = dL/dtheta_e for every free entry that is
    not a root: the first G-SGD step moves those basis-path values exactly as SGD moves the
    weights (the weights themselves are then reallocated by U / U', eq. (5))."""
    model = make()
    opt = GSGD(model, shape, lr=0.05, init="ones")
    ref = copy.deepcopy(model)
    train(model, opt, shape, steps=1)
    train(ref, torch.optim.SGD(ref.parameters(), lr=0.05), shape, steps=1)
    values = GSpace(model, shape, init="keep").values()
    skip = skeleton_entries(opt)
    compared = 0
    for name, q in ref.named_parameters():
        v, w = values[name].reshape(-1), q.detach().reshape(-1)
        keep = torch.ones_like(v, dtype=torch.bool)
        keep[torch.tensor(sorted(skip.get(name, set())), dtype=torch.long)] = False
        torch.testing.assert_close(v[keep], w[keep], rtol=1e-12, atol=1e-15)
        compared += int(keep.sum())
    assert compared > 0
