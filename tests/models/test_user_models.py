"""Models of the user's, named 'package.module:callable', in the registry, the trainer and
the command line (imported with the working directory first on the path)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pathcond.cli import app
from pathcond.errors import ConfigError
from pathcond.models import get_model, is_user_model, model_input_shape
from pathcond.train import ExperimentConfig, train, validate_config

SOURCE = '''
import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self, width: int = 4, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def not_a_model():
    return 3


def broken():
    raise KeyError("boom")
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of the user's in the working directory, under a name used once."""
    name = f"user_nets_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    return name


def test_a_user_model_is_built_with_its_arguments(user_module: str) -> None:
    name = f"{user_module}:Net"
    assert is_user_model(name) and not is_user_model("mlp")
    model = get_model(name, width=6)
    assert model.conv.out_channels == 6
    with pytest.raises(ConfigError, match="input shape"):
        model_input_shape(name)


@pytest.mark.parametrize(("attr", "kwargs", "match"), [
    ("nope", {}, "has no 'nope'"),
    ("not_a_model", {}, "not an nn.Module"),
    ("broken", {}, "cannot build it with {}: 'boom'"),
    ("Net", {"depth": 3}, "bad arguments"),
    ("Net", {"width": "wide"}, "must be an integer"),
])
def test_user_model_errors_are_one_line(user_module: str, attr: str, kwargs: dict,
                                        match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        get_model(f"{user_module}:{attr}", **kwargs)


def test_an_unknown_module_or_a_malformed_name_is_a_config_error(user_module: str) -> None:
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_here'"):
        get_model("no_such_module_here:Net")
    with pytest.raises(ConfigError, match="package.module:callable"):
        get_model(":Net")


def test_the_trainer_takes_the_input_shape_from_the_data_and_saves_it(
        user_module: str, tmp_path: Path) -> None:
    cfg = validate_config({
        "model": {"name": f"{user_module}:Net", "args": {"width": 3}},
        "data": {"name": "synthetic",
                 "options": {"n": 64, "input_shape": [1, 6, 6], "num_classes": 3}},
        "training": {"epochs": 1, "batch_size": 16, "threads": 1},
        "method": "pathcond", "output": {"progress": False, "plot": False},
    })
    result = train(cfg, run_dir=tmp_path / "run")
    assert result.status == "completed"
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["input_shape"] == [1, 6, 6]
    assert result.config.model.input_shape == [1, 6, 6]


def test_command_line_stats_and_diagnose_take_an_input_shape(user_module: str) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["stats", f"{user_module}:Net", "--input-shape", "1,8,8",
                              "--arg", "width=5"])
    assert out.exit_code == 0, out.output
    assert "hidden units          5" in out.output
    missing = runner.invoke(app, ["stats", f"{user_module}:Net"])
    assert missing.exit_code == 2
    assert "--input-shape" in missing.output
    bad = runner.invoke(app, ["diagnose", f"{user_module}:Net", "--input-shape", "1,x"])
    assert bad.exit_code == 2
    assert "positive ints" in bad.output
    good = runner.invoke(app, ["diagnose", f"{user_module}:Net", "--input-shape", "1,8,8"])
    assert good.exit_code == 0, good.output
    assert "AM/GM of the path magnitudes" in good.output


SEEDED = '''
import torch
from torch import nn

torch.manual_seed(1234)  # as scripts do


def make():
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 5), nn.ReLU(), nn.Linear(5, 3))


def no_parameters():
    return nn.Sequential(nn.Flatten(), nn.ReLU())
'''


def _config(model: dict, seed: int = 0, **data_options) -> ExperimentConfig:
    options = {"n": 64, "input_shape": [1, 6, 6], "num_classes": 3, **data_options}
    return validate_config({
        "seed": seed, "model": model, "data": {"name": "synthetic", "options": options},
        "training": {"epochs": 1, "batch_size": 16, "threads": 1},
        "output": {"progress": False, "plot": False}})


def test_a_module_seeding_at_import_does_not_override_the_run_seed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathcond.train import Trainer

    name = f"seeded_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(SEEDED)
    monkeypatch.chdir(tmp_path)
    first = [Trainer(_config({"name": f"{name}:make"}, seed=s), run_dir=tmp_path / str(s))
             for s in (0, 1)]
    weights = [t.model[1].weight.detach().clone() for t in first]
    assert not bool((weights[0] == weights[1]).all())
    again = Trainer(_config({"name": f"{name}:make"}, seed=0), run_dir=tmp_path / "again")
    assert bool((again.model[1].weight == weights[0]).all())
    with pytest.raises(ConfigError, match="no trainable parameters"):
        Trainer(_config({"name": f"{name}:no_parameters"}), run_dir=tmp_path / "none")


def test_a_given_input_shape_must_be_the_datas(user_module: str, tmp_path: Path) -> None:
    from pathcond.train import Trainer

    with pytest.raises(ConfigError, match=r"model.input_shape \[1, 8, 8\] disagrees"):
        Trainer(_config({"name": f"{user_module}:Net", "input_shape": [1, 8, 8]}),
                run_dir=tmp_path / "r")
    with pytest.raises(ConfigError, match="input_shape"):
        _config({"name": f"{user_module}:Net", "input_shape": []})


def test_diagnose_takes_an_existing_path_with_a_colon_as_a_path(user_module: str,
                                                                 tmp_path: Path) -> None:
    cfg = _config({"name": f"{user_module}:Net", "args": {"width": 3}})
    run = tmp_path / "runs" / "a:b"
    train(cfg, run_dir=run)
    out = CliRunner().invoke(app, ["diagnose", str(run)])
    assert out.exit_code == 0, out.output
    assert "AM/GM of the path magnitudes" in out.output


def test_a_missing_module_says_where_to_run_from(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="PYTHONPATH"):
        get_model("module_that_is_nowhere:Net")


def test_configs_without_an_input_shape_are_written_as_before() -> None:
    """model.input_shape is written only when set, so older versions read the files."""
    assert "input_shape" not in validate_config({}).to_dict()["model"]
    cfg = validate_config({"model": {"name": "mlp", "input_shape": [784]}})
    assert cfg.to_dict()["model"]["input_shape"] == [784]


def test_command_line_check_lists_every_reason(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"gelu_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(
        "from torch import nn\n\n\ndef make():\n    return nn.Sequential(nn.Linear(4, 8), "
        "nn.GELU(), nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 2))\n")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    bad = runner.invoke(app, ["check", f"{name}:make", "--input-shape", "4"])
    assert bad.exit_code == 1
    assert "GELU" in bad.output and "LayerNorm" in bad.output
    good = runner.invoke(app, ["check", "tiny_resnet"])
    assert good.exit_code == 0
    assert "supported:" in good.output
