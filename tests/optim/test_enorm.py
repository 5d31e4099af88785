"""ENorm: never changes the function, decreases its weighted norm at every cycle, reaches
per-unit balance at its fixed point, transports optimizer state; the per-unit factor is
``d = (c ||out||^2 / ||in||^2)^(1/4)`` with the bias in ``||in||``."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from hypothesis import given
from torch import nn

import pathcond
from pathcond.models import MLP, tiny_resnet
from pathcond.optim import ENorm
from tests.bruteforce import archs, build

from .helpers import SETTINGS, assert_enorm_descends, batches, train


def quiet_enorm(*args, **kwargs) -> ENorm:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return ENorm(*args, **kwargs)


def outputs_both_modes(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs in eval mode and in train mode (on a copy: running stats untouched)."""
    model.eval()
    with torch.no_grad():
        ev = model(x)
        tr = copy.deepcopy(model).train()(x)
    return ev, tr


def independent_objective(model: nn.Module, graph, c: float, p: float,
                          exclude_batchnorm: bool) -> float:
    """sum_t c^depth(t) ||theta_t||_p^p written from the graph: depth = index in an MLP."""
    total = 0.0
    for depth, layer in enumerate(graph.layers, start=1):
        module = model.get_submodule(layer.name)
        tensors = [module.weight] + ([module.bias] if module.bias is not None else [])
        if layer.batchnorm is not None and not exclude_batchnorm:
            bn = model.get_submodule(layer.batchnorm)
            tensors += [bn.weight, bn.bias]
        total += c ** depth * sum(float(t.detach().abs().pow(p).sum()) for t in tensors)
    return total


@pytest.mark.parametrize("exclude_batchnorm", [True, False])
@SETTINGS
@given(arch=archs(upsampling=True))
def test_function_kept_and_norm_decreases(arch, exclude_batchnorm):
    model = build(arch, seed=5)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((5, *arch.in_shape), generator=gen, dtype=torch.float64)
    before = outputs_both_modes(model, x)
    enorm = quiet_enorm(model, arch.in_shape, c=1.2, exclude_batchnorm=exclude_batchnorm)
    assert_enorm_descends(enorm, 4, strictly=False)
    after = outputs_both_modes(model, x)
    for y0, y1 in zip(before, after, strict=True):
        scale = max(float(y0.abs().max()), 1e-12)
        assert float((y0 - y1).abs().max()) <= 1e-10 * scale


def test_objective_matches_definition():
    torch.manual_seed(0)
    model = MLP([4, 6, 5, 3], batchnorm=True).double()
    graph = pathcond.rescaling_graph(model, (4,))
    for exclude in (True, False):
        enorm = quiet_enorm(model, graph=graph, c=1.5, p=3, exclude_batchnorm=exclude)
        assert enorm.objective() == pytest.approx(
            independent_objective(model, graph, 1.5, 3, exclude), rel=1e-12)


def test_one_hidden_layer_factor_by_hand():
    """One hidden layer: a cycle is a single exact step d = (c ||out||^2/||in||^2)^(1/4),
    incoming norm with the bias; incoming rows scale by d, outgoing columns by 1/d."""
    torch.manual_seed(2)
    model = MLP([3, 4, 2]).double()
    w1, b1 = model.layers[0].weight.detach().clone(), model.layers[0].bias.detach().clone()
    w2 = model.layers[2].weight.detach().clone()
    c = 0.7
    incoming = w1.square().sum(1) + b1.square()
    outgoing = w2.square().sum(0)
    d = (c * outgoing / incoming) ** 0.25
    report = ENorm(model, (3,), c=c).step()
    torch.testing.assert_close(report.log_scales, torch.log(d))
    torch.testing.assert_close(model.layers[0].weight.detach(), w1 * d[:, None])
    torch.testing.assert_close(model.layers[0].bias.detach(), b1 * d)
    torch.testing.assert_close(model.layers[2].weight.detach(), w2 / d[None, :])


