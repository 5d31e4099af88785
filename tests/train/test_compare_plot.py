"""Comparisons over methods and seeds, their summary, and the plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathcond.errors import ConfigError
from pathcond.train import compare, plot_runs
from pathcond.train.compare import summary_table_lines
from pathcond.train.plot import collect_runs

from .conftest import tiny_config


def test_compare_runs_every_method_and_seed(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "cmp", "training.epochs=2", "training.target_accuracy=0.4",
                      "compare.methods=[baseline, pathcond]", "compare.seeds=[0, 1]",
                      "output.plot=true")
    result = compare(cfg)
    assert set(result.runs) == {"baseline", "pathcond"}
    assert all(len(v) == 2 for v in result.runs.values())
    for label in ("baseline", "pathcond"):
        for seed in (0, 1):
            assert (tmp_path / "cmp" / label / f"seed_{seed}" / "summary.json").is_file()
    rows = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert [r["method"] for r in rows] == ["baseline", "pathcond"]
    assert rows[0]["final.val_acc"]["n"] == 2 and rows[0]["final.val_acc"]["std"] is not None
    assert (tmp_path / "cmp" / "summary.csv").read_text().startswith("method,seeds,")
    assert result.plot is not None and result.plot.is_file()
    headers, body = summary_table_lines(result.rows)
    assert headers[:2] == ["method", "seeds"] and "±" in body[0][2]
    # Seeds differ, methods differ: the runs are not copies of each other.
    b0, b1 = (s["final"]["train_loss"] for s in result.runs["baseline"])
    assert b0 != b1

    # --resume keeps finished runs; more epochs continue them from their checkpoints.
    again = compare(cfg, resume=True)
    assert again.runs["baseline"][0]["final"] == result.runs["baseline"][0]["final"]
    with pytest.raises(ConfigError, match="not empty"):
        compare(cfg)


def test_compare_validates_before_running(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "cmp", "compare.methods=[baseline, pathcond]",
                      "model.args.widths=[5, 3]")
    with pytest.raises(ConfigError, match="does not accept"):
        compare(cfg)
    assert not (tmp_path / "cmp").exists()


def test_plot_groups_seeds_and_formats(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "cmp", "training.epochs=2", "compare.methods=[baseline]",
                      "compare.seeds=[0, 1, 2]")
    compare(cfg)
    groups = collect_runs([tmp_path / "cmp"])
    assert len(groups) == 1 and sorted(groups[0].seeds) == [0, 1, 2]
    svg = plot_runs([tmp_path / "cmp"], tmp_path / "figs" / "c.svg")
    assert svg.read_text().lstrip().startswith("<?xml")
    png = plot_runs([tmp_path / "cmp" / "baseline" / "seed_0"], tmp_path / "figs")
    assert png.name == "curves.png" and png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="holds no run"):
        plot_runs([tmp_path / "figs"], tmp_path / "x.png")
    with pytest.raises(ConfigError, match="must end in .png or .svg"):
        plot_runs([tmp_path / "cmp"], tmp_path / "x.pdf")
    assert not (tmp_path / "x.png").exists()
