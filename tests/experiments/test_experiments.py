"""The experiment registry: every experiment's ``smoke`` scale runs, writes its summary and
figure, and is resumable and deterministic; the CLI command; failure messages."""

from __future__ import annotations

import copy
import json
import math
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import pathcond
from pathcond.errors import ConfigError
from pathcond.experiments import (
    SCALES,
    experiment_config,
    list_experiments,
    publish,
    run_experiment,
)
from pathcond.experiments._io import UnitStore, atomic_write_json, read_units
from pathcond.experiments.registry import check_overrides

ALL = list_experiments()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every experiment at the smoke scale, once (one torch thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("smoke")
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ALL:
            results[name] = run_experiment(name, scale="smoke", out_dir=root / name,
                                           progress=False)
    yield {"root": root, "results": results}
    torch.set_num_threads(threads)


def test_registry_lists_every_source_experiment() -> None:
    expected = {"fig1", "fig2", "fig3", "fig4", "fig5", "table1", "app_k", "app_l", "app_m",
                "thesis_mnist", "thesis_cifar", "thesis_fixed_value", "thesis_surfaces",
                "gsgd_mnist"}
    assert expected <= set(ALL)
    for name in ALL:
        info = experiment_config(name)
        assert set(info.scales) == set(SCALES), name
        assert info.claim and info.source, name


@pytest.mark.parametrize("name", ALL)
def test_smoke_runs_and_draws(smoke: dict[str, Any], name: str) -> None:
    result = smoke["results"][name]
    assert result.complete, result.summary.get("messages")
    assert (result.out_dir / "summary.json").is_file()
    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary["experiment"] == name and summary["scale"] == "smoke"
    assert result.figures
    for fig in result.figures:
        assert fig.is_file() and fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_skips_finished_units(smoke: dict[str, Any]) -> None:
    out = smoke["root"] / "fig5"
    before = json.loads((out / "units.json").read_text())["units"]
    result = run_experiment("fig5", scale="smoke", out_dir=out, progress=False)
    after = json.loads((out / "units.json").read_text())["units"]
    assert after == before
    assert result.seconds < 10


def test_lost_unit_is_recomputed_identically(smoke: dict[str, Any]) -> None:
    out = smoke["root"] / "thesis_mnist"
    data = json.loads((out / "units.json").read_text())
    key = next(k for k in data["units"] if k.startswith("gsgd_ones/"))
    removed = data["units"].pop(key)
    atomic_write_json(out / "units.json", data)
    run_experiment("thesis_mnist", scale="smoke", out_dir=out, progress=False)
    again = json.loads((out / "units.json").read_text())["units"][key]
    hist = [{k: v for k, v in r.items() if "time" not in k} for r in again["result"]["history"]]
    old = [{k: v for k, v in r.items() if "time" not in k} for r in removed["result"]["history"]]
    assert hist == old


def test_deterministic_for_a_seed(smoke: dict[str, Any], tmp_path: Path) -> None:
    first = smoke["results"]["fig4"].summary["points"]
    second = run_experiment("fig4", scale="smoke", out_dir=tmp_path / "again",
                            progress=False).summary["points"]
    assert first == second


def test_fig4_points_and_fig1_claims(smoke: dict[str, Any]) -> None:
    fig4 = smoke["results"]["fig4"].summary
    assert all(p[3] is not None and p[3] >= 0 for p in fig4["points"])
    fig1 = smoke["results"]["fig1"].summary
    assert set(fig1["runs"]) >= {"init0/original", "init0/pathcond"}
    # PathCond changes the parameters but not the lifted point phi_0 = (w v, b v).
    a, r = fig1["runs"]["init0/original"]["theta0"], fig1["runs"]["init0/pathcond"]["theta0"]
    assert a != r
    assert a[0] * a[2] == pytest.approx(r[0] * r[2], rel=1e-9)
    assert a[1] * a[2] == pytest.approx(r[1] * r[2], rel=1e-9)


def test_enorm_paper_setting_is_a_no_op_on_mlp_bn(smoke: dict[str, Any]) -> None:
    """With BatchNorm excluded, ENorm has nothing to balance in MLP_BN (every hidden unit is
    rescaled only through BatchNorm): its run equals the baseline's."""
    units = read_units(smoke["root"] / "fig2" / "units.json") or {}
    base = next(v for k, v in units.items() if "/baseline/" in k)["result"]["history"]
    enorm = next(v for k, v in units.items() if "/enorm/" in k)["result"]["history"]
    assert [r["train_loss"] for r in base] == [r["train_loss"] for r in enorm]


def test_fig_4_7_counts_the_runs_of_every_cell(smoke: dict[str, Any]) -> None:
    """The heat map tells a cell whose runs diverged from one with no finished run."""
    summary = smoke["results"]["thesis_fixed_value"].summary
    seeds = len(summary["params"]["seeds"])
    assert summary["runs_per_cell"] == [[seeds] * len(summary["lrs"])] * len(summary["values"])


def test_fig2_bn_published_sweeps_variant_is_capped(smoke: dict[str, Any]) -> None:
    """The ``solve`` options reach the rescaling, in the emulation and in the library's
    PathCond: both 10-sweep variants ran the coordinate solver, the emulation stopped at its
    10th sweep unconverged; the default variants ran the Newton solver to convergence."""
    table = smoke["results"]["fig2_bn"].summary["table"]
    capped = table["pathcond_reference_10sweeps"]["method_info"]
    assert capped and all(i["sweeps"] == 10 and not i["converged"]
                          and i["solver"] == "coordinate" and not i["function_preserving"]
                          for i in capped)
    library = table["pathcond_10sweeps"]["method_info"]
    assert library and all(i["sweeps"] <= 10 and i["solver"] == "coordinate" for i in library)
    for label in ("pathcond_reference", "pathcond"):
        infos = table[label]["method_info"]
        assert infos and all(i["converged"] and i["solver"] == "newton" for i in infos)


def test_fig2_bn_stop_at_ends_runs_at_the_target(tmp_path: Path) -> None:
    """``stop_at``: a run ends at the first epoch whose training accuracy reaches it."""
    res = run_experiment("fig2_bn", scale="smoke", out_dir=tmp_path / "f", progress=False,
                         overrides={"epochs": 3, "stop_at": 0.01, "targets": [0.01]},
                         only=[["baseline"]])
    units = read_units(tmp_path / "f" / "units.json") or {}
    (rec,) = [u["result"] for k, u in units.items() if k.startswith("baseline/")]
    assert [r["epoch"] for r in rec["history"]] == [0, 1] and rec["epochs_to_target"] == 1
    assert not res.complete
    with pytest.raises(ConfigError, match="stop_at must be a training accuracy"):
        run_experiment("fig2_bn", scale="smoke", out_dir=tmp_path / "g", progress=False,
                       overrides={"stop_at": 1.5})
    with pytest.raises(ConfigError, match="below the target 0.9"):
        run_experiment("fig2_bn", scale="smoke", out_dir=tmp_path / "g", progress=False,
                       overrides={"stop_at": 0.5})
    assert not (tmp_path / "g").exists()


def test_pathcond_lr_factor_is_the_weight_shrinkage_squared() -> None:
    """On MLP_BN, PathCond multiplies the columns of each BatchNorm'd weight by exp(-u); its
    lr factor is the geometric mean of (before / after)^2 over the entries of the weights of
    hidden layers 2..L (the first layer's inputs are not rescaled)."""
    from pathcond.experiments.fig2_mlp import pathcond_lr_factor
    from pathcond.models import mlp_bn

    torch.manual_seed(3)
    model = mlp_bn(3, width=16, in_features=12)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    factor = pathcond_lr_factor(model, (12,))
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # untouched
    rescaled = copy.deepcopy(model)
    pathcond.rescale(rescaled, (12,))
    after = dict(rescaled.named_parameters())
    hidden = [n for n, p in model.named_parameters() if p.dim() == 2][1:-1]
    logs = torch.cat([2 * (before[n].abs().log() - after[n].detach().abs().log()).reshape(-1)
                      for n in hidden])
    assert factor != 1.0
    assert factor == pytest.approx(math.exp(float(logs.mean())), rel=1e-3)


def test_fig2_lr_matched_control_runs_sgd_at_pathcond_factor(smoke: dict[str, Any]) -> None:
    summary = smoke["results"]["fig2"].summary
    row = summary["table"][0]
    factor = row["pathcond_lr_factor"]["mean"]
    assert factor > 0 and factor != 1.0
    assert summary["pathcond_lr_factor_by_depth"][str(row["depth"])] == factor
    units = read_units(smoke["root"] / "fig2" / "units.json") or {}
    matched = next(v for k, v in units.items() if "/sgd_lr_matched/" in k)
    base = next(v for k, v in units.items() if "/baseline/" in k)
    lr = base["spec"]["config"]["optimizer"]["lr"]
    assert matched["spec"]["config"]["optimizer"]["lr"] == pytest.approx(lr * factor)
    assert matched["spec"]["config"]["method"] == "baseline"
    assert "epochs_to_target" in row["sgd_lr_matched"]


FIG5_CONTROLS = ["baseline", "pathcond",
                 {"label": "sgd_lr_output", "method": "baseline",
                  "lr_from_pathcond": ["decoder.2.weight"]},
                 {"label": "sgd_lr_tensors", "method": "baseline", "lr_from_pathcond": "all"}]


def test_fig5_controls_train_sgd_at_pathcond_factors(tmp_path: Path) -> None:
    """The Fig 5 controls are plain SGD with PathCond's geometric-mean learning-rate factors
    as parameter groups: on the output weights only, or on every parameter it rescales."""
    from pathcond.experiments._lr import pathcond_factors, seeded_model

    result = run_experiment("fig5", scale="smoke", out_dir=tmp_path, progress=False,
                            overrides={"ks": [7], "methods": FIG5_CONTROLS})
    assert result.complete
    units = read_units(tmp_path / "units.json") or {}
    output = units["k=7/lr=0.01/sgd_lr_output/seed=0"]["spec"]["config"]
    tensors = units["k=7/lr=0.01/sgd_lr_tensors/seed=0"]["spec"]["config"]
    assert output["method"] == tensors["method"] == "baseline"
    _, factors = pathcond_factors(seeded_model("mnist_autoencoder", 0, k=7), (784,))
    want = math.exp(float(factors["decoder.2.weight"].log().mean()))
    assert output["optimizer"]["lr_scales"] == {"decoder.2.weight": pytest.approx(want,
                                                                                   rel=1e-3)}
    assert want > 4  # PathCond speeds the output layer of the k = 7 autoencoder up
    assert set(tensors["optimizer"]["lr_scales"]) == set(factors)
    rows = result.summary["table"]
    assert rows and all(r["sgd_lr_output"]["mean"] is not None for r in rows)


def test_fig5_control_naming_an_unscaled_parameter_is_refused(tmp_path: Path) -> None:
    bad = ["baseline", {"label": "c", "method": "baseline", "lr_from_pathcond": ["nope"]}]
    with pytest.raises(ConfigError, match="does not rescale 'nope'"):
        run_experiment("fig5", scale="smoke", out_dir=tmp_path, progress=False,
                       overrides={"methods": bad})


def test_table1_with_a_model_of_yours_points_to_stats(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pathcond stats mynets:Net --input-shape"):
        run_experiment("table1", scale="smoke", out_dir=tmp_path / "out", progress=False,
                       overrides={"models": ["resnet18", "mynets:Net"]})
    assert not (tmp_path / "out").exists()


def test_table1_smoke_matches_the_paper(smoke: dict[str, Any]) -> None:
    rows = smoke["results"]["table1"].summary["rows"]
    assert rows and all(r["matches"] for r in rows)


def test_publish_copies_results_and_figures(smoke: dict[str, Any], tmp_path: Path) -> None:
    written = publish(smoke["results"]["table1"], results_dir=tmp_path / "results",
                      figures_dir=tmp_path / "figures")
    assert (tmp_path / "results" / "table1_smoke.json").is_file()
    assert (tmp_path / "figures" / "table1_smoke.png").is_file()
    assert len(written) == 2


def test_unavailable_method_is_one_line_and_partial(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    import pathcond.optim

    monkeypatch.delattr(pathcond.optim, "GSGD")
    result = run_experiment("gsgd_mnist", scale="smoke", out_dir=tmp_path, progress=False)
    assert not result.complete
    assert any("gsgd" in m and "not available" in m for m in result.summary["messages"])
    assert all("\n" not in m for m in result.summary["messages"])


def test_unknown_names_and_scales() -> None:
    with pytest.raises(ConfigError, match="unknown experiment"):
        run_experiment("fig99", scale="smoke")
    with pytest.raises(ConfigError, match="scale"):
        run_experiment("fig1", scale="huge")


def test_unit_store_spec_change_recomputes(tmp_path: Path) -> None:
    store = UnitStore(tmp_path, {"experiment": "x"}, resume=True)
    calls = []
    assert store.run("a", {"n": 1}, lambda: calls.append(1) or 1.0) == 1.0
    again = UnitStore(tmp_path, {"experiment": "x"}, resume=True)
    assert again.run("a", {"n": 1}, lambda: calls.append(2) or 2.0) == 1.0
    assert again.run("a", {"n": 2}, lambda: calls.append(3) or 3.0) == 3.0
    assert calls == [1, 3]
    assert again.replaced == ["a"] and again.computed == {"a"}
    assert UnitStore(tmp_path, {"experiment": "x"}, resume=False).units == {}


def test_cli_run_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pathcond.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["run", "thesis_surfaces", "--scale", "smoke", "--out",
                              str(tmp_path / "s"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "thesis_surfaces.png").is_file()
    res = runner.invoke(app, ["run", "nope", "--scale", "smoke"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["experiments"])
    assert res.exit_code == 0 and "fig4" in res.output


def test_tagged_variant_overrides_and_publishes_beside(tmp_path: Path) -> None:
    """--set/--tag: a variant of a scale (e.g. a full protocol on substitute data) runs in
    its own directory, records its overrides and publishes under NAME_SCALE-TAG."""
    res = run_experiment("thesis_surfaces", scale="smoke", out_dir=tmp_path / "v",
                         progress=False, overrides={"grid": 12}, tag="g12")
    assert res.label == "smoke-g12" and res.summary["params"]["grid"] == 12
    assert res.summary["variant"] == {"tag": "g12", "overrides": {"grid": 12}}
    written = publish(res, results_dir=tmp_path / "results", figures_dir=tmp_path / "figs")
    names = sorted(p.name for p in written)
    assert "thesis_surfaces_smoke-g12.json" in names
    assert any(n.endswith("_smoke-g12.png") for n in names)
    with pytest.raises(ConfigError, match="no parameter 'gird'"):
        run_experiment("thesis_surfaces", scale="smoke", out_dir=tmp_path / "w",
                       progress=False, overrides={"gird": 12}, tag="x")
    with pytest.raises(ConfigError, match="tag"):
        run_experiment("thesis_surfaces", scale="smoke", out_dir=tmp_path / "w",
                       progress=False, tag="a/b")


def test_cli_set_needs_a_tag(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pathcond.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["run", "thesis_surfaces", "--scale", "smoke", "--set", "grid=12",
                              "--publish", "--out", str(tmp_path / "s"), "--quiet"])
    assert res.exit_code == 2 and "--tag" in res.output
    res = runner.invoke(app, ["run", "thesis_surfaces", "--scale", "smoke", "--set", "grid=12",
                              "--tag", "g12", "--out", str(tmp_path / "s"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "smoke-g12" in res.output
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["params"]["grid"] == 12


def test_runtime_overrides_make_no_variant(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pathcond.cli import app

    res = CliRunner().invoke(app, ["run", "thesis_surfaces", "--scale", "smoke", "--set",
                                   "threads=1", "--out", str(tmp_path / "t"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "variant" not in json.loads((tmp_path / "t" / "summary.json").read_text())


def test_fresh_directory_reuses_published_and_partial_units(smoke: dict[str, Any],
                                                            tmp_path: Path) -> None:
    """Units kept in the repository (published results, or the finished units of an
    unfinished run under results/partial/) are reused by a run in a fresh directory."""
    results = tmp_path / "results"
    publish(smoke["results"]["fig5"], results_dir=results, figures_dir=tmp_path / "figs")
    units = json.loads((results / "fig5_smoke.json").read_text())["units"]
    result = run_experiment("fig5", scale="smoke", out_dir=tmp_path / "fresh", progress=False,
                            results_dir=results)
    assert json.loads((tmp_path / "fresh" / "units.json").read_text())["units"] == units
    assert result.seconds < 10  # nothing retrained
    partial = results / "partial"
    partial.mkdir()
    kept = dict(list(units.items())[:1])
    atomic_write_json(partial / "fig5_smoke.units.json", {"units": kept})
    (results / "fig5_smoke.json").unlink()
    run_experiment("fig5", scale="smoke", out_dir=tmp_path / "fresh2", progress=False,
                   results_dir=results)
    again = json.loads((tmp_path / "fresh2" / "units.json").read_text())["units"]
    key = next(iter(kept))
    assert again[key] == kept[key] and set(again) == set(units)


def test_no_train_draws_from_finished_units_only(smoke: dict[str, Any],
                                                 tmp_path: Path) -> None:
    """--no-train: a progress report of a long run. Units not finished are skipped (counted,
    the summary partial), the figure is drawn from the others, nothing is written to the
    run's store and nothing is trained."""
    units = json.loads((smoke["results"]["fig5"].out_dir / "units.json").read_text())["units"]
    trained = [k for k in units if not k.startswith("rescale/")]
    out = tmp_path / "report"
    keep = {k: v for k, v in units.items() if k.startswith("rescale/") or k == trained[0]}
    atomic_write_json(out / "units.json", {"header": {"experiment": "fig5", "scale": "smoke"},
                                           "units": keep})
    before = (out / "units.json").read_bytes()
    result = run_experiment("fig5", scale="smoke", out_dir=out, progress=False, train=False,
                            results_dir=tmp_path / "none")
    assert not result.complete
    assert result.summary["units_skipped"] == len(trained) - 1
    assert any("--no-train" in m for m in result.summary["messages"])
    assert (out / "fig5.png").is_file() and (out / "summary.json").is_file()
    assert (out / "units.json").read_bytes() == before
    assert not (out / "runs").exists()
    # publishing the report keeps every unit it used, though none was written to `out`
    elsewhere = run_experiment("fig5", scale="smoke", out_dir=tmp_path / "fresh",
                               progress=False, train=False, results_dir=out.parent / "r0")
    assert all(k.startswith("rescale/") for k in elsewhere.units)  # computed, not trained
    assert not (tmp_path / "fresh" / "units.json").exists()
    publish(result, results_dir=tmp_path / "r", figures_dir=tmp_path / "figs")
    assert read_units(tmp_path / "r" / "fig5_smoke.json") == read_units(out / "units.json")
    again = run_experiment("fig5", scale="smoke", out_dir=tmp_path / "fresh2", progress=False,
                           train=False, results_dir=tmp_path / "r")
    publish(again, results_dir=tmp_path / "r2", figures_dir=tmp_path / "figs")
    assert read_units(tmp_path / "r2" / "fig5_smoke.json") == read_units(out / "units.json")
    with pytest.raises(ConfigError, match="no-train"):
        run_experiment("fig5", scale="smoke", out_dir=out, progress=False, train=False,
                       resume=False)


@pytest.mark.parametrize("name", ALL)
def test_redrawing_a_finished_run_gives_the_same_summary(smoke: dict[str, Any],
                                                         name: str) -> None:
    """A summary computed as the units finish equals the one --no-train computes from the
    stored units, to the bit (a republish changes nothing)."""
    first = smoke["results"][name]
    again = run_experiment(name, scale="smoke", out_dir=first.out_dir, progress=False,
                           train=False)
    drop = {"seconds", "wall_time", "messages", "units_skipped"}
    assert ({k: v for k, v in again.summary.items() if k not in drop}
            == {k: v for k, v in first.summary.items() if k not in drop})


def test_cli_no_train(smoke: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pathcond.cli import app

    res = CliRunner().invoke(app, ["run", "gsgd_mnist", "--scale", "smoke", "--no-train",
                                   "--out", str(tmp_path / "g"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "partial" in res.output and "--no-train" in res.output


def test_grids_run_seeds_outermost(tmp_path: Path) -> None:
    """An interrupted grid holds whole seeds (every method x lr); Fig 5 leaves its costliest
    k (the smallest) for after every other k at every seed."""
    run_experiment("thesis_mnist", scale="smoke", out_dir=tmp_path / "t", progress=False,
                   overrides={"seeds": [0, 1], "methods": ["sgd", "weightfix_ones"],
                              "lrs": [0.1, 0.01]})
    keys = list(json.loads((tmp_path / "t" / "units.json").read_text())["units"])
    seeds = [k.rsplit("seed=", 1)[1] for k in keys]
    assert seeds == sorted(seeds) and len(keys) == 8
    run_experiment("fig5", scale="smoke", out_dir=tmp_path / "f", progress=False,
                   overrides={"seeds": [0, 1]})
    keys = [k for k in json.loads((tmp_path / "f" / "units.json").read_text())["units"]
            if not k.startswith("rescale/")]
    ks = [k.split("/")[0] for k in keys]
    assert ks == ["k=7"] * 4 + ["k=2"] * 4
    assert [k.rsplit("seed=", 1)[1] for k in keys[:4]] == ["0", "0", "1", "1"]


def test_shared_units_are_reused_from_published_results(smoke: dict[str, Any],
                                                        tmp_path: Path) -> None:
    """App M shares Fig 5's units: on a fresh clone it redraws from results/fig5_*.json
    (the output directory of Fig 5 is not there) without training."""
    results = tmp_path / "results"
    publish(smoke["results"]["fig5"], results_dir=results, figures_dir=tmp_path / "figs")
    result = run_experiment("app_m", scale="smoke", out_dir=tmp_path / "runs" / "app_m-smoke",
                            progress=False, results_dir=results, train=False)
    assert result.complete, result.summary["messages"]
    publish(result, results_dir=results, figures_dir=tmp_path / "figs")
    assert read_units(results / "app_m_smoke.json") == {}  # kept once, in Fig 5's file


@pytest.mark.parametrize("name", ["thesis_mnist", "thesis_cifar"])
def test_thesis_grids_name_known_methods_at_every_scale(name: str) -> None:
    """The full scale never runs in the tests: its method list is checked here."""
    from pathcond.experiments.thesis import LABELS, METHOD_SPECS

    info = experiment_config(name)
    for scale in SCALES:
        methods = info.params(scale)["methods"]
        assert methods and set(methods) <= set(METHOD_SPECS), (scale, methods)
        assert set(methods) <= set(LABELS)
    thesis_own = {"sgd", "gsgd_ones", "weightfix_ones", "weightfix_not1", "adam",
                  "weightfix_adam_ones", "gadam_ones"}
    assert thesis_own <= set(info.params("full")["methods"])


def test_publish_keeps_only_the_units_the_run_used(smoke: dict[str, Any],
                                                  tmp_path: Path) -> None:
    """A directory shared with another run (``--out``) or holding units of an older grid
    publishes only what this run's figure and summary were made from."""
    out = tmp_path / "shared"
    shutil.copytree(smoke["root"] / "fig5", out)
    data = json.loads((out / "units.json").read_text())
    mine = set(read_units(out / "units.json") or {})
    data["units"]["other/run"] = {"spec": {"x": 1}, "result": {"value": 0}}
    atomic_write_json(out / "units.json", data)
    result = run_experiment("fig5", scale="smoke", out_dir=out, progress=False,
                            results_dir=tmp_path / "none")
    assert set(result.units) == mine
    publish(result, results_dir=tmp_path / "r", figures_dir=tmp_path / "figs")
    assert set(read_units(tmp_path / "r" / "fig5_smoke.json") or {}) == mine


def test_thesis_signal_at_init_shows_the_value_one(smoke: dict[str, Any]) -> None:
    """PyTorch's init shrinks the signal layer by layer; the fixed weights := 1 (Fixed SGD's
    starting point) keep it, and give much larger gradients."""
    sig = smoke["results"]["thesis_mnist"].summary["signal_at_init"]
    widths = smoke["results"]["thesis_mnist"].summary["widths"]
    ref, ones = sig["pytorch_init"], sig["fixed_weights_ones"]
    for rec in (ref, ones):
        assert len(rec["preactivation_rms"]) == len(rec["grad_norm"]) == len(widths) - 1
    assert ones["preactivation_rms"][0] == pytest.approx(ref["preactivation_rms"][0])
    assert ones["preactivation_rms"][-1] > 5 * ref["preactivation_rms"][-1]
    assert ones["grad_norm"][0] > 5 * ref["grad_norm"][0]


def test_only_trains_the_chosen_units_first(tmp_path: Path) -> None:
    """--only: a chosen part of a long experiment, in its own output directory; the rest
    follows in a later run that keeps what was finished."""
    out = tmp_path / "fig5"
    part = run_experiment("fig5", scale="smoke", out_dir=out, progress=False,
                          overrides={"seeds": [0, 1]}, only=[["seed=1"], ["k=7", "k=4"]])
    trained = [k for k in read_units(out / "units.json") or {} if not k.startswith("rescale/")]
    assert trained == ["k=7/lr=0.01/baseline/seed=1", "k=7/lr=0.01/pathcond/seed=1"]
    assert not part.complete and part.summary["units_skipped"] == 6
    assert any("--only" in m and "seed=1" in m for m in part.summary["messages"])
    kept = (read_units(out / "units.json") or {})[trained[0]]
    rest = run_experiment("fig5", scale="smoke", out_dir=out, progress=False,
                          overrides={"seeds": [0, 1]})
    assert rest.complete
    assert (read_units(out / "units.json") or {})[trained[0]] == kept
    with pytest.raises(ConfigError, match="--only"):
        run_experiment("fig5", scale="smoke", out_dir=out, progress=False, only=[[" "]])


def test_cli_only(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pathcond.cli import app

    res = CliRunner().invoke(app, ["run", "fig5", "--scale", "smoke", "--only", "k=7",
                                   "--out", str(tmp_path / "f"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "partial" in res.output and "--only k=7" in res.output
    trained = [k for k in read_units(tmp_path / "f" / "units.json") or {}
               if not k.startswith("rescale/")]
    assert trained and all(k.startswith("k=7/") for k in trained)


def test_unfinished_grid_is_summarised_over_its_whole_seeds(tmp_path: Path) -> None:
    """A thesis grid with seed 0 finished everywhere and seed 1 in one cell only averages
    seed 0 alone, so that every method x lr compares the same runs."""
    over = {"seeds": [0, 1], "methods": ["sgd", "weightfix_ones"], "lrs": [0.1]}
    out = tmp_path / "t"
    run_experiment("thesis_mnist", scale="smoke", out_dir=out, progress=False, overrides=over,
                   only=[["seed=0"]])
    run_experiment("thesis_mnist", scale="smoke", out_dir=out, progress=False, overrides=over,
                   only=[["seed=1"], ["sgd"]])
    part = run_experiment("thesis_mnist", scale="smoke", out_dir=out, progress=False,
                          overrides=over, train=False)
    assert not part.complete and part.summary["seeds_used"] == [0]
    assert part.summary["table"]["sgd"]["per_lr"]["0.1"]["runs"] == 1
    whole = run_experiment("thesis_mnist", scale="smoke", out_dir=out, progress=False,
                           overrides=over)
    assert whole.complete and whole.summary["seeds_used"] == [0, 1]
    assert whole.summary["table"]["sgd"]["per_lr"]["0.1"]["runs"] == 2


def test_grid_with_no_whole_seed_is_summarised_over_the_furthest_seed(tmp_path: Path) -> None:
    """With no seed finished everywhere, the summary uses the seed with the most finished
    cells rather than every seed of each cell (which would average 2 runs in one cell and
    1 in the others)."""
    over = {"seeds": [0, 1], "methods": ["sgd", "weightfix_ones"], "lrs": [0.1, 0.01]}
    out = tmp_path / "t"
    run_experiment("thesis_mnist", scale="smoke", out_dir=out, progress=False, overrides=over,
                   only=[["seed=0"], ["sgd"]])
    run_experiment("thesis_mnist", scale="smoke", out_dir=out, progress=False, overrides=over,
                   only=[["seed=0"], ["lr=0.1"]])
    run_experiment("thesis_mnist", scale="smoke", out_dir=out, progress=False, overrides=over,
                   only=[["seed=1"], ["sgd"], ["lr=0.1"]])
    part = run_experiment("thesis_mnist", scale="smoke", out_dir=out, progress=False,
                          overrides=over, train=False)
    assert not part.complete and part.summary["seeds_used"] == [0]
    assert part.summary["table"]["sgd"]["per_lr"]["0.1"]["runs"] == 1
    assert part.summary["table"]["weightfix_ones"]["per_lr"]["0.01"]["runs"] == 0


@pytest.mark.parametrize("name", ALL)
def test_every_scale_passes_the_override_checks(name: str) -> None:
    """The checks of --set accept every scale's own parameters."""
    info = experiment_config(name)
    for scale in info.scales:
        params = info.params(scale)
        check_overrides(params, params)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"seeds": "abc"}, "--set seeds=\"abc\": expected a non-empty list of non-negative"),
    ({"seeds": 0}, "--set seeds=0: expected a non-empty list"),
    ({"seeds": []}, "--set seeds=\\[\\]: expected a non-empty list"),
    ({"seeds": [-1]}, "non-negative integers"),
    ({"epochs": -1}, "--set epochs=-1: expected a positive integer"),
    ({"epochs": "abc"}, "positive integer"),
    ({"threads": 0}, "--set threads=0: expected a positive integer"),
    ({"batch_size": 0}, "positive integer"),
    ({"lrs": ["abc"]}, "--set lrs=\\[\"abc\"\\]: expected a non-empty list of positive numbers"),
    ({"ks": ["abc"]}, "positive integers"),
    ({"data": 3}, "--set data=3: expected a mapping"),
    ({"data": {"name": 3}}, "--set data.name=3: expected a string"),
    ({"lr_order": [0.1, "x"]}, "--set lr_order=\\[0.1, \"x\"\\]: expected a list"),
])
def test_bad_set_values_are_one_line_errors_and_write_nothing(tmp_path: Path,
                                                             overrides: dict[str, Any],
                                                             message: str) -> None:
    out = tmp_path / "o"
    with pytest.raises(ConfigError, match=message) as err:
        run_experiment("fig5", scale="smoke", out_dir=out, progress=False,
                       overrides=overrides, tag="t")
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_a_failing_run_leaves_no_directory_it_made(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with pytest.raises(ConfigError, match="nope"):
        run_experiment("thesis_mnist", scale="smoke", out_dir=out, progress=False,
                       overrides={"data": {"name": "nope"}}, tag="t")
    assert not out.exists()
    with pytest.raises(ConfigError, match="nope"):
        run_experiment("thesis_mnist", scale="smoke", out_dir=out, progress=False,
                       overrides={"methods": ["nope"]}, tag="t")
    assert not out.exists()


def test_output_directory_of_something_else_is_refused(smoke: dict[str, Any],
                                                       tmp_path: Path) -> None:
    """--out naming another experiment's run, another scale's, or a directory holding other
    files is refused before anything is written there (with --restart too)."""
    theirs = smoke["root"] / "table1"
    before = (theirs / "units.json").read_bytes(), (theirs / "summary.json").read_bytes()
    for resume in (True, False):
        with pytest.raises(ConfigError, match="holds the run of table1 \\(smoke\\), "
                                              "not of thesis_surfaces \\(smoke\\)"):
            run_experiment("thesis_surfaces", scale="smoke", out_dir=theirs, progress=False,
                           resume=resume)
        with pytest.raises(ConfigError, match="not of table1 \\(cpu\\)"):
            run_experiment("table1", scale="cpu", out_dir=theirs, progress=False,
                           resume=resume)
    assert ((theirs / "units.json").read_bytes(), (theirs / "summary.json").read_bytes()) \
        == before
    other = tmp_path / "other"
    (other / "runs").mkdir(parents=True)
    (other / "summary.json").write_text('{"name": "a training run"}')
    with pytest.raises(ConfigError, match="not empty and holds no run of table1"):
        run_experiment("table1", scale="smoke", out_dir=other, progress=False, resume=False)
    assert (other / "runs").is_dir() and (other / "summary.json").is_file()
    drawn = tmp_path / "drawn"  # a --no-train run's directory holds its summary only
    run_experiment("table1", scale="smoke", out_dir=drawn, progress=False, train=False)
    assert run_experiment("table1", scale="smoke", out_dir=drawn, progress=False).complete


def test_output_directory_of_another_variant_is_refused(smoke: dict[str, Any]) -> None:
    """A tagged run into the untagged run's directory (or the other way round, or another
    tag's) is refused before it replaces that summary; the same tag runs again."""
    theirs = smoke["root"] / "table1"
    before = (theirs / "summary.json").read_bytes()
    for resume in (True, False):
        with pytest.raises(ConfigError, match="holds the summary of the untagged run of "
                                              "table1 \\(smoke\\), not of variant 'x': "
                                              "choose another --out, or run with no --tag"):
            run_experiment("table1", scale="smoke", out_dir=theirs, progress=False,
                           resume=resume, tag="x")
    assert (theirs / "summary.json").read_bytes() == before
    summary = json.loads(before)
    summary["variant"] = {"tag": "x", "overrides": {}}
    (theirs / "summary.json").write_text(json.dumps(summary))
    try:
        with pytest.raises(ConfigError, match="holds the summary of variant 'x' of table1 "
                                              "\\(smoke\\), not of the untagged run: "
                                              "choose another --out, or run with --tag x"):
            run_experiment("table1", scale="smoke", out_dir=theirs, progress=False)
        with pytest.raises(ConfigError, match="not of variant 'y'"):
            run_experiment("table1", scale="smoke", out_dir=theirs, progress=False, tag="y")
        assert run_experiment("table1", scale="smoke", out_dir=theirs, progress=False,
                              tag="x").complete
    finally:
        (theirs / "summary.json").write_bytes(before)


def test_only_matching_no_unit_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "f"
    with pytest.raises(ConfigError, match="--only k=99: no unit of fig5 \\(smoke\\) has this "
                                          "key part; parts: .*k=2, k=7.*seed=0"):
        run_experiment("fig5", scale="smoke", out_dir=out, progress=False, only=[["k=99"]])
    # nothing trained, no summary or figure; the rescaling units it computed are kept
    assert all(k.startswith("rescale/") for k in read_units(out / "units.json") or {})
    assert not (out / "summary.json").exists() and not (out / "fig5.png").exists()
    part = run_experiment("fig5", scale="smoke", out_dir=out, progress=False,
                          only=[["k=7", "k=99"]])
    assert any("no unit has the key part k=99" in m for m in part.summary["messages"])
    trained = [k for k in read_units(out / "units.json") or {} if not k.startswith("rescale/")]
    assert trained and all(k.startswith("k=7/") for k in trained)


def test_progress_lines_count_the_units_of_the_grid(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run_experiment("fig5", scale="smoke", out_dir=tmp_path / "f", progress=True,
                   only=[["k=2"]])
    lines = [line for line in capsys.readouterr().err.splitlines() if ": training (" in line]
    assert [line.split("; ")[-1] for line in lines] == ["unit 3/4)", "unit 4/4)"]
    assert "(1 epoch; unit 3/4)" in lines[0]
