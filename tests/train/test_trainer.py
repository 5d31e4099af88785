"""The training loop: outputs, determinism, resume bit-identical to an uninterrupted run,
PathCond schedules, divergence, refusal of bad input before any file is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import pathcond
from pathcond.errors import ConfigError
from pathcond.models import MODELS, ModelSpec
from pathcond.train import Trainer, train
from pathcond.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from pathcond.train.metrics import COLUMNS, read_metrics

from .conftest import tiny_config

TIME_KEYS = {"epoch_time", "eval_time", "rescale_time", "wall_time", "rescale_time_total"}


def _timeless(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in TIME_KEYS} for row in history]


def _assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        elif isinstance(a[key], dict):
            _assert_same_state(a[key], b[key])
        elif isinstance(a[key], list):
            assert len(a[key]) == len(b[key])
            for x, y in zip(a[key], b[key], strict=True):
                if isinstance(x, dict):
                    _assert_same_state(x, y)
                else:
                    assert x == y, key
        else:
            assert a[key] == b[key], key


def test_run_writes_everything(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", "method=pathcond", "training.target_accuracy=0.5",
                      "output.plot=true")
    result = train(cfg)
    run = result.run_dir
    for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "summary.json",
                 "plots/curves.png"):
        assert (run / name).is_file(), name
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert set(rows[0]) == set(COLUMNS)
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header.split(",") == list(COLUMNS)
    assert all(r["train_loss"] is not None and r["am_gm"] >= 1.0 for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 3
    assert summary["rescalings"] == 1
    assert summary["am_gm_start"] < summary["am_gm_init"]  # PathCond at init lowers AM/GM
    reached = summary["epochs_to_target"]
    assert reached == next(r["epoch"] for r in rows if r["train_acc"] >= 0.5)
    assert [e for e, _ in list_checkpoints(run)] == [2, 3]  # keep_checkpoints: 2
    assert not list(run.rglob("*.tmp"))


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = train(tiny_config(tmp_path / "a", "seed=3"))
    b = train(tiny_config(tmp_path / "b", "seed=3"))
    c = train(tiny_config(tmp_path / "c", "seed=4"))
    assert _timeless(a.history) == _timeless(b.history)
    assert _timeless(a.history) != _timeless(c.history)


def _dropout_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 24), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.fixture
def dropout_model() -> Any:
    """A zoo entry with dropout, so that resuming must restore the global RNG state."""
    MODELS["test_dropout_mlp"] = ModelSpec(_dropout_mlp, lambda kw: (12,), "test only")
    yield "test_dropout_mlp"
    del MODELS["test_dropout_mlp"]


@pytest.mark.parametrize("variant", [
    ("method=baseline",),
    ("method={name: pathcond, every_steps: 5}",),
    ("method={name: pathcond, every_epochs: 1}", "optimizer.name=adam", "optimizer.lr=0.01",
     "optimizer.momentum=0"),
    ("model.name=test_dropout_mlp", "model.args={}", "method={name: pathcond, every_steps: 7}"),
    ("model.name=test_dropout_mlp", "model.args={}", "optimizer.lr_scales=pathcond"),
])
def test_resume_is_bit_identical(tmp_path: Path, variant: tuple[str, ...],
                                 dropout_model: str) -> None:
    overrides = (*variant, "training.epochs=4")
    full = Trainer(tiny_config(tmp_path / "full", *overrides))
    full_result = full.run()
    rng_full = torch.get_rng_state()

    first = Trainer(tiny_config(tmp_path / "split", *overrides))
    part = first.run(stop_after=2)
    assert part.status == "interrupted" and len(part.history) == 3
    torch.manual_seed(12345)  # whatever happens in between must not matter
    second = Trainer(tiny_config(tmp_path / "split", *overrides))
    resumed = second.run(resume=True)
    rng_resumed = torch.get_rng_state()

    assert resumed.status == "completed"
    _assert_same_state(full.model.state_dict(), second.model.state_dict())
    _assert_same_state(full.optimizer.state_dict(), second.optimizer.state_dict())
    assert _timeless(full_result.history) == _timeless(resumed.history)
    assert torch.equal(rng_full, rng_resumed)
    assert full.method.rescalings == second.method.rescalings
    assert _timeless(read_metrics(tmp_path / "split")) == _timeless(full_result.history)
    ck_full = load_checkpoint(list_checkpoints(tmp_path / "full")[-1][1])
    ck_split = load_checkpoint(list_checkpoints(tmp_path / "split")[-1][1])
    _assert_same_state(ck_full["model"], ck_split["model"])


def test_resume_extends_epochs_and_refuses_other_changes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(run, "training.epochs=2"))
    longer = train(tiny_config(run, "training.epochs=3"), resume=True)
    assert [r["epoch"] for r in longer.history] == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="different 'optimizer.lr'"):
        Trainer(tiny_config(run, "training.epochs=4", "optimizer.lr=0.1")).run(resume=True)
    with pytest.raises(ConfigError, match="past training.epochs"):
        Trainer(tiny_config(run, "training.epochs=1")).run(resume=True)


def test_pathcond_schedules(tmp_path: Path) -> None:
    steps = train(tiny_config(tmp_path / "s", "method={name: pathcond, every_steps: 4}"))
    per_epoch = 6  # 192 training samples (240 less 20% validation), batches of 32
    assert steps.summary["steps"] == 3 * per_epoch
    assert steps.summary["rescalings"] == 1 + 3 * per_epoch // 4
    assert [r["rescalings"] for r in steps.history] == [1, 2, 4, 5]
    epochs = train(tiny_config(tmp_path / "e", "method={name: pathcond, every_epochs: 2}"))
    assert epochs.summary["rescalings"] == 2
    never = train(tiny_config(tmp_path / "n", "method={name: pathcond, at_init: false, "
                                              "am_gm_threshold: 1000}"))
    assert never.summary["rescalings"] == 0
    checked = train(tiny_config(tmp_path / "a", "method={name: pathcond, at_init: false, "
                                                "am_gm_threshold: 1.0, check_every: 6}"))
    assert checked.summary["rescalings"] == 3
    assert steps.summary["rescale_time_total"] > 0


def test_pathcond_at_init_keeps_the_function(tmp_path: Path) -> None:
    base = Trainer(tiny_config(tmp_path / "b", "training.epochs=1"))
    pc = Trainer(tiny_config(tmp_path / "p", "method=pathcond", "training.epochs=1"))
    x = base.train_x[:16]
    before = base.model(x)
    pc.method.on_train_begin()
    assert pc.method.rescalings == 1
    torch.testing.assert_close(pc.model(x), before, rtol=1e-5, atol=1e-6)


def test_divergence_stops_cleanly(tmp_path: Path) -> None:
    result = train(tiny_config(tmp_path / "d", "optimizer.lr=1e6", "training.epochs=4"))
    assert result.status == "diverged"
    assert result.history[-1]["train_loss"] is None
    json.loads((tmp_path / "d" / "summary.json").read_text())
    for line in (tmp_path / "d" / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # strict JSON: no NaN


def test_adam_and_autoencoding(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "ae", "data.task=autoencoding", "optimizer.name=adam",
                      "optimizer.lr=0.01", "optimizer.momentum=0", "model.args.widths=[12,6,12]",
                      "method=pathcond")
    result = train(cfg)
    assert result.history[0]["train_acc"] is None
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_image_autoencoding_with_a_convolutional_autoencoder(tmp_path: Path) -> None:
    """``image_autoencoding`` keeps the images' shape: the zoo's convolutional autoencoder
    (transposed convolutions, BatchNorm) trains on it with PathCond, and the flattened
    ``autoencoding`` is refused for it in one line."""
    data = {"name": "synthetic", "task": "image_autoencoding",
            "options": {"n": 96, "input_shape": [1, 8, 8], "num_classes": 2}}
    model = {"name": "conv_autoencoder", "args": {"image_size": 8, "width": 4}}
    trainer = Trainer(tiny_config(tmp_path / "cae", "method=pathcond", "optimizer.lr=0.01",
                                  data=data, model=model))
    assert tuple(trainer.train_x.shape[1:]) == (1, 8, 8)
    result = trainer.run()
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    with pytest.raises(ConfigError, match="does not accept synthetic-autoencoding samples"):
        Trainer(tiny_config(tmp_path / "flat", data={**data, "task": "autoencoding"},
                            model=model))


def test_a_zoo_model_run_at_another_size_uses_the_datas_shape(tmp_path: Path) -> None:
    """A fully convolutional zoo model on 12x12 images (its zoo shape is 28x28): the path
    quantities are those of the data's shape, which the run's config keeps for
    ``pathcond rescale RUN``."""
    data = {"name": "synthetic", "task": "image_autoencoding",
            "options": {"n": 96, "input_shape": [1, 12, 12], "num_classes": 2}}
    model = {"name": "conv_autoencoder", "args": {"width": 2}}
    trainer = Trainer(tiny_config(tmp_path / "r", data=data, model=model))
    assert trainer.input_shape == (1, 12, 12)
    assert trainer.config.model.input_shape == [1, 12, 12]
    assert pathcond.num_paths(trainer.model, (1, 12, 12)) != pathcond.num_paths(
        trainer.model, (1, 28, 28))
    mlp = Trainer(tiny_config(tmp_path / "m"))  # an MLP on flat samples: the zoo's shape
    assert mlp.input_shape == (12,) and mlp.config.model.input_shape is None
    # as many entries as the zoo's (3, 32, 32), laid out otherwise: the data's shape
    wide = {"name": "synthetic", "options": {"n": 64, "input_shape": [3, 16, 64],
                                             "num_classes": 3}}
    net = Trainer(tiny_config(tmp_path / "w", data=wide,
                              model={"name": "tiny_resnet", "args": {"num_classes": 3}}))
    assert net.input_shape == (3, 16, 64)


def test_a_run_an_earlier_version_traced_at_the_zoo_shape_is_not_resumed(
        tmp_path: Path) -> None:
    """A checkpoint whose config has no model.input_shape, for a run that now traces at the
    data's shape: one line saying why, not a run continued at another shape."""
    data = {"name": "synthetic", "task": "image_autoencoding",
            "options": {"n": 64, "input_shape": [1, 12, 12], "num_classes": 2}}
    model = {"name": "conv_autoencoder", "args": {"width": 2}}
    run = tmp_path / "old"
    train(tiny_config(run, "training.epochs=1", data=data, model=model))
    path = list_checkpoints(run)[-1][1]
    state = load_checkpoint(path)
    state["config"]["model"].pop("input_shape")  # as the earlier version wrote it
    state["input_shape"] = [1, 28, 28]
    save_checkpoint(path, state)
    with pytest.raises(ConfigError, match=r"an earlier pathcond traced 'conv_autoencoder' at "
                                          r"its zoo shape \[1, 28, 28\]"):
        Trainer(tiny_config(run, "training.epochs=2", data=data, model=model)).run(
            resume=True)


