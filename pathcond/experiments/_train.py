"""Training units of the experiments.

:func:`train_unit` runs one configuration with the harness of :mod:`pathcond.train`
(:class:`~pathcond.train.Trainer`: checkpoints after every epoch, bit-identical resume), in
chunks of epochs when the run may stop early at a target accuracy. :func:`minimal_unit` is
a small internal loop for what the trainer cannot express (a model outside the zoo, skeleton
weights overwritten before another method or with a value other than one); it checkpoints
after every epoch too.

Both return a compact record: status, the per-epoch history (train/val/test loss and
accuracy, AM/GM of the path magnitudes), and a few summary numbers.
"""

from __future__ import annotations

import functools
import json
import math
import re
import shutil
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._files import atomic_write
from ..data import DataSplits, load_dataset, to_autoencoding
from ..errors import ConfigError, PathcondError
from ..rescale.pathcond import SolverName
from ._io import jsonable
from .registry import RunContext

__all__ = ["HISTORY_KEYS", "MethodUnavailable", "first_epoch_at", "get_data", "minimal_unit",
           "run_key", "train_unit"]

HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
                "test_acc", "am_gm", "wall_time")

_DATA_CACHE: dict[str, DataSplits] = {}


class MethodUnavailable(Exception):
    """A method the run needs is not available in this version (one-line message)."""


def run_key(*parts: Any) -> str:
    """A unit key such as ``k=2/lr=0.01/pathcond/seed=0`` from its parts."""
    return "/".join(str(p) for p in parts)


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", key).strip("_")


# --------------------------------------------------------------------------------- data


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h > size or w > size:
        raise ConfigError(f"cannot pad {h}x{w} images to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(x, (left, size - w - left, top, size - h - top))


def get_data(spec: Mapping[str, Any]) -> DataSplits:
    """Load (and cache for the process) a dataset described by ``spec``.

    Keys: ``name`` (any :func:`pathcond.data.load_dataset` name), ``root``, ``limit``
    (training samples kept), ``val_fraction``, ``split_seed``, ``options``; then
    ``pad_to`` (zero-pad images to this size, e.g. 28 -> 32 to give MNIST-like images the
    CIFAR-10 shape), ``test_limit`` (keep the first so many test samples),
    ``normalize: channel`` (standardise each channel with the training
    mean and deviation: the paper's "channel-wise normalization") and ``task:
    autoencoding`` (targets = flattened inputs).
    """
    key = json.dumps(dict(spec), sort_keys=True, default=str)
    if key in _DATA_CACHE:
        return _DATA_CACHE[key]
    splits = load_dataset(str(spec["name"]), root=spec.get("root"),
                          seed=int(spec.get("split_seed", 0)),
                          val_fraction=spec.get("val_fraction"), limit=spec.get("limit"),
                          **dict(spec.get("options") or {}))
    test_limit = spec.get("test_limit")
    if test_limit is not None and splits.test_x is not None and splits.test_y is not None:
        import dataclasses

        splits = dataclasses.replace(splits, test_x=splits.test_x[:int(test_limit)],
                                     test_y=splits.test_y[:int(test_limit)])
    pad_to = spec.get("pad_to")
    norm = spec.get("normalize")
    if pad_to or norm:
        xs = [splits.train_x, splits.val_x, splits.test_x]
        if pad_to:
            xs = [None if x is None else _pad(x, int(pad_to)) for x in xs]
        if norm == "channel":
            tr = xs[0]
            assert tr is not None
            mean = tr.mean(dim=(0, 2, 3), keepdim=True)
            std = tr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
            xs = [None if x is None else (x - mean) / std for x in xs]
        elif norm:
            raise ConfigError(f"data.normalize must be 'channel'; got {norm!r}")
        train_x, val_x, test_x = xs
        assert train_x is not None and val_x is not None
        splits = DataSplits(name=f"{splits.name}-{'pad' + str(pad_to) if pad_to else ''}"
                                 f"{'-norm' if norm else ''}",
                            train_x=train_x, train_y=splits.train_y, val_x=val_x,
                            val_y=splits.val_y, test_x=test_x, test_y=splits.test_y,
                            num_classes=splits.num_classes,
                            input_shape=tuple(int(s) for s in train_x.shape[1:]))
    if spec.get("task") == "autoencoding":
        splits = to_autoencoding(splits)
    _DATA_CACHE[key] = splits
    return splits


def check_trainer_methods(ctx: RunContext, methods: Sequence[Any]) -> None:
    """Raise :class:`ConfigError` (one line) unless every method is one the trainer knows,
    with valid options: checked before the data is loaded or any unit is run."""
    import pydantic

    from ..train.config import MethodConfig

    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(MethodConfig)
    for method in methods:
        try:
            adapter.validate_python(method)
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err.get("loc", ()) if not isinstance(x, int))
            raise ConfigError(f"{ctx.name}: method {json.dumps(jsonable(method))}: "
                              f"{where + ': ' if where else ''}"
                              f"{str(err['msg']).removeprefix('Value error, ')}") from None


