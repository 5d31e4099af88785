"""Checkpoints: written atomically, read back with integrity checks.

A checkpoint is a ``torch.save`` file (so ``torch.load(path, weights_only=True)`` opens it)
holding a dictionary with ``format``, ``version``, the resolved ``config``, ``epoch``,
``step``, the ``model`` / ``optimizer`` / ``method`` states, the RNG states, the metrics
``history`` and a ``digest``: a BLAKE2b hash of everything else. Torch's zip container does
not check CRCs, so the digest is what catches a flipped byte; truncation is caught by both.

Writing goes through :func:`pathcond._files.atomic_write` (a temporary file in the same
directory, flushed and fsync'ed, then moved over the destination): a crash or a full disk
never leaves a partial checkpoint under the final name, and the previous one survives.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .. import _files
from .._files import atomic_write_bytes, atomic_write_text
from ..errors import CheckpointError

FORMAT = "pathcond-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("config", "epoch", "step", "model", "optimizer", "method", "rng", "history")
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")

__all__ = [
    "FORMAT", "VERSION", "atomic_write_bytes", "atomic_write_text", "checkpoint_path",
    "digest", "list_checkpoints", "load_checkpoint", "prune_checkpoints", "save_checkpoint",
]


def _update(h: Any, obj: Any) -> None:
    """Feed a nested structure of dicts, sequences, tensors and scalars to a hash."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode())
            _update(h, obj[key])
    elif isinstance(obj, list | tuple):
        h.update(f"L{len(obj)}".encode())
        for item in obj:
            _update(h, item)
    else:
        h.update(f"S{obj!r}".encode())


def digest(payload: Mapping[str, Any]) -> str:
    """BLAKE2b digest of a checkpoint's content (every key but ``digest``)."""
    h = hashlib.blake2b(digest_size=32)
    _update(h, {k: v for k, v in payload.items() if k != "digest"})
    return h.hexdigest()


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` (with ``format``, ``version`` and ``digest`` added) atomically."""
    data = dict(payload)
    data["format"], data["version"] = FORMAT, VERSION
    data["digest"] = digest(data)
    return _files.atomic_write(path, lambda f: torch.save(data, f))


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Read and verify a checkpoint.

    Raises:
        CheckpointError: missing, unreadable, truncated, corrupted (digest mismatch), not a
            pathcond checkpoint, or of an unknown version; the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(reason) > 120:
            reason = reason[:117] + "..."
        raise CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupted "
                              f"({reason})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a pathcond checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has version {data.get('version')!r}; "
                              f"this pathcond reads version {VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {missing[0]!r}")
    if data.get("digest") != digest(data):
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupted (content digest "
                              "mismatch)")
    return data


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """``RUN_DIR/checkpoints/epoch_NNNN.pt``."""
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:04d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of the run's epoch checkpoints, oldest first."""
    directory = Path(run_dir) / "checkpoints"
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _EPOCH_FILE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest epoch checkpoints."""
    for _, p in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        with contextlib.suppress(OSError):
            p.unlink()


def latest_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """Load the newest epoch checkpoint of a run directory.

    A corrupted newest checkpoint is an error (never silently skipped); the message says
    which older checkpoint is intact so the user can remove the bad one and resume.
    """
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"no checkpoint in {str(Path(run_dir) / 'checkpoints')!r}")
    newest = found[-1][1]
    try:
        return load_checkpoint(newest)
    except CheckpointError as exc:
        for _, older in reversed(found[:-1]):
            try:
                load_checkpoint(older)
            except CheckpointError:
                continue
            raise CheckpointError(f"{exc}; the previous checkpoint {str(older)!r} is intact: "
                                  f"delete {newest.name} to resume from it") from None
        raise