def test_bad_input_is_refused_before_writing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="does not accept synthetic samples"):
        Trainer(tiny_config(run, "model.args.widths=[10,4,3]"))
    with pytest.raises(ConfigError, match="outputs shape"):
        Trainer(tiny_config(run, "model.args.widths=[12,4,5]"))
    with pytest.raises(ConfigError, match="target_accuracy needs a classification"):
        Trainer(tiny_config(run, "data.task=autoencoding", "model.args.widths=[12,6,12]",
                            "training.target_accuracy=0.5"))
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install tensorboard"):
            Trainer(tiny_config(run, "output.tensorboard=true"))
    with pytest.raises(ConfigError, match="CUDA is not available"):
        if torch.cuda.is_available():
            raise ConfigError("CUDA is not available (skipped: CUDA present)")
        Trainer(tiny_config(run, "device=cuda"))
    assert not run.exists()


def test_existing_run_dir(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(run, "training.epochs=1"))
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_config(run, "training.epochs=1"))
    assert train(tiny_config(run, "training.epochs=2"), overwrite=True).summary["epochs"] == 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no run"):
        train(tiny_config(other), overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="cannot resume"):
        train(tiny_config(tmp_path / "missing"), resume=True)


def test_missing_method_class_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    import pathcond.optim

    for name in ("ENorm", "PathSGD", "GSGD", "WeightFixing"):
        monkeypatch.delattr(pathcond.optim, name, raising=False)
    for method in ("enorm", "pathsgd", "gsgd", "weightfix"):
        with pytest.raises(ConfigError, match=f"method '{method}' is not available") as info:
            Trainer(tiny_config(tmp_path / method, f"method={method}"))
        assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