def data_config(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer's ``data`` section for a data spec (recorded in the run's config.yaml;
    the tensors themselves are passed to the trainer, already transformed)."""
    out: dict[str, Any] = {"name": spec["name"]}
    for key in ("root", "limit", "val_fraction", "split_seed", "options"):
        if spec.get(key) is not None:
            out[key] = spec[key]
    if spec.get("task") == "autoencoding":
        out["task"] = "autoencoding"
    return out


# ------------------------------------------------------------------------------ records


def _compact_history(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{k: row.get(k) for k in HISTORY_KEYS if row.get(k) is not None} for row in history]


def first_epoch_at(history: Sequence[Mapping[str, Any]], key: str, target: float
                   ) -> int | None:
    """First epoch (>= 1) whose ``key`` reaches ``target``, or ``None``."""
    for row in history:
        value = row.get(key)
        if row.get("epoch", 0) >= 1 and value is not None and value >= target:
            return int(row["epoch"])
    return None


def _record(status: str, history: Sequence[Mapping[str, Any]], extra: Mapping[str, Any]
            ) -> dict[str, Any]:
    hist = _compact_history(history)
    last = hist[-1] if hist else {}
    losses = [r["train_loss"] for r in hist if r.get("epoch", 0) >= 1 and "train_loss" in r]
    tests = [r["test_acc"] for r in hist if r.get("test_acc") is not None]
    vals = [r["val_loss"] for r in hist if r.get("val_loss") is not None]
    return {"status": status, "epochs": int(last.get("epoch", 0)),
            "final_train_loss": last.get("train_loss"),
            "final_train_acc": last.get("train_acc"),
            "final_test_acc": last.get("test_acc"),
            "best_test_acc": max(tests) if tests else None,
            "min_val_loss": min(vals) if vals else None,
            "min_train_loss": min(losses) if losses else None,
            **dict(extra), "history": hist}


# ------------------------------------------------------------------------ trainer units


def _epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def train_unit(ctx: RunContext, key: str, config: Mapping[str, Any], data: DataSplits, *,
               stop_at: tuple[str, float] | None = None, chunk: int = 5,
               spec_extra: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """One training run with :class:`pathcond.train.Trainer`, stored as unit ``key``.

    Args:
        config: an :class:`~pathcond.train.ExperimentConfig` mapping (validated here).
        data: the dataset, already loaded (and transformed) for the trainer.
        stop_at: ``(history key, value)``, e.g. ``("train_acc", 0.99)``: stop at the end of
            the first chunk of ``chunk`` epochs where it is reached (the trainer has no
            early stop; the run is resumed chunk by chunk from its checkpoints).
        spec_extra: more identity of the unit (e.g. the data transform).

    Returns:
        The unit's record, or ``None`` when the method is not available in this version
        (the one-line reason is noted in the summary).
    """
    from ..train import Trainer, validate_config
    from ..train.checkpoint import list_checkpoints

    spec = {"config": dict(config), "stop_at": list(stop_at) if stop_at else None,
            "chunk": chunk if stop_at else None, **dict(spec_extra or {})}
    progress = ctx.unit_progress()
    cached = ctx.store.get(key, spec)
    if cached is not None:
        return dict(cached)
    if not ctx.may_train(key):
        return None
    cfg = validate_config(dict(config), f"{ctx.name}:{key}")
    run_dir = ctx.out_dir / "runs" / _safe(key)
    log = ctx.log if ctx.progress else (lambda _m: None)
    epochs = cfg.training.epochs
    stops = list(range(chunk, epochs, chunk)) + [epochs] if stop_at else [epochs]
    ctx.log(f"{key}: training ({_epochs(epochs)}{', stop at ' + str(stop_at) if stop_at else ''}"
            f"; {progress})")
    t0 = time.perf_counter()
    result: Any = None
    fresh = not ctx.resume
    for stop in stops:
        try:
            trainer = Trainer(cfg, run_dir=run_dir, data=data, log=log)
        except ConfigError as exc:
            text = str(exc)
            if "not available" in text or "pathcond.optim has no" in text:
                ctx.note(f"{key}: {text}")
                return None
            raise
        can_resume = not fresh and run_dir.is_dir() and bool(list_checkpoints(run_dir))
        try:
            result = trainer.run(resume=can_resume, overwrite=not can_resume,
                                 stop_after=None if stop >= epochs else stop)
        except ConfigError as exc:
            if not can_resume:
                raise
            ctx.log(f"{key}: cannot resume ({exc}); starting again")
            trainer = Trainer(cfg, run_dir=run_dir, data=data, log=log)
            result = trainer.run(resume=False, overwrite=True,
                                 stop_after=None if stop >= epochs else stop)
        fresh = False
        if result.status == "diverged":
            break
        if stop_at and first_epoch_at(result.history, *stop_at) is not None:
            break
    assert result is not None
    s = result.summary
    status = "completed" if result.status == "interrupted" else result.status
    extra = {"stopped_early": result.status == "interrupted",
             "setup_time": s.get("setup_time"), "am_gm_init": s.get("am_gm_init"),
             "am_gm_start": s.get("am_gm_start"), "rescalings": s.get("rescalings"),
             "wall_time": s.get("wall_time"), "seconds": time.perf_counter() - t0}
    if stop_at:
        extra["epochs_to_target"] = first_epoch_at(result.history, *stop_at)
    record = ctx.store.put(key, spec, _record(status, result.history, extra))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return dict(record)


# ------------------------------------------------------------------------- minimal loop


def _optimizer(model: nn.Module, opt: Mapping[str, Any]) -> torch.optim.Optimizer:
    name = opt.get("name", "sgd")
    lr = float(opt["lr"])
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=float(opt.get("momentum", 0)))
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    raise ConfigError(f"optimizer must be sgd or adam; got {name!r}")


def fixed_value_log_scales(graph: Any, value: float) -> torch.Tensor:
    """For a layered MLP whose fixed (skeleton) entries are at +-1 and lead to the next
    layer: the log-scales that multiply every fixed entry by ``value`` (a rescaling, so the
    function is unchanged): ``u = -(L - 1 - l) log(value)`` for a unit of hidden layer
    ``l`` (0-based) of an ``L``-layer network."""
    depth = len(graph.layers)
    u = torch.zeros(graph.num_groups, dtype=torch.float64)
    for g, members in enumerate(graph.group_members):
        li = members[0][0]
        u[g] = -(depth - 1 - li) * math.log(value)
    return u


def calibrate_batchnorm(model: nn.Module, x: torch.Tensor | None, batches: int,
                        batch_size: int = 128) -> None:
    """Set every BatchNorm's running statistics to the average over the first ``batches``
    training batches (train-mode forward passes, no gradient). The function in train mode is
    unchanged; the eval-mode fold that PathCond reads then matches the data."""
    if x is None:
        raise ConfigError("calibrate_bn needs training data")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was = model.training
    model.train()
    with torch.no_grad():
        for i in range(batches):
            chunk = x[i * batch_size:(i + 1) * batch_size]
            if chunk.shape[0] == 0:
                break
            model(chunk)
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    model.train(was)


_SOLVE_OPTIONS = {"solver": str, "max_sweeps": int, "tol": float, "step_tol": float}
_KIND_WORDS = {str: "a string", int: "an integer", float: "a number"}


def solve_options(method: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`pathcond.rescale` named by a method's ``solve``
    mapping (``solver``, ``max_sweeps``, ``tol``, ``step_tol``; ``tol: null`` disables the
    relative stop), e.g. ``{solver: coordinate, max_sweeps: 10, tol: null, step_tol: 0.01}``
    for the published solver's fixed 10 sweeps (SPEC section 4). Empty: the defaults."""
    solve = method.get("solve")
    if solve is None:
        solve = {}
    if not isinstance(solve, Mapping):
        raise ConfigError(f"method {method.get('name')!r}: solve must be a mapping of "
                          f"{sorted(_SOLVE_OPTIONS)}, got {solve!r}")
    out: dict[str, Any] = {}
    for key, value in solve.items():
        if key not in _SOLVE_OPTIONS:
            raise ConfigError(f"method {method.get('name')!r}: unknown solve option {key!r}; "
                              f"expected one of {sorted(_SOLVE_OPTIONS)}")
        kind = _SOLVE_OPTIONS[key]
        if value is None and key in ("tol", "step_tol"):
            out[key] = None
            continue
        ok = isinstance(value, str) if kind is str else (
            isinstance(value, int | float) and not isinstance(value, bool)
            and (kind is float or float(value).is_integer()))
        if not ok:
            raise ConfigError(f"method {method.get('name')!r}: solve.{key} must be "
                              f"{_KIND_WORDS[kind]}, got {value!r}")
        out[key] = kind(value)
    if out.get("solver", "newton") not in typing.get_args(SolverName):
        raise ConfigError(f"method {method.get('name')!r}: solve.solver must be one of "
                          f"{list(typing.get_args(SolverName))}, got {out['solver']!r}")
    if out.get("max_sweeps", 1) < 1 or any(
            out.get(k) is not None and not 0 <= out[k] < math.inf for k in ("tol", "step_tol")):
        raise ConfigError(f"method {method.get('name')!r}: solve needs max_sweeps >= 1 and "
                          f"finite tol, step_tol >= 0, got {dict(solve)}")
    return out


