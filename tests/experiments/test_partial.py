"""keep_partial: the finished units of unfinished runs are kept once in results/partial/,
and a later fresh run reuses them."""

from __future__ import annotations

from pathlib import Path

from pathcond.experiments._io import atomic_write_json, pack_tables, read_units
from pathcond.experiments.partial import keep_partial


def _units(*keys: str) -> dict[str, dict[str, object]]:
    return {k: {"spec": {"k": k}, "result": {"history": [{"epoch": e, "loss": 1.0 / (e + 1)}
                                                         for e in range(3)]}} for k in keys}


def _write(path: Path, units: dict[str, dict[str, object]], **extra: object) -> None:
    atomic_write_json(path, {**extra, "units": pack_tables(units)}, indent=None)


def test_keeps_what_the_published_results_lack(tmp_path: Path) -> None:
    runs, results = tmp_path / "runs", tmp_path / "results"
    _write(runs / "fig5-full" / "units.json", _units("a", "b", "c"), header={})
    _write(results / "fig5_full.json", _units("a"), summary={})
    _write(runs / "thesis_cifar-full-fashion" / "units.json", _units("x"), header={})
    (runs / "not-an-experiment-dir").mkdir(parents=True)
    done = {k.target.name: k for k in keep_partial(runs, results)}
    assert done["fig5_full.units.json"].units == 2
    assert set(read_units(results / "partial" / "fig5_full.units.json") or {}) == {"b", "c"}
    assert read_units(results / "partial" / "thesis_cifar_full-fashion.units.json") == \
        _units("x")
    # once everything is published the partial file goes
    _write(results / "fig5_full.json", _units("a", "b", "c"), summary={})
    done = {k.target.name: k for k in keep_partial(runs, results)}
    assert done["fig5_full.units.json"].removed
    assert not (results / "partial" / "fig5_full.units.json").exists()


def test_units_shared_with_another_experiment_are_not_copied(tmp_path: Path) -> None:
    runs, results = tmp_path / "runs", tmp_path / "results"
    _write(runs / "app_m-cpu" / "units.json", _units("k=7/a", "k=7/b"), header={})
    _write(results / "fig5_cpu.json", _units("k=7/a"), summary={})
    _write(results / "partial" / "fig5_cpu.units.json", _units("k=7/b"))
    (kept,) = keep_partial(runs, results)
    assert kept.units == 0 and not kept.target.exists()


def test_units_published_by_a_tagged_variant_in_the_same_directory_are_not_copied(
        tmp_path: Path) -> None:
    runs, results = tmp_path / "runs", tmp_path / "results"
    _write(runs / "thesis_mnist-full" / "units.json", _units("sgd/0", "ctl/0", "sgd/1"),
           header={})
    _write(results / "thesis_mnist_full.json", _units("sgd/0"), summary={})
    _write(results / "thesis_mnist_full-controls.json", _units("sgd/0", "ctl/0"), summary={})
    _write(results / "thesis_mnist_cpu-controls.json", _units("sgd/1"), summary={})
    (kept,) = keep_partial(runs, results)
    assert kept.units == 1
    assert set(read_units(kept.target) or {}) == {"sgd/1"}  # another scale's file is not it
