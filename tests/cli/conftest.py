"""Fixtures of the command-line tests: one torch thread, a tiny experiment file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.bruteforce import single_thread

TINY = {
    "name": "tiny",
    "device": "cpu",
    "data": {"name": "synthetic", "options": {"n": 200, "input_shape": [10], "num_classes": 3}},
    "model": {"name": "mlp", "args": {"widths": [10, 12, 6, 3]}},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "training": {"epochs": 2, "batch_size": 32, "threads": 1, "target_accuracy": 0.4},
    "method": "pathcond",
    "output": {"progress": False, "plot": False},
    "compare": {"methods": ["baseline", "pathcond"], "seeds": [0, 1]},
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    yield from single_thread()


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    """A tiny experiment file in a fresh directory."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path