#: The options of each method of the minimal loop, besides ``name`` and ``skeleton``.
MINIMAL_METHOD_OPTIONS: dict[str, frozenset[str]] = {
    "baseline": frozenset(),
    "pathcond": frozenset({"calibrate_bn", "bn", "solve"}),
    "enorm": frozenset({"c", "p", "every", "exclude_batchnorm"}),
    "weightfix": frozenset({"value", "init"}),
    "gspace": frozenset({"init"}),
}


def check_minimal_method(method: Mapping[str, Any], *, label: str | None = None) -> None:
    """Raise :class:`ConfigError` (one line, naming ``label``) unless ``method`` names a
    method of the minimal loop with options it has (a trainer option such as ENorm's
    ``every_epochs`` would otherwise be silently ignored)."""
    where = f"minimal loop, {label}" if label else "minimal loop"
    name = str(method.get("name", "baseline"))
    if name not in MINIMAL_METHOD_OPTIONS:
        raise ConfigError(f"{where}: unknown method {name!r}; expected one of "
                          f"{sorted(MINIMAL_METHOD_OPTIONS)}")
    allowed = MINIMAL_METHOD_OPTIONS[name] | {"name", "skeleton"}
    unknown = sorted(set(method) - allowed)
    if unknown:
        hint = " (here ENorm's 'every' counts steps; 'every_epochs' is the trainer's)" \
            if name == "enorm" and "every_epochs" in unknown else ""
        raise ConfigError(f"{where}: method {name!r} has no option {unknown[0]!r}; its "
                          f"options: {', '.join(sorted(allowed - {'name'}))}{hint}")
    skeleton = method.get("skeleton")
    if skeleton is not None and (not isinstance(skeleton, Mapping)
                                 or set(skeleton) - {"value", "roots"}):
        raise ConfigError(f"{where}: method {name!r}: skeleton must be a mapping of value, "
                          f"roots, got {skeleton!r}")
    if name == "weightfix" and method.get("value") is not None and "init" in method \
            and float(method["value"]) != 1.0:
        raise ConfigError(f"{where}: method 'weightfix': init has no effect with a value "
                          "other than 1 (the fixed entries are moved to +-value); drop one")
    if name == "pathcond":
        if method.get("bn") not in (None, "reference"):
            raise ConfigError(f"{where}: method 'pathcond': bn must be 'reference' or "
                              f"absent, got {method['bn']!r}")
        if method.get("bn") == "reference" and method.get("calibrate_bn"):
            raise ConfigError(f"{where}: method 'pathcond': calibrate_bn has no effect with "
                              "bn: reference (the emulation ignores BatchNorm); drop one")
        try:
            solve_options(method)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _rescale_info(report: Any) -> dict[str, Any]:
    """What a minimal-loop run records of a :class:`pathcond.RescaleReport`."""
    return {"am_gm_before": report.am_gm_before, "am_gm_after": report.am_gm_after,
            "u_inf": float(report.log_scales.abs().max()), "converged": report.converged,
            "sweeps": report.sweeps, "solver": report.solver}


