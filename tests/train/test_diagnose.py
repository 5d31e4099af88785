"""``pathcond diagnose`` internals: Appendix J prediction, log-scales per layer, checkpoint
rescaling."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from pathcond.diagnostics.checkpoints import read_checkpoint, rescale_checkpoint
from pathcond.diagnostics.diagnose import appendix_j, diagnose, kaiming_init, load_model_source
from pathcond.errors import CheckpointError, ConfigError
from pathcond.graph import rescaling_graph
from pathcond.models import MLP, mlp_bn
from pathcond.train import train
from pathcond.train.checkpoint import list_checkpoints, load_checkpoint

from .conftest import tiny_config


def test_appendix_j_prediction_matches_kaiming() -> None:
    torch.manual_seed(0)
    widths = (300, 200, 100, 250, 10)
    model = MLP(widths, bias=False)
    kaiming_init(model)
    rows, _ = appendix_j(model, (widths[0],))
    assert rows is not None and len(rows) == 4
    depth = len(widths) - 1
    for row in rows:
        assert row.predicted_kaiming == pytest.approx(2 ** (depth - 1) * widths[-1]
                                                      / widths[row.index])
        # Exact for the layer moments; close to the Kaiming formula for wide layers.
        assert row.measured == pytest.approx(row.predicted, rel=0.05)
        assert row.measured == pytest.approx(row.predicted_kaiming, rel=0.15)


def test_appendix_j_with_biases_and_not_applicable() -> None:
    torch.manual_seed(1)
    rows, note = appendix_j(MLP((50, 40, 30, 5)), (50,))
    assert rows is not None and "E[b²]" in note
    for row in rows:
        assert row.measured == pytest.approx(row.predicted, rel=0.1)
    rows, note = appendix_j(mlp_bn(2, width=8, in_features=6), (6,))
    assert rows is None and "only for layered MLPs" in note


def test_diagnose_reports_and_leaves_model_alone() -> None:
    torch.manual_seed(0)
    model = MLP((20, 40, 5, 30, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = diagnose(model, (20,), top=2)
    assert d.report.am_gm_after < d.report.am_gm_before
    assert [s.layer for s in d.layers][-1] == "layers.6"
    assert d.layers[-1].rescaled_units == 0
    assert all(len(s.top) == 2 for s in d.layers[:-1])
    assert d.layers[0].max_abs == pytest.approx(abs(d.layers[0].top[0][1]))
    assert any("AM/GM" in line for line in d.lines())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    # After PathCond, every layer of a bias-free MLP has the same mean magnitude.
    torch.manual_seed(0)
    free = MLP((20, 40, 5, 30, 4), bias=False)
    rows = diagnose(free, (20,)).appendix_j
    assert rows is not None
    after = [r.measured_after for r in rows]
    assert max(after) == pytest.approx(min(after), rel=1e-6)


def test_diagnose_lr_factors_are_exp_minus_two_log_scales() -> None:
    """A weight entry (i, j) gets exp(-2 (u_i - u_j)), a bias exp(-2 u_i): the geometric
    means follow from the layers' mean log-scales, min and max from their extremes."""
    torch.manual_seed(0)
    model = MLP((12, 9, 7, 3))
    d = diagnose(model, (12,), lr_factors=True)
    assert d.lr_factors is not None
    assert [f.name for f in d.lr_factors] == [n for n, _ in model.named_parameters()]
    f = {x.name: x for x in d.lr_factors}
    graph = rescaling_graph(model, (12,))
    u0, u1 = (d.report.log_scales.double()[graph.layers[i].row_groups] for i in (0, 1))
    assert f["layers.0.weight"].entries == 108
    assert f["layers.0.weight"].geometric_mean == pytest.approx(math.exp(-2 * d.layers[0].mean))
    assert f["layers.2.weight"].geometric_mean == pytest.approx(
        math.exp(-2 * (float(u1.mean()) - float(u0.mean()))))
    assert f["layers.2.bias"].min == pytest.approx(math.exp(-2 * float(u1.max())))
    assert f["layers.4.weight"].max == pytest.approx(math.exp(2 * float(u1.max())))
    assert f["layers.4.bias"].geometric_mean == 1.0  # output units are never rescaled
    assert any("PathCond as learning rates" in line for line in d.lines())
    assert diagnose(model, (12,)).lr_factors is None


