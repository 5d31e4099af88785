"""Device placement: everything the solver builds lives on the model's device."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import pathcond
from pathcond.rescale import build_problem


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def check_on(device: torch.device) -> None:
    torch.manual_seed(0)
    model = small_cnn().to(device)
    shape = (3, 8, 8)
    graph = pathcond.rescaling_graph(model, shape)
    problem = build_problem(model, graph)
    assert problem.device.type == device.type
    for blk in problem.layers:
        assert blk.magnitudes.device.type == device.type
        assert blk.rows.device.type == device.type
    assert problem.aggregates.device.type == device.type
    for coarse in problem.coarse_layers:
        assert coarse.rows.device.type == device.type == coarse.cols.device.type
    curvature = problem.curvature(torch.zeros(graph.num_groups, dtype=torch.float64,
                                              device=device))
    assert curvature.coarse.device.type == device.type
    x = torch.randn(4, *shape, device=device)
    model.eval()
    with torch.no_grad():
        before = model(x)
    for solver in ("newton", "block"):
        net = copy.deepcopy(model)
        report = pathcond.rescale(net, graph=graph, solver=solver)  # type: ignore[arg-type]
        assert report.converged
        assert all(p.device.type == device.type for p in net.parameters())
        with torch.no_grad():
            torch.testing.assert_close(net(x), before, rtol=1e-4, atol=1e-5)


def test_cpu_placement() -> None:
    check_on(torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_placement() -> None:
    check_on(torch.device("cuda"))
