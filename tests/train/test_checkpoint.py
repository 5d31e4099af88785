"""Checkpoints: atomic writes, truncation and corruption detected with one clear line, and
the previous good checkpoint survives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pathcond.errors import CheckpointError
from pathcond.train import Trainer, train
from pathcond.train.checkpoint import (
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)

from .conftest import tiny_config


def _payload(value: float = 1.0) -> dict[str, Any]:
    return {"config": {}, "epoch": 1, "step": 2, "model": {"w": torch.full((64,), value)},
            "optimizer": {}, "method": {}, "rng": {"torch": torch.get_rng_state()},
            "history": [{"epoch": 1}]}


def test_round_trip_and_plain_torch_load(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", _payload(3.0))
    data = load_checkpoint(path)
    assert torch.equal(data["model"]["w"], torch.full((64,), 3.0))
    assert torch.load(path, weights_only=True)["epoch"] == 1


def test_truncated_and_corrupted(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", _payload(1.5))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and "c.pt" in str(info.value)
    # A flipped byte inside the weights: torch does not notice, the digest does.
    at = raw.find(torch.full((64,), 1.5).numpy().tobytes())
    assert at > 0
    flipped = bytearray(raw)
    flipped[at + 10] ^= 0x40
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="digest mismatch"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="not a pathcond checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_failed_write_keeps_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "c.pt", _payload(1.0))
    before = path.read_bytes()

    def broken_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, _payload(2.0))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(64))


def test_resume_with_a_corrupted_newest_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(run, "training.epochs=4")
    full = train(tiny_config(tmp_path / "full", "training.epochs=4"))
    Trainer(cfg).run(stop_after=3)
    newest = checkpoint_path(run, 3)
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(CheckpointError) as info:
        Trainer(cfg).run(resume=True)
    message = str(info.value)
    assert "epoch_0003.pt" in message and "epoch_0002.pt' is intact" in message
    assert "\n" not in message
    assert load_checkpoint(checkpoint_path(run, 2))["epoch"] == 2  # survived
    newest.unlink()
    resumed = Trainer(cfg).run(resume=True)
    assert [e for e, _ in list_checkpoints(run)][-1] == 4
    key = "val_loss"
    assert [r[key] for r in resumed.history] == [r[key] for r in full.history]


def test_interrupted_write_during_training_keeps_previous(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(run, "training.epochs=3")
    Trainer(cfg).run(stop_after=1)
    good = checkpoint_path(run, 1).read_bytes()
    real_save = torch.save

    def dying_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if obj.get("epoch") == 2:
            f.write(b"partial")
            raise KeyboardInterrupt
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg).run(resume=True)
    monkeypatch.undo()
    assert checkpoint_path(run, 1).read_bytes() == good
    assert not checkpoint_path(run, 2).exists()
    assert not list(run.rglob("*.tmp"))
    assert Trainer(cfg).run(resume=True).status == "completed"