def test_load_model_source(tmp_path: Path) -> None:
    model, shape, title = load_model_source("mlp", {"widths": [6, 5, 2]}, init="kaiming")
    assert shape == (6,) and "Kaiming" in title
    with pytest.raises(ConfigError, match="neither a zoo model"):
        load_model_source(str(tmp_path / "nothing"), {})
    with pytest.raises(ConfigError, match="init must be"):
        load_model_source("mlp", {}, init="xavier")


def test_rescale_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(run, "training.epochs=2", "optimizer.momentum=0.9"))
    state, path = read_checkpoint(run)
    assert path == list_checkpoints(run)[-1][1]
    target, report = rescale_checkpoint(run)
    assert target.name == "epoch_0002.pathcond.pt" and report.am_gm_after <= report.am_gm_before
    assert [e for e, _ in list_checkpoints(run)] == [1, 2]  # not taken for an epoch file
    new = load_checkpoint(target)
    from pathcond.diagnostics.checkpoints import model_from_checkpoint

    old_model, shape, _ = model_from_checkpoint(state, path)
    new_model, _, _ = model_from_checkpoint(new, target)
    x = torch.randn(7, *shape)
    torch.testing.assert_close(new_model(x), old_model(x), rtol=1e-5, atol=1e-6)
    assert new["extra"]["pathcond_rescale"]["am_gm_after"] == report.am_gm_after
    buf_old = state["optimizer"]["state"][0]["momentum_buffer"]
    buf_new = new["optimizer"]["state"][0]["momentum_buffer"]
    assert not torch.equal(buf_old, buf_new)  # transported
    out = tmp_path / "copy.pt"
    assert rescale_checkpoint(path, out)[0] == out
    with pytest.raises(CheckpointError, match="does not exist"):
        rescale_checkpoint(tmp_path / "missing.pt")
    nested = tmp_path / "new" / "dir" / "x.pt"  # parents created, as train and run do
    assert rescale_checkpoint(path, nested)[0] == nested and nested.is_file()
    with pytest.raises(ConfigError, match="a parent of it is a file"):
        rescale_checkpoint(path, out / "x.pt")
    assert not (out / "x.pt").exists()


def test_rescale_checkpoint_in_place_is_what_resuming_continues_from(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(run, "training.epochs=2", "optimizer.momentum=0.9")
    train(cfg)
    control = tmp_path / "control"  # the same run, not rescaled
    shutil.copytree(run, control)
    _, newest = read_checkpoint(run)
    original = newest.read_bytes()
    target, report = rescale_checkpoint(run, in_place=True)
    assert target == newest and report.am_gm_after < report.am_gm_before
    assert newest.with_name("epoch_0002.before-pathcond.pt").read_bytes() == original
    assert [e for e, _ in list_checkpoints(run)] == [1, 2]
    resumed = train(tiny_config(run, "training.epochs=3", "optimizer.momentum=0.9"),
                    resume=True)
    plain = train(tiny_config(control, "training.epochs=3", "optimizer.momentum=0.9"),
                  resume=True)
    # epoch 3 started from the rescaled network
    assert resumed.history[-1]["epoch"] == plain.history[-1]["epoch"] == 3
    assert resumed.history[-1]["am_gm"] < plain.history[-1]["am_gm"]
    with pytest.raises(ConfigError, match="either an output file or in_place"):
        rescale_checkpoint(run, tmp_path / "x.pt", in_place=True)
    oldest = list_checkpoints(run)[0][1]
    with pytest.raises(ConfigError, match="not the newest epoch checkpoint"):
        rescale_checkpoint(oldest, in_place=True)


def test_kaiming_init_covers_transposed_convolutions() -> None:
    """E[W^2] = 2 / fan_in, the fan-in of a transposed convolution's output entry being
    in_per_group * kernel / stride; biases zeroed."""
    torch.manual_seed(0)
    up = torch.nn.ConvTranspose2d(64, 32, 4, stride=2, groups=2)
    kaiming_init(torch.nn.Sequential(up))
    fan_in = 32 * 16 / 4
    assert float(up.weight.detach().square().mean()) == pytest.approx(2.0 / fan_in, rel=0.05)
    assert float(up.bias.detach().abs().max()) == 0.0
