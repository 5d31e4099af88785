"""Distributed data-parallel training (DDP, gloo, 2 CPU processes on the loopback).

One launch of two processes trains every method on a tiny synthetic task; the test then
checks that both ranks end bit-identical (parameters, BatchNorm buffers, optimizer state,
history), that only rank 0 wrote files, that a stopped and resumed 2-process run is
bit-identical to an uninterrupted one, and that 2 processes follow the 1-process
trajectory with the same global batch (the gradients are the same up to rounding).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from pathcond import _files as files_module
from pathcond.errors import ConfigError
from pathcond.train import Trainer, train
from pathcond.train import distributed as distributed_module
from pathcond.train.checkpoint import latest_checkpoint, list_checkpoints
from pathcond.train.distributed import DistContext, launch, run_distributed

from .conftest import tiny_config

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="needs torch.distributed with gloo")

#: The runs each rank trains (2 epochs; overrides of the tiny experiment). 225 samples in
#: batches of 32 end with a batch of 1 (one rank gets no sample), 227 with a batch of 3
#: (pieces of 2 and 1).
RUNS: dict[str, tuple[str, ...]] = {
    "baseline": ("data.options.n=225",),
    "pathcond": ("data.options.n=227", "method={name: pathcond, every_steps: 3}"),
    "bn_adam": ("model.args.batchnorm=true", "training.drop_last=true", "optimizer.name=adam",
                "optimizer.lr=0.01",
                "method={name: pathcond, every_epochs: 1, am_gm_threshold: 1.5}"),
    "enorm": ("method={name: enorm, every: 2}",),
    "pathsgd": ("model.args.batchnorm=true", "training.drop_last=true", "optimizer.lr=0.02",
                "method=pathsgd"),
    "gsgd": ("optimizer.momentum=0.0", "optimizer.lr=0.005", "method=gsgd"),
    "weightfix": ("optimizer.momentum=0.0", "optimizer.lr=0.01", "method=weightfix"),
}
#: Runs compared with one process (no BatchNorm: it normalises per process).
SINGLE = ("baseline", "pathcond", "enorm", "gsgd", "weightfix")
EPOCHS = "training.epochs=2"


def _state(trainer: Trainer) -> dict[str, Any]:
    opt = trainer.optimizer.state_dict()
    return {"model": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
            "optimizer_state": opt["state"], "history": trainer.history,
            "rescalings": trainer.method.rescalings}


def _worker(root: str) -> dict[str, Any]:
    """Train every run of :data:`RUNS` on this rank; save the final states for the test."""
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    writes: list[str] = []
    original = files_module.atomic_write

    def spy(path: Any, write: Any) -> Path:
        writes.append(str(path))
        return original(path, write)

    files_module.atomic_write = spy  # every file the harness writes goes through it
    states: dict[str, Any] = {}
    for name, overrides in RUNS.items():
        trainer = Trainer(tiny_config(Path(root, name), EPOCHS, *overrides))
        assert trainer.dist is not None and trainer.dist.world_size == 2
        result = trainer.run()
        assert result.status == "completed"
        states[name] = _state(trainer)
    # Stop after epoch 1, resume to 2: bit-identical to the uninterrupted "pathcond" run.
    cfg = tiny_config(Path(root, "resumed"), EPOCHS, *RUNS["pathcond"])
    assert Trainer(cfg).run(stop_after=1).status == "interrupted"
    resumed = Trainer(cfg)
    resumed.run(resume=True)
    states["resumed"] = _state(resumed)
    # Refusals found by rank 0 reach every rank (no rank is left waiting).
    try:
        Trainer(tiny_config(Path(root, "baseline"), EPOCHS, *RUNS["baseline"])).run()
    except ConfigError as exc:
        states["refusal"] = str(exc)
    files_module.atomic_write = original
    torch.save(states, Path(root, f"rank{rank}.pt"))
    distributed_module.shutdown()
    return {"rank": rank, "writes": writes}


def _assert_equal(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}[{i}]")
    elif where.endswith(("_time", "time_total")):
        pass  # timings are rank 0's, broadcast; equal anyway
    else:
        assert a == b, where


def test_two_processes_stay_identical_and_match_one_process(tmp_path: Path) -> None:
    out = launch(_worker, 2, str(tmp_path), threads_per_process=1)
    assert sorted(out) == [0, 1]
    assert out[1]["writes"] == []  # rank 1 wrote nothing
    written = {Path(p).name for p in out[0]["writes"]}
    assert {"config.yaml", "metrics.jsonl", "metrics.csv", "summary.json",
            "epoch_0002.pt"} <= written
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)

    for name in (*RUNS, "resumed"):  # every rank ends bit-identical, buffers included
        _assert_equal(r0[name]["model"], r1[name]["model"], f"{name}.model")
        _assert_equal(r0[name]["optimizer_state"], r1[name]["optimizer_state"], name)
        _assert_equal(r0[name]["history"], r1[name]["history"], f"{name}.history")
        assert all(r["train_loss"] is not None for r in r0[name]["history"]), name
        losses = [r["train_loss"] for r in r0[name]["history"]]
        if name != "gsgd":  # G-SGD does not learn this tiny task, in one process either
            assert losses[-1] < losses[0], (name, losses)
    assert "running_var" in " ".join(r0["bn_adam"]["model"])
    steps = r0["pathcond"]["history"][-1]["step"]
    assert r0["pathcond"]["rescalings"] == 1 + steps // 3  # at init, then every 3 steps
    assert r0["bn_adam"]["rescalings"] >= 1

    # Resumed after an interruption: bit-identical to the uninterrupted run.
    _assert_equal(r0["resumed"]["model"], r0["pathcond"]["model"], "resumed.model")
    _assert_equal(r0["resumed"]["optimizer_state"], r0["pathcond"]["optimizer_state"],
                  "resumed.optimizer")
    assert "already holds a run" in r0["refusal"] and r0["refusal"] == r1["refusal"]

    # The checkpoint holds the plain module and every rank's RNG state; it loads alone.
    state = latest_checkpoint(tmp_path / "pathcond")
    assert not any(k.startswith("module.") for k in state["model"])
    assert len(state["rng"]["ranks"]) == 2
    assert [e for e, _ in list_checkpoints(tmp_path / "pathcond")] == [1, 2]
    longer = train(tiny_config(tmp_path / "pathcond", "training.epochs=3", *RUNS["pathcond"]),
                   resume=True)  # a distributed run continues in one process
    assert longer.status == "completed" and len(longer.history) == 4
    assert longer.history[:3] == r0["pathcond"]["history"]

    # Same global batch in one process: the same trajectory up to rounding.
    for name in SINGLE:
        single = Trainer(tiny_config(tmp_path / f"single_{name}", EPOCHS, *RUNS[name]))
        single.run()
        for row_1, row_2 in zip(single.history, r0[name]["history"], strict=True):
            for key in ("train_loss", "train_acc", "val_loss", "test_loss"):
                if row_1[key] is not None:
                    assert row_2[key] == pytest.approx(row_1[key], rel=1e-5, abs=1e-7), \
                        (name, row_1["epoch"], key)
        for key, value in single.model.state_dict().items():
            torch.testing.assert_close(r0[name]["model"][key], value, rtol=1e-4, atol=1e-6)
        assert single.method.rescalings == r0[name]["rescalings"]


def test_shard_splits_the_global_batch() -> None:
    ctx = [DistContext(r, 3, r, torch.device("cpu"), "gloo") for r in range(3)]
    batch = torch.arange(10)
    pieces = [c.shard(batch) for c in ctx]
    assert torch.equal(torch.cat([p[0] for p in pieces]), batch)
    assert [p[2] for p in pieces] == [4, 3, 3]
    # DDP averages over the 3 ranks: sum_r weight_r * mean_r / 3 is the global mean.
    losses = torch.linspace(0.5, 3.0, 10, dtype=torch.float64)  # per-sample losses
    average = sum(w * float(losses[i].mean()) for i, w, _ in pieces) / 3
    assert average == pytest.approx(float(losses.mean()), rel=1e-12)
    assert ctx[0].shard(torch.arange(6))[1] == 1.0
    idx, weight, count = ctx[2].shard(torch.arange(2))  # nothing left for rank 2
    assert weight == 0.0 and count == 0 and idx.numel() == 2


def test_refusals_before_launching(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", "training.batch_size=1")
    with pytest.raises(ConfigError, match="global batch"):
        run_distributed(cfg, tmp_path / "run", nproc=2)
    with pytest.raises(ConfigError, match="at least 2"):
        run_distributed(cfg, tmp_path / "run", nproc=1)
    cfg = tiny_config(tmp_path / "run", "training.epochs=1")
    train(cfg)
    with pytest.raises(ConfigError, match="already holds a run"):
        run_distributed(cfg, tmp_path / "run", nproc=2)
    with pytest.raises(ConfigError, match="cuda:LOCAL_RANK"):
        run_distributed(tiny_config(tmp_path / "x", "device=cuda:0"), tmp_path / "x", nproc=2)
    assert not (tmp_path / "x").exists()


def test_worker_errors_become_one_line(tmp_path: Path) -> None:
    from pathcond.train.distributed import _failure_message

    (tmp_path / "rank_0.txt").write_text("dataset mnist not found")
    (tmp_path / "rank_1.txt").write_text("dataset mnist not found")
    assert _failure_message(None, tmp_path) == "dataset mnist not found"
    (tmp_path / "rank_1.txt").write_text("cuda:1 does not exist")
    assert _failure_message(None, tmp_path) == ("rank 0: dataset mnist not found; rank 1: "
                                                "cuda:1 does not exist")
    for p in tmp_path.iterdir():
        p.unlink()
    assert "see its messages above" in _failure_message(None, tmp_path)


def test_single_process_ignores_an_absent_environment(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    trainer = Trainer(tiny_config(tmp_path / "run", "training.epochs=1"))
    assert trainer.dist is None and trainer.ddp is None
    with pytest.raises(ConfigError, match="torchrun"):
        Trainer(tiny_config(tmp_path / "run2", "training.epochs=1"), distributed=True)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert Trainer(tiny_config(tmp_path / "run3", "training.epochs=1")).dist is None



def _cli(*args: str | Path) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from pathcond.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _tiny_yaml(tmp_path: Path) -> Path:
    import yaml

    from .conftest import tiny_dict

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_dict("training.epochs=1", "method=pathcond")))
    return path


def test_cli_nproc_trains_in_two_processes(tmp_path: Path) -> None:
    code, out, err = _cli("train", _tiny_yaml(tmp_path), "--nproc", "2", "--out",
                          tmp_path / "run")
    assert code == 0, (out, err)
    assert "completed after 1 epochs" in out and "run directory" in out
    state = latest_checkpoint(tmp_path / "run")
    assert state["epoch"] == 1 and len(state["rng"]["ranks"]) == 2
    # A refusal found before launching: one line, status 2.
    code, out, err = _cli("train", _tiny_yaml(tmp_path), "--nproc", "2", "--out",
                          tmp_path / "run")
    assert code == 2 and "already holds a run" in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_nproc_misuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = _cli("train", _tiny_yaml(tmp_path), "--nproc", "0")
    assert code == 2 and "--nproc must be at least 1" in err
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    code, _, err = _cli("train", _tiny_yaml(tmp_path), "--nproc", "2")
    assert code == 2 and "started by torchrun already" in err
    assert err.startswith("error: [rank 1] ")
    code, _, err = _cli("compare", _tiny_yaml(tmp_path))
    assert code == 2 and "compare runs in one process" in err