METHOD_VARIANTS = [
    ("method=enorm",),
    ("method={name: enorm, every_epochs: 1, c: 0.5}",),
    ("method=pathsgd", "optimizer.lr=0.01"),
    ("method=gsgd", "model.args={widths: [12, 10, 10, 3], bias: false}", "optimizer.lr=1e-4",
     "optimizer.momentum=0"),
    ("method=gsgd", "model.args={widths: [12, 10, 10, 3], bias: false}", "optimizer.name=adam",
     "optimizer.lr=0.003", "optimizer.momentum=0"),
    ("method={name: weightfix, strategy: hungarian}",),
    # the G-SGD paper's / thesis' initialisation (skeleton weights overwritten with 1): it is
    # applied once, when the optimizer is built, never again on resume
    ("method={name: gsgd, init: ones}", "model.args={widths: [12, 10, 10, 3], bias: false}",
     "optimizer.lr=0.05", "optimizer.momentum=0"),
    ("method={name: weightfix, init: ones}",),
]


@pytest.mark.parametrize("variant", METHOD_VARIANTS)
def test_other_methods_train_and_resume(tmp_path: Path, variant: tuple[str, ...]) -> None:
    overrides = (*variant, "training.epochs=3")
    full = Trainer(tiny_config(tmp_path / "full", *overrides))
    result = full.run()
    assert result.status == "completed"
    losses = [r["train_loss"] for r in result.history]
    if "method=gsgd" in variant and "optimizer.name=adam" not in variant:
        # G-SGD with SGD in G-space does not decrease the loss on this net at any lr tried
        # (reported upstream); here only the harness (run, resume) is under test.
        assert all(v is not None for v in losses)
    else:
        assert losses[-1] < losses[0], losses
    Trainer(tiny_config(tmp_path / "split", *overrides)).run(stop_after=1)
    second = Trainer(tiny_config(tmp_path / "split", *overrides))
    resumed = second.run(resume=True)
    _assert_same_state(full.model.state_dict(), second.model.state_dict())
    assert _timeless(result.history) == _timeless(resumed.history)


