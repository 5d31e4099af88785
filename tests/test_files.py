"""Atomic writes shared by checkpoints, metrics, results and figures."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from pathcond._files import (  # noqa: E402
    atomic_copy,
    atomic_write,
    atomic_write_text,
    remove_entries,
    save_figure,
)


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


def test_copy_is_whole_and_leaves_the_source(tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(bytes(range(256)) * 10)
    dest = atomic_copy(src, tmp_path / "out" / "b.bin")
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "out"]


def test_a_missing_source_leaves_the_destination(tmp_path: Path) -> None:
    dest = atomic_write_text(tmp_path / "b.png", "old")
    with pytest.raises(FileNotFoundError):
        atomic_copy(tmp_path / "missing.png", dest)
    assert dest.read_text() == "old"


def test_remove_entries_deletes_files_and_trees_and_skips_missing(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "runs" / "r1" / "x.txt", "x")
    atomic_write_text(tmp_path / "units.json", "{}")
    atomic_write_text(tmp_path / "keep.txt", "k")
    remove_entries(tmp_path, ("runs", "units.json", "absent"))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
