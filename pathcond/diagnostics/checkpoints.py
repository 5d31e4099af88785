"""Models from checkpoints, and ``pathcond rescale CHECKPOINT``: PathCond on a saved model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._files import atomic_copy
from ..errors import CheckpointError, ConfigError
from ..rescale import RescaleReport, rescale
from ..train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from ..train.config import ExperimentConfig, validate_config
from ..train.methods import build_method, make_optimizer

__all__ = ["model_from_checkpoint", "read_checkpoint", "rescale_checkpoint"]


def read_checkpoint(source: str | Path) -> tuple[dict[str, Any], Path]:
    """A verified checkpoint from a file, or the newest one of a run directory."""
    p = Path(source)
    if p.is_dir():
        found = list_checkpoints(p)
        if not found:
            raise CheckpointError(f"{str(p)!r} is a directory without checkpoints "
                                  "(expected a run directory or a checkpoint file)")
        return latest_checkpoint(p), found[-1][1]
    return load_checkpoint(p), p


def _config(state: dict[str, Any], path: Path) -> ExperimentConfig:
    try:
        return validate_config(state["config"], f"config in {path}")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def model_from_checkpoint(state: dict[str, Any], path: Path
                          ) -> tuple[nn.Module, tuple[int, ...], ExperimentConfig]:
    """Rebuild the model of a checkpoint (zoo model + saved weights) on the CPU."""
    from ..models import get_model, model_input_shape

    cfg = _config(state, path)
    model = get_model(cfg.model.name, **cfg.model.args)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: weights do not fit model "
                              f"{cfg.model.name!r}: {str(exc).strip().splitlines()[0]}") from None
    shape = tuple(cfg.model.input_shape if cfg.model.input_shape is not None
                  else model_input_shape(cfg.model.name, **cfg.model.args))
    return model, shape, cfg


def _default_out(path: Path) -> Path:
    return path.with_name(f"{path.stem}.pathcond.pt")


def rescale_checkpoint(source: str | Path, out: str | Path | None = None, *,
                       solver: str = "newton", tol: float = 1e-10, in_place: bool = False
                       ) -> tuple[Path, RescaleReport]:
    """Apply PathCond to a checkpoint's model, transport its optimizer state, and write the
    result atomically to ``out`` (default ``<name>.pathcond.pt`` beside the input; a
    checkpoint so named is never taken for an epoch checkpoint when resuming); missing
    parent directories of ``out`` are created, as ``train`` and ``run`` create theirs.

    With ``in_place``, the rescaled checkpoint replaces the run's newest epoch checkpoint
    (``source``: the run directory or that file), so that resuming the run continues from
    the rescaled network; the original is kept as ``<name>.before-pathcond.pt``.
    """
    state, path = read_checkpoint(source)
    if in_place:
        if out is not None:
            raise ConfigError("give either an output file or in_place (--in-place), not both")
        newest = list_checkpoints(path.parent.parent)
        if not newest or newest[-1][1].resolve() != path.resolve():
            raise ConfigError(f"{str(path)!r} is not the newest epoch checkpoint of a run: "
                              "only that one can be rescaled in place (resuming starts there)")
    model, shape, cfg = model_from_checkpoint(state, path)
    if cfg.method.name == "weightfix":
        raise ConfigError("rescaling a weight-fixing run would move its fixed weights; "
                          "PathCond is not applied to such checkpoints")
    if cfg.method.name == "gsgd":
        raise ConfigError("G-SGD runs in G-space, which rescalings leave invariant; PathCond "
                          "would not change its training, so it is not applied")
    target = path if in_place else Path(out) if out is not None else _default_out(path)
    if target.exists() and target.is_dir():
        target = target / _default_out(path).name
    if any(d.exists() and not d.is_dir() for d in target.parents):
        raise ConfigError(f"cannot write {str(target)!r}: a parent of it is a file")
    method = build_method(cfg.method)
    optimizer = method.build_optimizer(model, cfg.optimizer, shape)
    if optimizer is None:
        optimizer = make_optimizer(model, cfg.optimizer)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: optimizer state does not fit: "
                              f"{str(exc).strip().splitlines()[0]}") from None
    try:
        report = rescale(model, shape, optimizer=optimizer, solver=solver,  # type: ignore[arg-type]
                         tol=tol)
    except ValueError as exc:
        raise ConfigError(f"cannot rescale {str(path)!r}: "
                          f"{str(exc).strip().splitlines()[0]}") from None
    new = dict(state)
    for key in ("format", "version", "digest"):
        new.pop(key, None)
    new["model"] = model.state_dict()
    new["optimizer"] = optimizer.state_dict()
    extra = dict(new.get("extra", {}))
    extra["pathcond_rescale"] = {"source": str(path), "am_gm_before": report.am_gm_before,
                                 "am_gm_after": report.am_gm_after, "sweeps": report.sweeps,
                                 "converged": report.converged, "solver": solver}
    new["extra"] = extra
    if in_place:
        backup = path.with_name(f"{path.stem}.before-pathcond.pt")
        atomic_copy(path, backup)
    with torch.no_grad():
        save_checkpoint(target, new)
    return target, report