def reference_bn_pathcond(model: nn.Module, *, solve: Mapping[str, Any] | None = None
                          ) -> dict[str, Any]:
    """An emulation of PathCond that ignores BatchNorm (how an implementation that does not
    model BatchNorm behaves; a guess at the reference code, SPEC section 2): the log-scales
    are computed on the same MLP without its BatchNorm layers and applied to the raw Linear
    weights, incoming rows ``* e^u`` and outgoing columns ``* e^-u``. In training mode the
    BatchNorm after a Linear cancels the row scaling, so the net effect is the outgoing
    scaling: the function changes. ``solve``: keyword arguments of :func:`pathcond.rescale`
    (the published solver stops after 10 coordinate sweeps). Only for
    :class:`pathcond.models.MLP`."""
    from .. import rescale, rescaling_graph
    from ..models import MLP

    if not isinstance(model, MLP):
        raise ConfigError("bn: reference is implemented for pathcond.models.MLP only")
    linears = [m for m in model.layers if isinstance(m, nn.Linear)]
    plain = MLP(list(model.widths), bias=linears[0].bias is not None,
                output_bias=linears[-1].bias is not None, batchnorm=False).double()
    plain_linears = [m for m in plain.layers if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for a, b in zip(plain_linears, linears, strict=True):
            a.weight.copy_(b.weight)
            if a.bias is not None and b.bias is not None:
                a.bias.copy_(b.bias)
    graph = rescaling_graph(plain, (int(model.widths[0]),))
    report = rescale(plain, graph=graph, **dict(solve or {}))
    with torch.no_grad():
        for g, members in enumerate(graph.group_members):
            u = float(report.log_scales[g])
            for li, unit in members:
                linears[li].weight[unit, :] *= math.exp(u)
                if linears[li].bias is not None:
                    linears[li].bias[unit] *= math.exp(u)
                linears[li + 1].weight[:, unit] *= math.exp(-u)
    return {**_rescale_info(report), "function_preserving": False}


class _Hooks:
    """The method of a minimal-loop run: its set-up and per-step hooks."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], method: Mapping[str, Any],
                 opt_cfg: Mapping[str, Any], calib_data: torch.Tensor | None = None) -> None:
        from .. import rescale, rescaling_graph
        from ..rescale import apply_rescaling

        self.name = str(method.get("name", "baseline"))
        self.model = model
        self.info: dict[str, Any] = {}
        self.after_step: Callable[[], None] = lambda: None
        graph = rescaling_graph(model, input_shape)
        skeleton = method.get("skeleton")
        if skeleton is not None:  # overwrite skeleton weights first (changes the function)
            from ..optim import init_skeleton

            done = init_skeleton(model, graph=graph, value=float(skeleton.get("value", 1.0)),
                                 roots=bool(skeleton.get("roots", False)))
            self.info["skeleton_set"] = done.num_fixed
            if done.num_roots:
                self.info["roots_set"] = done.num_roots
        init = str(method.get("init", "rescale"))
        if self.name == "gspace":
            try:
                from ..optim import GSpace
            except ImportError as exc:
                raise MethodUnavailable(f"method 'gspace' is not available: {exc}") from None
            inner = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[opt_cfg.get("name", "sgd")]
            self.optimizer: torch.optim.Optimizer = GSpace(
                model, graph=graph, optimizer=inner, lr=float(opt_cfg["lr"]),
                init=init)  # type: ignore[arg-type]
            return
        self.optimizer = _optimizer(model, opt_cfg)
        if self.name == "baseline":
            return
        if self.name == "pathcond":
            if method.get("calibrate_bn"):
                calibrate_batchnorm(model, calib_data, int(method["calibrate_bn"]))
            solve = solve_options(method)
            if method.get("bn") == "reference":
                self.info = reference_bn_pathcond(model, solve=solve)
                return
            report = rescale(model, graph=graph, optimizer=self.optimizer, **solve)
            self.info = _rescale_info(report)
        elif self.name == "enorm":
            try:
                from ..optim import ENorm
            except ImportError as exc:
                raise MethodUnavailable(f"method 'enorm' is not available: {exc}") from None
            self.enorm = ENorm(model, graph=graph, c=float(method.get("c", 1.0)),
                               p=float(method.get("p", 2.0)),
                               every=int(method.get("every", 1)),
                               exclude_batchnorm=bool(method.get("exclude_batchnorm", True)),
                               optimizer=self.optimizer)
        elif self.name == "weightfix":
            try:
                from ..optim import WeightFixing
            except ImportError as exc:
                raise MethodUnavailable(f"method 'weightfix' is not available: {exc}") from None
            fixed_value = method.get("value")
            if fixed_value is not None and float(fixed_value) != 1.0:
                # Set-to-one log-scales read from a copy, then every fixed entry moved to
                # +-value by one more rescaling; the entries are then fixed where they are.
                import copy

                probe = WeightFixing(copy.deepcopy(model), input_shape, init="rescale")
                u = probe.report.log_scales.to(torch.float64)
                apply_rescaling(model, graph,
                                u + fixed_value_log_scales(graph, float(fixed_value)))
                fix = WeightFixing(model, graph=graph, init="keep")
            else:
                fix = WeightFixing(model, graph=graph, init=init)  # type: ignore[arg-type]
            fix.attach(self.optimizer)
            self.fix = fix
            self.info = {"fixed": fix.report.num_fixed, "free": fix.report.num_free}
        else:
            raise ConfigError(f"minimal loop: unknown method {self.name!r}")


def minimal_unit(ctx: RunContext, key: str, spec: Mapping[str, Any], *,
                 build_model: Callable[[], nn.Module], data: DataSplits,
                 method: Mapping[str, Any], optimizer: Mapping[str, Any], epochs: int,
                 batch_size: int, seed: int, eval_batch_size: int = 1000,
                 eval_splits: Sequence[str] = ("val", "test"),
                 stop_at: tuple[str, float] | None = None) -> dict[str, Any] | None:
    """One training run with the internal minimal loop (SGD/Adam; methods ``baseline``,
    ``pathcond`` (at initialisation; ``solve``: :func:`solve_options`, ``calibrate_bn``:
    batches that set the BatchNorm running statistics first, ``bn: reference``:
    :func:`reference_bn_pathcond`), ``enorm`` (``every`` steps), ``weightfix``
    (``init``: rescale / keep / ones as :class:`pathcond.optim.WeightFixing`, or ``value``:
    fixed entries rescaled to +-value), ``gspace`` (the optimizer run on basis-path values;
    ``init`` as :class:`pathcond.optim.GSpace`)). Any method may first overwrite the
    skeleton weights with ``skeleton: {value: v, roots: bool}``
    (:func:`pathcond.optim.init_skeleton`: the fixed entries, and the G-space roots with
    ``roots``; changes the function). Checkpoints after every epoch in
    ``<out_dir>/runs/<key>/state.pt``; the sample order of epoch ``e`` depends on
    ``(seed, e)`` only, so a resumed run is identical to an uninterrupted one.
    """
    check_minimal_method(method)
    full_spec = {"minimal_loop": 1, **dict(spec), "method": dict(method),
                 "optimizer": dict(optimizer), "epochs": epochs, "batch_size": batch_size,
                 "seed": seed, "stop_at": list(stop_at) if stop_at else None}
    progress = ctx.unit_progress()
    cached = ctx.store.get(key, full_spec)
    if cached is not None:
        return dict(cached)
    if not ctx.may_train(key):
        return None
    ctx.log(f"{key}: training ({_epochs(epochs)}, minimal loop; {progress})")
    run_dir = ctx.out_dir / "runs" / _safe(key)
    state_path = run_dir / "state.pt"
    torch.manual_seed(seed)
    model = build_model()
    input_shape = tuple(int(s) for s in data.input_shape)
    try:
        hooks = _Hooks(model, input_shape, method, optimizer, calib_data=data.train_x)
    except MethodUnavailable as exc:
        ctx.note(f"{key}: {exc}")
        return None
    opt = hooks.optimizer
    classification = data.num_classes is not None
    history: list[dict[str, Any]] = []
    epoch = 0
    wall = 0.0
    if ctx.resume and state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        if state.get("spec") == json.loads(json.dumps(full_spec, default=str)):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            history, epoch, wall = state["history"], int(state["epoch"]), float(state["wall"])
            if hasattr(hooks, "enorm"):
                hooks.enorm.load_state_dict(state.get("enorm", {}))
            ctx.log(f"{key}: resumed at epoch {epoch}")

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y) if classification else F.mse_loss(out, y)

    @torch.no_grad()
    def evaluate(x: torch.Tensor | None, y: torch.Tensor | None) -> tuple[Any, Any]:
        if x is None or y is None or x.shape[0] == 0:
            return None, None
        model.eval()
        total, correct = 0.0, 0
        for s in range(0, x.shape[0], eval_batch_size):
            out = model(x[s:s + eval_batch_size])
            total += float(loss_fn(out, y[s:s + eval_batch_size])) * out.shape[0]
            if classification:
                correct += int((out.argmax(1) == y[s:s + eval_batch_size]).sum())
        model.train()
        n = x.shape[0]
        return total / n, (correct / n if classification else None)

    if not history:
        tl, ta = evaluate(data.train_x, data.train_y)
        history.append({"epoch": 0, "train_loss": tl, "train_acc": ta})
    status = "completed"
    t_start = time.perf_counter()
    while epoch < epochs:
        if stop_at and first_epoch_at(history, *stop_at) is not None:
            break
        epoch += 1
        model.train()
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7_919 + 0x5EED)
        perm = torch.randperm(data.num_train, generator=gen)
        t = time.perf_counter()
        loss_sum, correct, count = 0.0, 0, 0
        for s in range(0, data.num_train, batch_size):
            idx = perm[s:s + batch_size]
            x, y = data.train_x[idx], data.train_y[idx]
            out = model(x)
            loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * idx.numel()
            if classification:
                correct += int((out.detach().argmax(1) == y).sum())
            count += idx.numel()
        wall += time.perf_counter() - t
        train_loss = loss_sum / count
        row: dict[str, Any] = {"epoch": epoch, "wall_time": wall,
                               "train_loss": train_loss if math.isfinite(train_loss) else None,
                               "train_acc": correct / count if classification else None}
        if "val" in eval_splits:
            row["val_loss"], row["val_acc"] = evaluate(data.val_x, data.val_y)
        if "test" in eval_splits:
            row["test_loss"], row["test_acc"] = evaluate(data.test_x, data.test_y)
        row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in row.items()}
        history.append(row)
        ctx.log(f"{key}: epoch {epoch}/{epochs} train loss {row['train_loss']}")
        run_dir.mkdir(parents=True, exist_ok=True)
        state = {"spec": json.loads(json.dumps(full_spec, default=str)),
                 "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "rng": torch.get_rng_state(), "history": history, "epoch": epoch,
                 "wall": wall, "enorm": hooks.enorm.state_dict()
                 if hasattr(hooks, "enorm") else {}}
        atomic_write(state_path, functools.partial(torch.save, state))
        if row["train_loss"] is None:
            status = "diverged"
            break
    extra: dict[str, Any] = {"method_info": hooks.info, "wall_time": wall,
                             "seconds": time.perf_counter() - t_start}
    if stop_at:
        extra["epochs_to_target"] = first_epoch_at(history, *stop_at)
    record = ctx.store.put(key, full_spec, _record(status, history, extra))
    state_path.unlink(missing_ok=True)
    return dict(record)


def pathcond_report(model: nn.Module, input_shape: Sequence[int], *,
                    solver: str = "newton") -> dict[str, Any]:
    """PathCond on ``model`` (in place): ``||u||_inf``, AM/GM before and after, sweeps."""
    from .. import rescale

    try:
        report = rescale(model, tuple(input_shape), solver=solver)  # type: ignore[arg-type]
    except PathcondError as exc:
        return {"error": str(exc).splitlines()[0]}
    u = report.log_scales
    return {"u_inf": float(u.abs().max()) if u.numel() else 0.0,
            "u_mean_abs": float(u.abs().mean()) if u.numel() else 0.0,
            "am_gm_before": report.am_gm_before, "am_gm_after": report.am_gm_after,
            "sweeps": report.sweeps, "converged": report.converged,
            "seconds": report.seconds, "dead_groups": len(report.dead_groups)}
