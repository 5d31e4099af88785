"""Atomic file writes: every file pathcond writes (checkpoints, metrics, results, figures)
goes through :func:`atomic_write`, so a crash, a full disk or a bad figure never leaves a
partial file under the final name and the previous version survives."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["atomic_copy", "atomic_write", "atomic_write_bytes", "atomic_write_text",
           "remove_entries", "save_figure"]

#: Mode of written files (``mkstemp`` creates them readable by their owner only).
FILE_MODE = 0o644


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write a file atomically: ``write(f)`` into a temporary file beside ``path``, fsync,
    then :func:`os.replace`. On any error the temporary file is removed and ``path`` is left
    as it was. Missing parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically replace ``path`` by ``data``."""
    def write(f: io.BufferedWriter) -> None:
        f.write(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically replace ``path`` by ``text`` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_figure(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """Render a matplotlib figure in memory, then write it atomically; the format is the
    suffix of ``path`` unless ``format`` is given. The figure is left open."""
    path = Path(path)
    buf = io.BytesIO()
    savefig.setdefault("format", path.suffix.lstrip(".").lower() or "png")
    fig.savefig(buf, **savefig)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_copy(source: str | Path, dest: str | Path) -> Path:
    """Copy a file to ``dest`` atomically (a reader sees the old or the whole new file)."""
    return atomic_write_bytes(dest, Path(source).read_bytes())


def remove_entries(directory: str | Path, names: Iterable[str]) -> None:
    """Delete the files or directory trees ``directory/name`` that exist."""
    for name in names:
        p = Path(directory) / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