def test_resume_a_checkpoint_with_the_legacy_set_to_one(tmp_path: Path) -> None:
    """A checkpoint written before ``init`` replaced ``set_to_one`` still resumes."""
    from pathcond.train.checkpoint import checkpoint_path, save_checkpoint

    overrides = ("method={name: gsgd, init: keep}", "optimizer.lr=1e-4",
                 "optimizer.momentum=0", "model.args={widths: [12, 10, 10, 3], bias: false}")
    full = train(tiny_config(tmp_path / "full", *overrides))
    run = tmp_path / "split"
    Trainer(tiny_config(run, *overrides)).run(stop_after=1)
    path = checkpoint_path(run, 1)
    state = load_checkpoint(path)
    state["config"]["method"] = {"name": "gsgd", "strategy": "skeleton", "set_to_one": False}
    save_checkpoint(path, state)
    legacy = ("method={name: gsgd, set_to_one: false}", *overrides[1:])
    resumed = Trainer(tiny_config(run, *legacy)).run(resume=True)
    assert _timeless(resumed.history) == _timeless(full.history)
    with pytest.raises(ConfigError, match="method.init"):
        Trainer(tiny_config(run, "method={name: gsgd, init: ones}", *overrides[1:])).run(
            resume=True)


def test_method_specifics(tmp_path: Path) -> None:
    enorm = train(tiny_config(tmp_path / "en", "method={name: enorm, every: 2}"))
    assert enorm.summary["rescalings"] == 9  # 18 steps
    assert enorm.summary["rescale_time_total"] > 0
    wf = Trainer(tiny_config(tmp_path / "wf", "method=weightfix"))
    fixed = wf.method.impl.fixed_entries()  # type: ignore[attr-defined]
    wf.run()
    params = dict(wf.model.named_parameters())
    for name, (index, values) in fixed.items():
        assert torch.equal(params[name].detach().reshape(-1)[index], values)
        assert torch.equal(values.abs(), torch.ones_like(values))
    ones = Trainer(tiny_config(tmp_path / "wf1", "method={name: weightfix, init: ones}"))
    for _, values in ones.method.impl.fixed_entries().values():  # type: ignore[attr-defined]
        assert torch.equal(values, torch.ones_like(values))
    with pytest.raises(ConfigError, match="its own optimizer"):
        Trainer(tiny_config(tmp_path / "p", "method=pathsgd", "optimizer.name=adam",
                            "optimizer.momentum=0"))
    with pytest.raises(ConfigError, match="does not support optimizer.weight_decay"):
        Trainer(tiny_config(tmp_path / "g", "method=gsgd", "optimizer.weight_decay=0.1"))


