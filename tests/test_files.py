"""Atomic writes shared by checkpoints, metrics, results and figures."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from pathcond._files import atomic_write, atomic_write_text, save_figure  # noqa: E402


def test_write_creates_parents_and_is_world_readable(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "a" / "b" / "x.json", "{}\n")
    assert path.read_text() == "{}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp alone would give 0o600
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "x.txt", "old")

    def broken(f: Any) -> None:
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


@pytest.mark.parametrize(("name", "magic"), [("f.png", b"\x89PNG"), ("f.PDF", b"%PDF"),
                                             ("f.svg", b"<?xml")])
def test_figure_format_follows_the_suffix(tmp_path: Path, name: str, magic: bytes) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    try:
        path = save_figure(fig, tmp_path / name)
    finally:
        plt.close(fig)
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_figure_that_cannot_be_drawn_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "f.png").write_bytes(b"previous")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    try:
        with pytest.raises(ValueError, match="not-a-format"):
            save_figure(fig, tmp_path / "f.png", format="not-a-format")
    finally:
        plt.close(fig)
    assert (tmp_path / "f.png").read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]
