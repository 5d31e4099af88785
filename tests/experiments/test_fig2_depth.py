"""Fig 2's depth-trend figure: speed-ups gathered from published results files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathcond.errors import PathcondError
from pathcond.experiments._io import atomic_write_json
from pathcond.experiments.fig2_depth import depth_trend, draw_depth_trend, main


def _history(accs: list[float]) -> list[dict[str, float]]:
    return [{"epoch": e, "train_acc": a} for e, a in enumerate([0.1, *accs])]


def _fig2_unit(accs: list[float], depth: int) -> dict[str, object]:
    config = {"data": {"name": "mnist"}, "optimizer": {"name": "sgd", "lr": 0.001},
              "training": {"batch_size": 128},
              "model": {"name": "mlp_bn", "args": {"depth": depth, "width": 500}}}
    return {"spec": {"config": config}, "result": {"history": _history(accs)}}


def _unit(accs: list[float], depth: int = 3, data: str = "mnist") -> dict[str, object]:
    spec = {"minimal_loop": 1, "data": {"name": data}, "depth": depth, "width": 500,
            "optimizer": {"name": "sgd", "lr": 0.001}, "batch_size": 128}
    return {"spec": spec, "result": {"history": _history(accs)}}


def _write(results: Path) -> None:
    reach = [0.5, 0.9, 0.995]  # 99% at epoch 3
    slow = [0.5, 0.6, 0.9, 0.95, 0.991, 0.999]  # at epoch 5
    never = [0.5, 0.6, 0.7, 0.8]  # not in 4 epochs
    fig2 = {}
    for seed in (0, 1):
        fig2[f"depth=3/lr=0.001/baseline/seed={seed}"] = _fig2_unit(
            slow if seed else [*slow[:4], 0.96, 0.992], 3)
        fig2[f"depth=3/lr=0.001/pathcond/seed={seed}"] = _fig2_unit(reach, 3)
        fig2[f"depth=4/lr=0.001/baseline/seed={seed}"] = _fig2_unit(reach, 4)
        fig2[f"depth=4/lr=0.001/pathcond/seed={seed}"] = _fig2_unit(never if seed else slow, 4)
        # another learning rate is not mixed in
        fig2[f"depth=4/lr=0.01/baseline/seed={seed}"] = _fig2_unit([0.995], 4)
    atomic_write_json(results / "fig2_full-mnist.json", {"units": fig2})
    atomic_write_json(results / "fig2_bn_full-mnist30.json", {"units": {
        "pathcond_reference/seed=0": _unit([0.995]),
        "pathcond_reference_10sweeps/seed=0": _unit(reach), "baseline/seed=0": _unit(never)}})
    atomic_write_json(results / "fig2_bn_full-emulation-d4.json", {"units": {
        "pathcond_reference/seed=0": _unit([0.1, 0.12], depth=4)}})


def test_speedups_bounds_and_divergence(tmp_path: Path) -> None:
    _write(tmp_path)
    points = {(p.method, p.depth): p for p in depth_trend(tmp_path)}
    # depth 3: baseline at epochs 6 and 5 (mean 5.5); PathCond at 3 in both seeds
    assert points["pathcond", 3].speedup == pytest.approx(5.5 / 3)
    assert not points["pathcond", 3].bound and points["pathcond", 3].epochs == (3, 3)
    # depth 4: baseline 3; PathCond 5 and not in 4 epochs: at least (5 + 4) / 2 epochs
    p4 = points["pathcond", 4]
    assert p4.bound and p4.epochs == (5, None) and p4.speedup == pytest.approx(3 / 4.5)
    assert points["pathcond_reference", 3].speedup == pytest.approx(5.5)
    assert points["pathcond_reference_10sweeps", 3].speedup == pytest.approx(5.5 / 3)
    assert points["pathcond_reference", 4].diverged
    assert ("pathcond_reference_10sweeps", 4) not in points  # no file: left out
    assert all(p.method != "baseline" for p in points.values())
    out = draw_depth_trend(list(points.values()), tmp_path / "f" / "trend.png")
    assert out.is_file() and out.stat().st_size > 10_000


def test_missing_fig2_results_is_one_line_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PathcondError, match="no Fig 2 units"):
        depth_trend(tmp_path)
    assert main(["--results", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    _write(tmp_path)
    assert main(["--results", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 0
    table = capsys.readouterr().out
    assert "pathcond | 1.83x | <0.67x" in table and "diverged" in table


def test_emulation_of_another_setting_is_refused(tmp_path: Path) -> None:
    """An emulation run on other data (or depth) than the Fig 2 baseline is not compared."""
    _write(tmp_path)
    atomic_write_json(tmp_path / "fig2_bn_full-emulation10-d4.json", {"units": {
        "pathcond_reference_10sweeps/seed=0": _unit([0.995], depth=4, data="fashion_mnist")}})
    with pytest.raises(PathcondError, match="fashion_mnist"):
        depth_trend(tmp_path)
    atomic_write_json(tmp_path / "fig2_bn_full-emulation10-d4.json", {"units": {
        "pathcond_reference_10sweeps/seed=0": _unit([0.995], depth=5)}})
    with pytest.raises(PathcondError, match="at depth 5"):
        depth_trend(tmp_path)
