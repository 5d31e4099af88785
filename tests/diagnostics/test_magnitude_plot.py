"""The per-layer magnitude distribution figure of ``pathcond diagnose --plot``."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from typer.testing import CliRunner

import pathcond
from pathcond.cli import app
from pathcond.diagnostics.magnitude_plot import (
    QUANTILES,
    magnitude_distributions,
    plot_magnitude_distributions,
)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 4 * 4, 5), nn.ReLU(),
                         nn.Linear(5, 3)).double()


def test_after_distribution_equals_the_rescaled_models(tmp_path: Path) -> None:
    model = net()
    shape = (2, 8, 8)
    graph = pathcond.rescaling_graph(model, shape)
    rescaled = copy.deepcopy(model)
    report = pathcond.rescale(rescaled, graph=graph)
    rows = magnitude_distributions(model, graph, report.log_scales)
    direct = magnitude_distributions(rescaled, graph, torch.zeros(graph.num_groups))
    assert [r.layer for r in rows] == [layer.name for layer in graph.layers]
    for predicted, measured in zip(rows, direct, strict=True):
        assert len(predicted.after) == len(QUANTILES)
        for a, b in zip(predicted.after, measured.before, strict=True):
            assert abs(a - b) < 1e-9
    out = plot_magnitude_distributions(rows, tmp_path / "fig" / "m.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "fig").glob("*.tmp*"))


def test_cli_plot_option(tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "mags.svg"
    result = runner.invoke(app, ["diagnose", "mlp", "--arg", "widths=[6,9,3,4]",
                                 "--plot", str(target)])
    assert result.exit_code == 0, result.output
    assert target.exists() and target.read_text().lstrip().startswith("<?xml")
    bad = runner.invoke(app, ["diagnose", "mlp", "--plot", str(tmp_path / "x.txt")])
    assert bad.exit_code == 2
    assert "--plot" in bad.output
