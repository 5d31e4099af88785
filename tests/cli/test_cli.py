"""The ``pathcond`` command line end to end on tiny synthetic experiments; bad input gives
one line on stderr, exit status 2, and no output file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from pathcond.cli import app
from pathcond.train.checkpoint import list_checkpoints, load_checkpoint

runner = CliRunner()
COMMANDS = ["train", "compare", "plot", "rescale", "diagnose", "stats", "check", "models",
            "datasets", "demo"]


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2, (code, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err + out
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command: str | None) -> None:
    code, out, _ = run(*([command] if command else []), "--help")
    assert code == 0
    assert "Usage" in out


def test_version_is_the_installed_one() -> None:
    """`pathcond --version` prints the package's version, the one pip installed (pyproject
    reads it from pathcond.__version__), and exits 0 without a command."""
    from importlib.metadata import version

    import pathcond

    code, out, _ = run("--version")
    assert code == 0
    assert out.startswith(f"pathcond {pathcond.__version__} (torch {torch.__version__}")
    assert version("pathcond") == pathcond.__version__


def test_train_resume_plot_rescale_diagnose(tmp_path: Path, tiny_yaml: Path) -> None:
    run_dir = tmp_path / "run"
    code, out, err = run("train", tiny_yaml, "--out", run_dir)
    assert code == 0, err
    assert "completed after 2 epochs" in out and str(run_dir) in out
    assert (run_dir / "metrics.csv").is_file() and (run_dir / "config.yaml").is_file()

    code, out, err = run("train", tiny_yaml, "--out", run_dir)
    assert_one_line_error(code, out, err, "already holds a run", "--resume")
    code, out, err = run("train", "--resume", run_dir, "--epochs", "3")
    assert code == 0, err
    assert "completed after 3 epochs" in out
    code, out, err = run("train", "--resume", run_dir, "--lr", "0.3")
    assert_one_line_error(code, out, err, "--resume can change only")

    code, out, err = run("plot", run_dir, "--format", "svg")
    assert code == 0, err
    assert (run_dir / "plots" / "curves.svg").is_file()

    code, out, err = run("rescale", run_dir, "--out", tmp_path / "r.pt")
    assert code == 0, err
    assert "AM/GM" in out and (tmp_path / "r.pt").is_file()
    assert load_checkpoint(tmp_path / "r.pt")["epoch"] == 3

    code, out, err = run("diagnose", list_checkpoints(run_dir)[-1][1])
    assert code == 0, err
    assert "before PathCond" in out and "Appendix J" in out


def test_train_with_pathcond_lr_scales_resumes_and_rescales(tmp_path: Path,
                                                            tiny_yaml: Path) -> None:
    run_dir = tmp_path / "run"
    code, out, err = run("train", tiny_yaml, "--out", run_dir, "--set",
                         "optimizer.lr_scales=pathcond")
    assert_one_line_error(code, out, err, "method 'pathcond' rescales already")
    assert not run_dir.exists()
    code, out, err = run("train", tiny_yaml, "--out", run_dir, "--method", "baseline",
                         "--set", "optimizer.lr_scales=pathcond")
    assert code == 0, err
    scales = yaml.safe_load((run_dir / "config.yaml").read_text())["optimizer"]["lr_scales"]
    assert isinstance(scales, dict) and "layers.0.weight" in scales
    code, out, err = run("train", "--resume", run_dir, "--epochs", "3")
    assert code == 0, err
    assert "completed after 3 epochs" in out
    code, out, err = run("rescale", run_dir, "--out", tmp_path / "r.pt")
    assert code == 0, err
    groups = load_checkpoint(tmp_path / "r.pt")["optimizer"]["param_groups"]
    assert len(groups) > 1  # the per-tensor groups were rebuilt from the saved mapping


def test_train_from_flags_only(tmp_path: Path) -> None:
    code, out, err = run(
        "train", "--dataset", "moons", "--set", "data.options={n: 200}", "--model", "mlp",
        "--arg", "widths=[2, 16, 2]", "--method", "{name: pathcond, every_epochs: 1}",
        "--optimizer", "adam", "--lr", "0.01", "--batch-size", "50", "--epochs", "2",
        "--seed", "1", "--device", "cpu", "--no-progress", "--out", tmp_path / "m",
        "--set", "output.plot=false", "--set", "training.threads=1")
    assert code == 0, err
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["label"] == "pathcond[every_epochs=1]" and summary["rescalings"] == 3
    assert summary["seed"] == 1


def test_compare_prints_a_table(tmp_path: Path, tiny_yaml: Path) -> None:
    out_dir = tmp_path / "cmp"
    code, out, err = run("compare", tiny_yaml, "--out", out_dir, "--seeds", "0,1",
                         "--method", "baseline", "--method", "{name: pathcond, every_epochs: 1}")
    assert code == 0, err
    assert "baseline" in out and "pathcond[every_epochs=1]" in out and "±" in out
    assert "epochs to target" in out
    assert (out_dir / "summary.csv").is_file()
    assert (out_dir / "baseline" / "seed_1" / "metrics.jsonl").is_file()
    code, out, err = run("compare", tiny_yaml, "--out", out_dir)
    assert_one_line_error(code, out, err, "not empty", "--resume")
    code, out, err = run("plot", out_dir / "baseline", out_dir / "pathcond_every_epochs=1",
                         "--out", tmp_path / "both.png")
    assert code == 0, err
    assert (tmp_path / "both.png").read_bytes()[:4] == b"\x89PNG"


def test_stats_models_datasets_diagnose() -> None:
    code, out, _ = run("models")
    assert code == 0 and "mlp" in out and "cifar_nv" in out
    code, out, _ = run("datasets")
    assert code == 0 and "mnist" in out and "synthetic" in out
    code, out, _ = run("stats", "mlp", "--arg", "widths=[6, 5, 3]")
    assert code == 0 and "paths" in out
    code, out, err = run("diagnose", "mlp", "--arg", "widths=[30, 20, 40, 5]", "--arg",
                         "bias=false", "--init", "kaiming", "--top", "2")
    assert code == 0, err
    assert "Kaiming" in out and "meas/pred" in out and "layers.0" in out
    assert "PathCond as learning rates" not in out
    code, out, err = run("diagnose", "mlp_bn", "--arg", "depth=2", "--arg", "width=8",
                         "--arg", "in_features=6", "--lr-factors")
    assert code == 0, err
    assert "PathCond as learning rates" in out and "layers.1.weight" in out


@pytest.mark.parametrize(("args", "fragments"), [
    (["train", "{tmp}/missing.yaml"], ["does not exist"]),
    (["train", "{tmp}/bad.yaml"], ["unknown key 'training.epoch'", "did you mean 'epochs'"]),
    (["train", "{yaml}", "--set", "optimizer.lr=-1"], ["optimizer.lr"]),
    (["train", "{yaml}", "--set", "nonsense"], ["not KEY=VALUE"]),
    (["train", "{yaml}", "--method", "sgdx"], ["unknown method 'sgdx'"]),
    (["train", "{yaml}", "--dataset", "cifar10", "--data-root", "{tmp}/nowhere"], ["cifar"]),
    (["train", "{yaml}", "--arg", "widths=[7, 3]"], ["does not accept"]),
    (["train", "{yaml}", "--model", "resnet99"], ["unknown model 'resnet99'"]),
    (["train", "--resume", "{tmp}/nowhere"], ["not a run directory"]),
    (["compare", "{yaml}", "--seeds", "a,b"], ["--seeds"]),
    (["compare", "{yaml}", "--method", "pathcond", "--method", "pathcond"], ["listed twice"]),
    (["plot", "{tmp}"], ["holds no run"]),
    (["plot", "{tmp}", "{tmp}"], ["--out"]),
    (["plot", "{tmp}/nowhere"], ["does not exist"]),
    (["rescale", "{tmp}/none.pt"], ["does not exist"]),
    (["rescale", "{tmp}/garbage.pt"], ["truncated or corrupted"]),
    (["diagnose", "no_such_model"], ["neither a zoo model"]),
    (["diagnose", "mlp", "--arg", "depth=3"], ["bad arguments"]),
    (["stats", "mlp", "--arg", "oops"], ["not KEY=VALUE"]),
])
def test_bad_input_one_line_exit_2(tmp_path: Path, tiny_yaml: Path, args: list[str],
                                   fragments: list[str]) -> None:
    (tmp_path / "bad.yaml").write_text("training:\n  epoch: 3\n")
    (tmp_path / "garbage.pt").write_bytes(b"\x00" * 50)
    assert_refused_in(tmp_path, [a.format(tmp=tmp_path, yaml=tiny_yaml) for a in args],
                      fragments)


def assert_refused_in(directory: Path, argv: list[str], fragments: list[str]) -> None:
    """Run the CLI from ``directory`` (where default run directories would land): one-line
    error naming ``fragments``, exit 2, nothing written."""
    before = sorted(p.name for p in directory.rglob("*"))
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        code, out, err = run(*argv)
    finally:
        os.chdir(cwd)
    assert_one_line_error(code, out, err, *fragments)
    assert sorted(p.name for p in directory.rglob("*")) == before  # nothing written


@pytest.mark.parametrize(("args", "fragments"), [
    (["stats", "mlp", "--arg", "widths=4"], ["MLP widths must be a list of integers"]),
    (["stats", "mlp", "--arg", "widths=[a, b]"], ["MLP widths must be integers"]),
    (["stats", "mlp", "--arg", "widths=[4, 3.5, 2]"], ["MLP widths must be integers"]),
    (["stats", "mlp", "--arg", "widths=[4, 3, 2]", "--arg", "bias=maybe"],
     ["'bias' must be true or false"]),
    (["stats", "tiny_resnet", "--arg", "num_classes=1.5"], ["'num_classes' must be an integer"]),
    (["stats", "tiny_resnet", "--arg", "widths=5"], ["tiny_resnet", "cannot build it"]),
    (["stats", "tiny_resnet", "--arg", "num_classes=0"], ["'fc'", "without entries"]),
    (["stats", "cifar_nv", "--arg", "in_channels=0"], ["input shape (0, 32, 32)"]),
    (["diagnose", "mlp_bn", "--arg", "depth=x"], ["'depth' must be an integer"]),
    (["train", "{yaml}", "--set", "data.options.noise=abc"], ["noise must be >= 0"]),
    (["train", "{yaml}", "--set", "data.options.input_shape=10"], ["input_shape must be a list"]),
    (["train", "{yaml}", "--set", "model.args.bias=flase"], ["'bias' must be true or false"]),
])
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_bad_model_and_data_values_one_line_exit_2(tmp_path: Path, tiny_yaml: Path,
                                                   args: list[str],
                                                   fragments: list[str]) -> None:
    """Values of the wrong type for zoo-model arguments and dataset options ended in a
    traceback (TypeError / ValueError / RuntimeError), or were accepted: ``widths=[4, 3.5,
    2]`` built 3 units, ``bias=maybe`` built biases."""
    assert_refused_in(tmp_path, [a.format(yaml=tiny_yaml) for a in args], fragments)


def test_real_entry_point_no_traceback(tmp_path: Path) -> None:
    """The installed console script: one line, exit 2, no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimizer: {lr: fast}\n")
    proc = subprocess.run([sys.executable, "-m", "pathcond.cli", "train", str(bad)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "optimizer.lr" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == [bad]


def test_rescaled_checkpoint_keeps_the_function(tmp_path: Path, tiny_yaml: Path) -> None:
    from pathcond.diagnostics.checkpoints import model_from_checkpoint

    run("train", tiny_yaml, "--out", tmp_path / "run", "--method", "baseline")
    src = list_checkpoints(tmp_path / "run")[-1][1]
    code, _, err = run("rescale", src)
    assert code == 0, err
    dst = src.with_name(src.stem + ".pathcond.pt")
    a, shape, _ = model_from_checkpoint(load_checkpoint(src), src)
    b, _, _ = model_from_checkpoint(load_checkpoint(dst), dst)
    x = torch.randn(5, *shape)
    torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-6)


def test_train_on_generated_cifar10_files(tmp_path: Path) -> None:
    """A dataset read from files the user points at (here: generated CIFAR-10 batches)."""
    from pathcond.data.synthetic import write_cifar10_batches

    write_cifar10_batches(tmp_path / "cifar-10-batches-py", n_per_batch=20)
    code, out, err = run("train", "--dataset", "cifar10", "--data-root", tmp_path,
                         "--model", "mlp", "--arg", "widths=[3072, 16, 10]", "--epochs", "1",
                         "--no-progress", "--out", tmp_path / "run", "--set",
                         "output.plot=false", "--set", "training.threads=1")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final"]["test_acc"] is not None  # the test batch is evaluated


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    """`pathcond demo` (what `make demo` runs), shortened: real MNIST, table and plot."""
    code, out, err = run("demo", "--limit", "2000", "--epochs", "1", "--seeds", "0,1",
                         "--out", tmp_path / "demo", "--no-progress")
    assert code == 0, err
    assert "baseline" in out and "pathcond" in out and "±" in out
    assert "PathCond (newton solver): converged" in out
    assert (tmp_path / "demo" / "plots" / "curves.png").is_file()


def test_demo_prints_the_rescaling_report(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo rescales its MLP as initialised for the first seed and prints the report."""
    import re

    from pathcond.cli import _print_demo_rescaling

    _print_demo_rescaling(0, 1)
    out = capsys.readouterr().out
    assert "seed 0" in out and "converged after" in out and "NOT converged" not in out
    before, after = map(float, re.search(r"AM/GM of path magnitudes: (\S+) -> (\S+)",
                                         out).groups())  # type: ignore[union-attr]
    assert after < before


def test_demo_config_file_is_what_the_demo_runs() -> None:
    """configs/mnist_demo.yaml holds the defaults of `pathcond demo` (make demo)."""
    import yaml

    from pathcond.cli import demo_config

    path = Path(__file__).resolve().parents[2] / "configs" / "mnist_demo.yaml"
    data = yaml.safe_load(path.read_text())
    data.pop("name"), data.pop("output")
    assert data == demo_config()


def test_command_list_has_one_paragraph_per_command() -> None:
    from pathcond.cli import app

    for info in app.registered_commands:
        assert info.short_help and "\n" not in info.short_help, info.name
