"""Shared fixtures of the training-harness tests: tiny synthetic experiments, one thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pathcond.train.config import ExperimentConfig, apply_overrides, validate_config
from tests.bruteforce import single_thread

TINY: dict[str, Any] = {
    "name": "tiny",
    "device": "cpu",
    "data": {"name": "synthetic", "options": {"n": 240, "input_shape": [12], "num_classes": 3}},
    "model": {"name": "mlp", "args": {"widths": [12, 16, 8, 3]}},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "training": {"epochs": 3, "batch_size": 32, "threads": 1},
    "method": "baseline",
    "output": {"progress": False, "plot": False},
}


def tiny_dict(*overrides: str, **sections: Any) -> dict[str, Any]:
    """The tiny experiment as a dict, with ``key.sub=value`` overrides applied."""
    data = apply_overrides(TINY, overrides)
    data.update(sections)
    return data


def tiny_config(run_dir: Path, *overrides: str, **sections: Any) -> ExperimentConfig:
    """The tiny experiment writing into ``run_dir``."""
    data = tiny_dict(*overrides, **sections)
    data["output"] = {**data.get("output", {}), "dir": str(run_dir)}
    return validate_config(data, "test")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest (and steadiest) on one thread."""
    yield from single_thread()