@pytest.mark.parametrize("schedule", ["layers", "colours"])
@pytest.mark.parametrize("p", [2.0, 1.0])
def test_fixed_point_is_balanced(schedule, p):
    """Iterated to convergence: every unit has equal weighted incoming and outgoing norms
    (A_h = O_h, summed over residual-tied units); one more cycle does nothing."""
    torch.manual_seed(3)
    model = tiny_resnet(widths=(4, 6), blocks=(1, 1)).double()
    shape = (3, 8, 8)
    enorm = ENorm(model, shape, exclude_batchnorm=False, schedule=schedule, p=p, c=1.1)
    graph = enorm.graph
    for _ in range(200):
        report = enorm.step()
        if report.max_log_scale < 1e-13:
            break
    assert report.max_log_scale < 1e-12
    assert float(enorm.imbalance().abs().max()) < 1e-12
    # independent check of the balance: weighted incoming vs outgoing sums per group
    u = torch.zeros(graph.num_groups, dtype=torch.float64)
    inc = torch.zeros_like(u)
    out = torch.zeros_like(u)
    params = dict(model.named_parameters())
    depth = {s.name: s.depth for s in enorm.structure.slots}
    for name, _ in pathcond.parameter_log_scales(graph, u).items():
        p_ = params[name].detach()
        weight = 1.1 ** depth[name]
        # incoming: +1 entries; outgoing: -1 entries, found by probing with unit log-scales
        for h in range(graph.num_groups):
            e = torch.zeros_like(u)
            e[h] = 1.0
            ls = pathcond.parameter_log_scales(graph, e)[name]
            ls = ls.expand(p_.shape) if ls.dim() else ls
            inc[h] += weight * float((p_.abs() ** p)[ls > 0.5].sum())
            out[h] += weight * float((p_.abs() ** p)[ls < -0.5].sum())
    torch.testing.assert_close(inc, out, rtol=1e-10, atol=0)
    state = [t.detach().clone() for t in model.parameters()]
    enorm.step()
    for a, b in zip(state, model.parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-15)


def test_batchnorm_groups_excluded_by_default():
    torch.manual_seed(0)
    model = MLP([4, 5, 5, 2], batchnorm=True, bias=False).double()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.warns(UserWarning, match="exclude_batchnorm"):
        enorm = ENorm(model, (4,))
    report = enorm.step()
    assert report.balanced == 0
    assert len(enorm.unbalanced_groups()) == 10
    for a, b in zip(before, model.parameters(), strict=True):
        assert torch.equal(a, b.detach())
    assert quiet_enorm(model, (4,), exclude_batchnorm=False).step().balanced == 10


def test_optimizer_state_transported_and_every():
    """Attached to SGD with momentum: a cycle every `every` steps, momentum transported as
    apply_rescaling(..., optimizer=) does with the same log-scales."""
    torch.manual_seed(4)
    shape = (5,)
    model = MLP([5, 6, 6, 3]).double()
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.9)
    enorm = ENorm(model, shape, every=2, optimizer=opt)
    graph = pathcond.rescaling_graph(ref, shape)
    balancer = ENorm(copy.deepcopy(ref), shape)  # computes the same cycle on a twin
    for step, (x, y) in enumerate(batches(model, shape, 4, seed=9), start=1):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            ((m(x) - y) ** 2).mean().backward()
            o.step()
        if step % 2 == 0:
            balancer.model.load_state_dict(ref.state_dict())
            u = balancer.step().log_scales
            pathcond.apply_rescaling(ref, graph, u, optimizer=ref_opt)
    assert enorm.cycles == 2 and enorm.steps == 4
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(opt.state[a]["momentum_buffer"],
                                   ref_opt.state[b]["momentum_buffer"], rtol=1e-12, atol=1e-14)
    enorm.detach()
    train(model, opt, shape, steps=2)
    assert enorm.cycles == 2


def test_state_dict_round_trip():
    torch.manual_seed(0)
    model = MLP([3, 4, 2]).double()
    enorm = ENorm(model, (3,), every=3)
    enorm.steps, enorm.cycles = 7, 2
    other = ENorm(copy.deepcopy(model), (3,), every=3)
    other.load_state_dict(copy.deepcopy(enorm.state_dict()))
    assert (other.steps, other.cycles) == (7, 2)
    with pytest.raises(ValueError, match="every"):
        ENorm(model, (3,), every=2).load_state_dict(enorm.state_dict())


def test_float32_residual_network_keeps_function():
    torch.manual_seed(0)
    model = tiny_resnet(widths=(4, 8), blocks=(1, 1))
    x = torch.randn(3, 3, 8, 8)
    model.eval()
    y0 = model(x)
    enorm = quiet_enorm(model, (3, 8, 8), exclude_batchnorm=False)
    for _ in range(3):
        enorm.step()
    torch.testing.assert_close(model(x), y0, rtol=1e-4, atol=1e-5)


def test_bad_options():
    model = MLP([3, 4, 2])
    for kwargs in ({"c": 0.0}, {"p": -1.0}, {"every": 0}, {"schedule": "random"}):
        with pytest.raises(ValueError):
            ENorm(model, (3,), **kwargs)