def test_tensorboard_logging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With output.tensorboard, every epoch's numbers go to a SummaryWriter (faked here:
    tensorboard is an optional dependency)."""
    import pathcond.train.metrics as metrics

    calls: list[tuple[str, float, int]] = []

    class FakeWriter:
        def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
            self.log_dir = log_dir

        def add_scalar(self, key: str, value: float, step: int) -> None:
            calls.append((key, value, step))

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(metrics, "tensorboard_writer_class", lambda: FakeWriter)
    monkeypatch.setattr("pathcond.train.trainer.tensorboard_writer_class", lambda: FakeWriter)
    train(tiny_config(tmp_path / "tb", "output.tensorboard=true", "training.epochs=2"))
    assert {step for key, _, step in calls if key == "train_loss"} == {0, 1, 2}
    assert any(key == "am_gm" for key, _, _ in calls)


def test_lr_scales_are_parameter_groups(tmp_path: Path) -> None:
    """A factor on every parameter is the same run at lr times the factor; a factor on one
    layer gives that layer its own group and changes the run."""
    scaled = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "lr_scales": {"layers": 0.5}}
    a = Trainer(tiny_config(tmp_path / "a", optimizer=scaled))
    assert [g["lr"] for g in a.optimizer.param_groups] == [0.025]
    b = Trainer(tiny_config(tmp_path / "b", "optimizer.lr=0.025"))
    history = _timeless(a.run().history)
    assert len(history) == 4 and history == _timeless(b.run().history)
    one = {**scaled, "lr_scales": {"layers.4": 3.0, "layers.0.bias": 0.5}}
    c = Trainer(tiny_config(tmp_path / "c", optimizer=one))
    groups = {g["lr"]: len(g["params"]) for g in c.optimizer.param_groups}
    assert groups == {0.05: 3, 0.5 * 0.05: 1, 3.0 * 0.05: 2}
    assert _timeless(c.run().history) != history


@pytest.mark.parametrize(("scales", "method", "message"), [
    ({"decoder": 2.0}, "baseline", "no parameter of the model is 'decoder'"),
    ({"layers": 2.0, "layers.0": 3.0}, "baseline", "lies under several names"),
    ({"layers.0": 2.0}, "pathsgd", "does not support optimizer.lr_scales"),
])
def test_bad_lr_scales_are_one_line(tmp_path: Path, scales: dict[str, float], method: str,
                                    message: str) -> None:
    opt = {"name": "sgd", "lr": 0.05, "lr_scales": scales}
    with pytest.raises(ConfigError, match=message) as info:
        Trainer(tiny_config(tmp_path / "x", f"method={method}", optimizer=opt))
    assert "\n" not in str(info.value)


def test_lr_scales_pathcond_resolves_to_a_saved_mapping(tmp_path: Path,
                                                         dropout_model: str) -> None:
    """``lr_scales: pathcond`` becomes PathCond's per-tensor factors of the seeded model when
    the run starts, is saved that way, and trains exactly as that mapping written out (the
    solve leaves the RNG stream alone: the model has dropout)."""
    from pathcond import pathcond_lr_scales
    from pathcond.models import get_model
    from pathcond.train import read_run_config

    overrides = (f"model.name={dropout_model}", "model.args={}")
    opt = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "lr_scales": "pathcond"}
    a = Trainer(tiny_config(tmp_path / "a", *overrides, optimizer=opt))
    scales = a.config.optimizer.lr_scales
    with torch.random.fork_rng():
        torch.manual_seed(a.config.seed)
        assert scales == pathcond_lr_scales(get_model(dropout_model), (12,))
    assert isinstance(scales, dict) and len(set(scales.values())) > 1
    assert {g["lr"] for g in a.optimizer.param_groups} == {
        0.05 * f for f in (*scales.values(), 1.0)}  # the output bias is never rescaled
    history = _timeless(a.run().history)
    assert read_run_config(tmp_path / "a").optimizer.lr_scales == scales
    b = Trainer(tiny_config(tmp_path / "b", *overrides, optimizer={**opt, "lr_scales": scales}))
    assert _timeless(b.run().history) == history
    c = Trainer(tiny_config(tmp_path / "c", *overrides, optimizer={**opt, "lr_scales": {}}))
    assert _timeless(c.run().history) != history


@pytest.mark.parametrize(("method", "message"), [
    ("pathcond", "method 'pathcond' rescales already"),
    ("pathsgd", "does not support optimizer.lr_scales"),
])
def test_lr_scales_pathcond_refusals_are_one_line(tmp_path: Path, method: str,
                                                  message: str) -> None:
    opt = {"name": "sgd", "lr": 0.05, "lr_scales": "pathcond"}
    with pytest.raises(ConfigError, match=message) as info:
        Trainer(tiny_config(tmp_path / "x", f"method={method}", optimizer=opt))
    assert "\n" not in str(info.value)
    for bad in ("pathsgd", 3):
        with pytest.raises(ConfigError, match="optimizer.lr_scales: must be a mapping") as info:
            tiny_config(tmp_path / "y", optimizer={**opt, "lr_scales": bad})
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"optimizer\.lr_scales\.layers: input should be "
                       "greater than 0"):
        tiny_config(tmp_path / "y", optimizer={**opt, "lr_scales": {"layers": -1}})
    assert not (tmp_path / "x").exists()


def test_make_optimizer_refuses_an_unresolved_pathcond(tmp_path: Path) -> None:
    from pathcond.train.methods import make_optimizer

    cfg = tiny_config(tmp_path, optimizer={"name": "sgd", "lr_scales": "pathcond"})
    with pytest.raises(ConfigError, match="must be resolved first"):
        make_optimizer(nn.Linear(2, 2), cfg.optimizer)


def test_lr_scales_must_be_positive_and_finite(tmp_path: Path) -> None:
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ConfigError):
            tiny_config(tmp_path, optimizer={"name": "sgd", "lr_scales": {"layers": bad}})
