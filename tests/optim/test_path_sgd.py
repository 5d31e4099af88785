"""Path-SGD: magnitudes equal the brute-force path sums, the step is theta - lr g / m, and
it is exactly equivariant under rescalings (g' = g / D, m' = m / D^2, so step' = D step)."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import assume, given

import pathcond
from pathcond.models import MLP
from pathcond.optim import PathSGD
from tests.bruteforce import archs, brute_force, build, spec_dag

from .helpers import SETTINGS, assert_same_function, batches, mse_steps, random_log_scales, train


@SETTINGS
@given(arch=archs(tiny=True, upsampling=True))
def test_magnitudes_match_brute_force(arch):
    """Model-parameter magnitudes from the folded ones (docs: pre-BatchNorm weight times
    (gamma / sigma)^2, gamma and beta the folded bias magnitude)."""
    model = build(arch, seed=4)
    bf = brute_force(spec_dag(model))
    opt = PathSGD(model, arch.in_shape, lr=0.1)
    got = opt.magnitudes()
    for layer in opt.graph.layers:
        want_w = bf.magnitudes[layer.weight_name]
        if layer.batchnorm is None:
            torch.testing.assert_close(got[layer.weight_name], want_w, rtol=1e-9, atol=1e-300)
            if layer.bias_name is not None:
                torch.testing.assert_close(got[layer.bias_name], bf.magnitudes[layer.bias_name],
                                           rtol=1e-9, atol=1e-300)
            continue
        bn = model.get_submodule(layer.batchnorm)
        f = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        shape = (-1, *([1] * (want_w.dim() - 1)))
        want_b = bf.magnitudes[f"{layer.batchnorm}.bias"]
        torch.testing.assert_close(got[layer.weight_name], want_w * f.square().reshape(shape),
                                   rtol=1e-9, atol=1e-300)
        torch.testing.assert_close(got[f"{layer.batchnorm}.weight"], want_b, rtol=1e-9,
                                   atol=1e-300)
        torch.testing.assert_close(got[f"{layer.batchnorm}.bias"], want_b, rtol=1e-9,
                                   atol=1e-300)


def test_step_by_hand():
    torch.manual_seed(0)
    model = MLP([3, 4, 2]).double()
    bf = brute_force(spec_dag_for_mlp(model))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = PathSGD(model, (3,), lr=0.3)
    (x, y), = batches(model, (3,), 1, seed=1)
    opt.zero_grad()
    ((model(x) - y) ** 2).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[n] - 0.3 * grads[n] / bf.magnitudes[n])


def spec_dag_for_mlp(model: MLP):
    from tests.bruteforce import UnitDAG

    g = UnitDAG()
    x = g.input((model.widths[0],))
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    for i, name in enumerate(linears):
        x = g.linear(x, model, name)
        if i < len(linears) - 1:
            x = g.relu(x)
    g.output(x)
    return g


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@SETTINGS
@given(arch=archs(upsampling=True))
def test_exactly_equivariant(arch, momentum):
    """From theta and D theta, after several steps the parameters still differ by D (so
    the functions are equal), to rounding. A trajectory blowing up (path magnitudes
    spanning more than 1e12, where the 1 / m steps amplify rounding without bound: seen
    with momentum on a bilinear upsampling) proves nothing either way and is skipped."""
    model = build(arch, seed=6)
    other = copy.deepcopy(model)
    graph = pathcond.rescaling_graph(other, arch.in_shape)
    u = random_log_scales(graph, seed=2)
    pathcond.apply_rescaling(other, graph, u)
    ours = PathSGD(model, arch.in_shape, lr=0.05, momentum=momentum)
    train(model, ours, arch.in_shape, 4)
    mags = torch.cat([m.reshape(-1) for m in ours.magnitudes().values()])
    mags = mags[mags > 0]
    assume(bool(torch.isfinite(mags).all()) and float(mags.max() / mags.min()) < 1e12)
    train(other, PathSGD(other, arch.in_shape, lr=0.05, momentum=momentum), arch.in_shape, 4)
    pathcond.apply_rescaling(model, graph, u)  # D theta_t  vs  (D theta)_t
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert_same_function(model, other, arch.in_shape, rtol=1e-9)


def test_zero_magnitudes_do_not_move():
    """A unit with zero outgoing weights has m = 0 on its incoming weights (and g = 0):
    they do not move, and nothing becomes NaN."""
    torch.manual_seed(1)
    model = MLP([3, 4, 2]).double()
    with torch.no_grad():
        model.layers[2].weight[:, 1] = 0.0
    before = model.layers[0].weight.detach()[1].clone()
    opt = PathSGD(model, (3,), lr=0.1)
    assert float(opt.magnitudes()["layers.0.weight"][1].abs().max()) == 0.0
    train(model, opt, (3,), steps=1)  # (the step revives the unit's outgoing weights)
    assert torch.equal(model.layers[0].weight.detach()[1], before)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_closure_and_state_dict_round_trip():
    shape = (4,)
    torch.manual_seed(2)
    model = MLP([4, 5, 3]).double()
    ref = copy.deepcopy(model)
    fresh = copy.deepcopy(model)
    opt = PathSGD(model, shape, lr=0.05, momentum=0.5)
    losses = train(model, opt, shape, steps=3, use_closure=True)
    assert all(isinstance(v, float) for v in losses)
    fresh_opt = PathSGD(fresh, shape, lr=0.05, momentum=0.5)
    fresh.load_state_dict(model.state_dict())
    fresh_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    ref_opt = PathSGD(ref, shape, lr=0.05, momentum=0.5)
    data = list(batches(ref, shape, 5, seed=0))
    mse_steps(ref, ref_opt, data)
    mse_steps(fresh, fresh_opt, data[3:])
    for a, b in zip(fresh.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_param_groups():
    """Parameter groups with their own learning rates; a frozen group does not move."""
    torch.manual_seed(3)
    model = MLP([3, 4, 2]).double()
    first, last = model.layers[0], model.layers[2]
    opt = PathSGD(model, (3,), lr=0.1, params=[
        {"params": first.parameters()}, {"params": last.parameters(), "lr": 1e-9}])
    before = last.weight.detach().clone()
    train(model, opt, (3,), steps=1)
    assert float((last.weight.detach() - before).abs().max()) < 1e-6
    with pytest.raises(ValueError, match="lr"):
        PathSGD(model, (3,), lr=0.0)


@pytest.mark.parametrize("name", ["conv_transpose", "conv_transpose1d_output_size"])
def test_transposed_convolutions(name):
    """Magnitudes of a transposed convolution's weight, laid out like the parameter
    ``(in, out_per_group, *kernel)``, equal the brute-force ones; one step from theta and
    from D theta stays D apart."""
    from tests.lifting.test_bruteforce import CASES, make, reference

    model, _, bf = reference(name)
    shape = CASES[name].input_shape
    opt = PathSGD(copy.deepcopy(model), shape, lr=0.1)
    got = opt.magnitudes()
    for layer in opt.graph.layers:
        if layer.batchnorm is None:
            torch.testing.assert_close(got[layer.weight_name], bf.magnitudes[layer.weight_name],
                                       rtol=1e-9, atol=1e-300)
    model, _ = make(name, seed=2)
    other = copy.deepcopy(model)
    graph = pathcond.rescaling_graph(other, shape)
    u = random_log_scales(graph, seed=3)
    pathcond.apply_rescaling(other, graph, u)
    gen = torch.Generator().manual_seed(4)
    data = [torch.randn((6, *shape), generator=gen, dtype=torch.float64) for _ in range(3)]
    for net in (model, other):
        step = PathSGD(net, shape, lr=0.01)
        for x in data:
            step.zero_grad()
            net(x).square().mean().backward()
            step.step()
    pathcond.apply_rescaling(model, graph, u)
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