@pytest.mark.parametrize("exclude", [True, False])
def test_skipping_blocks_that_cannot_balance_changes_nothing(exclude):
    """Blocks with no included incoming entry (BatchNorm units with BatchNorm excluded) are
    skipped by step(); running them anyway gives bitwise the same parameters and report."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.BatchNorm1d(6), nn.ReLU(),
                          nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    model[1].weight.data.uniform_(0.5, 2.0)
    fast = quiet_enorm(model, (4,), c=1.3, exclude_batchnorm=exclude)
    slow_model = copy.deepcopy(model)
    slow = quiet_enorm(slow_model, (4,), c=1.3, exclude_batchnorm=exclude)
    assert (not all(fast._live)) == exclude and any(fast._live)
    slow._live = (True,) * len(slow._live)
    for _ in range(3):
        a, b = fast.step(), slow.step()
        assert torch.equal(a.log_scales, b.log_scales) and a.balanced == b.balanced
    for p, q in zip(model.parameters(), slow_model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_parameter_leaves_its_groups_alone_and_names_them(bad):
    """A NaN or Inf weight: the groups it touches have no minimiser, are left alone, marked
    unbalanced in the report and named by unbalanced_groups (the same criterion as step);
    every other group is still balanced."""
    torch.manual_seed(5)
    model = MLP([4, 5, 5, 2]).double()
    enorm = quiet_enorm(model, (4,))
    with torch.no_grad():
        model.layers[0].weight[2, 1] = bad  # incoming of hidden unit 2 of the first layer
    names = enorm.unbalanced_groups()
    assert len(names) == 1
    weight_before = model.layers[0].weight.detach().clone()
    report = enorm.step()
    assert report.balanced == 9
    assert not bool(report.balanced_groups[2])
    assert float(report.log_scales[2]) == 0.0
    after = model.layers[0].weight.detach()
    assert torch.equal(after[2].isnan(), weight_before[2].isnan())
    finite = after[2].isfinite()
    assert torch.equal(after[2][finite], weight_before[2][finite])
    assert enorm.unbalanced_groups() == names


class _Decoder(nn.Module):
    """A convolution, a grouped transposed convolution with a bias, a transposed one with
    BatchNorm, a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(1, 4, 2)
        self.up = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
        self.up2 = nn.ConvTranspose2d(6, 2, 2, bias=False)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.up(torch.relu(self.enc(x))))
        return self.fc(torch.relu(self.bn(self.up2(h))).flatten(1))


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_transposed_convolutions_sums_by_definition(p: float) -> None:
    """ENorm's per-group incoming and outgoing sums on transposed convolutions equal those
    written from the graph in the lifting layout ``(out, in_per_group, *kernel)``; cycles
    keep the function (train and eval mode) and lower the objective."""
    torch.manual_seed(0)
    model = _Decoder().double()
    shape = (1, 3, 3)
    enorm = ENorm(model, shape, p=p, exclude_batchnorm=False)
    graph = enorm.graph
    h = graph.num_groups
    want_in = torch.zeros(h + 1, dtype=torch.float64)
    want_out = torch.zeros(h + 1, dtype=torch.float64)
    ext = lambda g: torch.where(g < 0, h, g)  # noqa: E731
    for layer in graph.layers:
        module = model.get_submodule(layer.name)
        w = layer.to_lifting(module.weight.detach()).abs() ** p
        rows, cols = ext(layer.row_groups), ext(layer.col_groups)
        cols = torch.broadcast_to(cols, w.shape[:2])
        pairs = w.reshape(*w.shape[:2], -1).sum(dim=2)  # over the kernel
        want_out.index_add_(0, cols.reshape(-1), pairs.reshape(-1))
        if layer.batchnorm is None:
            want_in.index_add_(0, rows, w.reshape(w.shape[0], -1).sum(dim=1))
            if module.bias is not None:
                want_in.index_add_(0, rows, module.bias.detach().abs() ** p)
        else:
            bn = model.get_submodule(layer.batchnorm)
            want_in.index_add_(0, rows, bn.weight.detach().abs() ** p + bn.bias.detach().abs() ** p)
    everything = range(len(enorm.structure.slots))
    got_in, got_out = enorm._sums(everything, everything)
    torch.testing.assert_close(got_in[:h], want_in[:h], rtol=1e-12, atol=0)
    torch.testing.assert_close(got_out[:h], want_out[:h], rtol=1e-12, atol=0)
    x = torch.randn((4, *shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before = outputs_both_modes(model, x)
    assert_enorm_descends(enorm, 3)
    for y0, y1 in zip(before, outputs_both_modes(model, x), strict=True):
        torch.testing.assert_close(y1, y0, rtol=1e-10, atol=1e-12)
