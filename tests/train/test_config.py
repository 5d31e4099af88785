"""Config validation: unknown keys and bad values are rejected in one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathcond.errors import ConfigError
from pathcond.train.config import (
    PathCondConfig,
    apply_overrides,
    load_config,
    method_label,
    parse_method,
    validate_config,
)

from .conftest import tiny_dict


def _error(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(data, "exp.yaml")  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("exp.yaml: ")
    return message


def test_defaults_validate() -> None:
    cfg = validate_config({})
    assert cfg.method.name == "baseline"
    assert cfg.training.epochs > 0
    assert [m.name for m in cfg.compare.methods] == ["baseline", "pathcond"]


@pytest.mark.parametrize(("data", "expected"), [
    ({"training": {"epoch": 3}}, "unknown key 'training.epoch' (did you mean 'epochs'?)"),
    ({"bogus": 1}, "unknown key 'bogus'"),
    ({"method": {"name": "pathcond", "every_step": 2}},
     "unknown key 'method.every_step' (did you mean 'every_steps'?)"),
    ({"compare": {"methods": ["baseline", {"name": "enorm", "cc": 1}]}},
     "unknown key 'compare.methods[1].cc'"),
    ({"training": {"epochs": -3}}, "training.epochs: input should be greater than 0"),
    ({"training": {"batch_size": "big"}}, "training.batch_size:"),
    ({"optimizer": {"name": "rmsprop"}}, "optimizer.name:"),
    ({"optimizer": {"lr": 0}}, "optimizer.lr:"),
    ({"optimizer": {"momentum": 1.5}}, "optimizer.momentum:"),
    ({"method": "nope"}, "method: unknown method 'nope'"),
    ({"compare": {"methods": ["baseline", "nope"]}}, "compare.methods[1]: unknown method"),
    ({"compare": {"methods": ["pathcond", "pathcond"]}}, "listed twice"),
    ({"compare": {"seeds": []}}, "compare.seeds: give at least one seed"),
    ({"method": {"name": "pathcond", "every_steps": 2, "every_epochs": 1}},
     "method: give at most one of every_steps and every_epochs"),
    ({"method": {"name": "pathcond", "am_gm_threshold": 0.5}}, "method.am_gm_threshold:"),
    ({"data": {"name": "imagenet"}}, "data.name: unknown dataset 'imagenet'"),
    ({"data": {"val_fraction": 1.5}}, "data.val_fraction:"),
    ({"model": {"name": "transformer"}}, "model.name: unknown model 'transformer'"),
    ({"device": "tpu"}, "device:"),
    ({"seed": -1}, "seed:"),
    ({"name": "a/b"}, "name:"),
    ({"training": {"target_accuracy": 2}}, "training.target_accuracy:"),
])
def test_errors_name_the_key(data: dict[str, object], expected: str) -> None:
    assert expected in _error(data)


def test_top_level_must_be_mapping() -> None:
    assert "mapping" in _error([1, 2])


def test_method_shorthand_and_labels() -> None:
    cfg = validate_config({"method": "pathcond"})
    assert isinstance(cfg.method, PathCondConfig)
    assert method_label(cfg.method) == "pathcond"
    assert method_label(parse_method({"name": "pathcond", "every_epochs": 2})) == \
        "pathcond[every_epochs=2]"
    with pytest.raises(ConfigError, match="unknown method"):
        parse_method("sgdx")


def test_init_and_the_legacy_set_to_one() -> None:
    assert parse_method("gsgd").init == "rescale"  # function-preserving default
    assert method_label(parse_method({"name": "gsgd", "init": "ones"})) == "gsgd[init=ones]"
    for name in ("gsgd", "weightfix"):
        for legacy, init in ((True, "rescale"), (False, "keep")):
            cfg = parse_method({"name": name, "set_to_one": legacy})
            assert cfg.init == init and "set_to_one" not in cfg.model_dump()
    with pytest.raises(ConfigError, match="init only"):
        parse_method({"name": "gsgd", "set_to_one": True, "init": "ones"})
    with pytest.raises(ConfigError, match="method.init"):
        parse_method({"name": "weightfix", "init": "one"})


def test_overrides() -> None:
    data = apply_overrides({"method": "pathcond"}, ["method.every_steps=3", "training.epochs=2",
                                                   "model.args.widths=[4, 3]"])
    assert data == {"method": {"name": "pathcond", "every_steps": 3},
                    "training": {"epochs": 2}, "model": {"args": {"widths": [4, 3]}}}
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        apply_overrides({}, ["training.epochs"])
    with pytest.raises(ConfigError, match="is not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_yaml_files(tmp_path: Path) -> None:
    import yaml

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny_dict()))
    assert load_config(good, ["training.epochs=5"]).training.epochs == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:.*line .*invalid YAML") as info:
        load_config(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    typo = tmp_path / "typo.yaml"
    typo.write_text("optimizer:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: unknown key 'optimizer.learning_rate'"):
        load_config(typo)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="empty.yaml' is empty: write at least its data"):
        load_config(empty)
    assert load_config(empty, ["training.epochs=2"]).training.epochs == 2


def test_example_configs_validate() -> None:
    root = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(root.glob("*.yaml"))
    assert files, "configs/ holds example experiments"
    for path in files:
        load_config(path)
