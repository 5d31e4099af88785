"""Training methods as plug-ins of the trainer.

A method is an object with a few hooks the training loop calls; the registry
:data:`METHODS` maps a config ``name`` to its class. The trainer:

1. builds the model (seeded), then asks ``method.build_optimizer(model, cfg)`` for an
   optimizer (``None``: the standard one from the ``optimizer`` section);
2. calls ``method.setup(ctx)`` on every start, fresh or resumed (build graphs, hooks);
3. calls ``method.on_train_begin()`` only on a fresh start (e.g. PathCond at init);
4. around every optimizer step calls ``before_step()`` (after ``backward``) and
   ``after_step(step)`` (``step`` = optimizer steps done so far);
5. calls ``on_epoch_end(epoch)`` after each epoch (``epoch`` counted from 1);
6. saves ``state_dict()`` in every checkpoint and restores it with ``load_state_dict``.

The time spent in these hooks is reported as the run's "rescale time".

``baseline`` and ``pathcond`` are implemented here; ``enorm``, ``pathsgd``, ``gsgd`` and
``weightfix`` wrap the classes of :mod:`pathcond.optim`, imported when a run starts, and
raise a one-line :class:`~pathcond.errors.ConfigError` if they are not available.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import ConfigError
from ..graph import RescalingGraph, rescaling_graph
from .config import (
    BaselineConfig,
    ENormConfig,
    GSGDConfig,
    OptimizerConfig,
    PathCondConfig,
    PathSGDConfig,
    WeightFixConfig,
)

__all__ = ["METHODS", "Method", "MethodContext", "build_method", "make_optimizer",
           "optim_class"]


@dataclass
class MethodContext:
    """What a method sees of the run."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    input_shape: tuple[int, ...]
    log: Callable[[str], None] = print
    _graph: RescalingGraph | None = field(default=None, repr=False)

    @property
    def graph(self) -> RescalingGraph:
        """The model's rescaling graph, built on first use."""
        if self._graph is None:
            self._graph = rescaling_graph(self.model, self.input_shape)
        return self._graph


def make_optimizer(params: Any, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The standard optimizer of an ``optimizer`` section (SGD with momentum, or Adam)."""
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                            weight_decay=cfg.weight_decay)


class Method:
    """Base class: plain training, every hook a no-op."""

    name: ClassVar[str] = "baseline"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._ctx: MethodContext | None = None
        self.rescalings = 0

    @property
    def ctx(self) -> MethodContext:
        if self._ctx is None:
            raise RuntimeError(f"method {self.name!r} used before setup()")
        return self._ctx

    def build_optimizer(self, model: nn.Module, cfg: OptimizerConfig,
                        input_shape: tuple[int, ...]) -> torch.optim.Optimizer | None:
        """An optimizer of the method's own, or ``None`` for the standard one."""
        return None

    def setup(self, ctx: MethodContext) -> None:
        """Called on every start (fresh or resumed), after the optimizer is built."""
        self._ctx = ctx

    def on_train_begin(self) -> None:
        """Called once before the first epoch of a fresh run (not on resume)."""

    def before_step(self) -> None:
        """Called after ``loss.backward()``, before ``optimizer.step()``."""

    def after_step(self, step: int) -> None:
        """Called after ``optimizer.step()``; ``step`` counts the steps done."""

    def on_epoch_end(self, epoch: int) -> None:
        """Called after each epoch (``epoch`` from 1), before evaluation."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume the method exactly."""
        return {"rescalings": self.rescalings}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.rescalings = int(state.get("rescalings", 0))


class Baseline(Method):
    """Plain training with the configured optimizer."""

    name = "baseline"


class PathCondMethod(Method):
    """PathCond at initialisation and/or every k steps or epochs, optionally only when the
    AM/GM of the path magnitudes exceeds a threshold; the optimizer state is transported
    (SPEC section 5) so momentum and Adam moments stay consistent."""

    name = "pathcond"
    cfg: PathCondConfig

    def __init__(self, cfg: PathCondConfig) -> None:
        super().__init__(cfg)
        self.last_am_gm: tuple[float, float] | None = None

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        _ = ctx.graph  # trace now: an unsupported model fails before training starts

    def on_train_begin(self) -> None:
        if self.cfg.at_init:
            self._rescale(check_threshold=False)

    def after_step(self, step: int) -> None:
        every = self.cfg.every_steps
        if every is not None and step % every == 0:
            self._rescale()

    def on_epoch_end(self, epoch: int) -> None:
        every = self.cfg.every_epochs
        if every is not None:
            if epoch % every == 0:
                self._rescale()
        elif self.cfg.every_steps is None and self.cfg.am_gm_threshold is not None:
            self._rescale()

    def _rescale(self, *, check_threshold: bool = True) -> None:
        from ..rescale import build_problem, rescale

        ctx = self.ctx
        threshold = self.cfg.am_gm_threshold
        if check_threshold and threshold is not None:
            problem = build_problem(ctx.model, ctx.graph)
            zero = torch.zeros(ctx.graph.num_groups, dtype=torch.float64,
                               device=problem.device)
            if problem.am_gm(zero) <= threshold:
                return
        report = rescale(ctx.model, graph=ctx.graph, optimizer=ctx.optimizer,
                         solver=self.cfg.solver, tol=self.cfg.tol,
                         max_sweeps=self.cfg.max_sweeps)
        self.rescalings += 1
        self.last_am_gm = (report.am_gm_before, report.am_gm_after)
        if self.rescalings == 1 or not report.converged:
            status = "" if report.converged else " (NOT converged)"
            ctx.log(f"PathCond: AM/GM {report.am_gm_before:.4g} -> {report.am_gm_after:.4g} "
                    f"in {report.sweeps} sweeps, {report.seconds:.2f} s{status}")


# ------------------------------------------------------------- methods of pathcond.optim


def optim_class(class_name: str, method: str) -> Any:
    """``pathcond.optim.<class_name>``, or a one-line ConfigError if it is not there yet."""
    try:
        module = importlib.import_module("pathcond.optim")
    except ImportError as exc:
        raise ConfigError(f"method {method!r} is not available: cannot import "
                          f"pathcond.optim ({exc})") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"method {method!r} is not available in this version: "
                          f"pathcond.optim has no {class_name}")
    return cls


def _construct(cls: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """Instantiate ``cls``; a constructor refusal (bad option, unsupported model) becomes a
    one-line ConfigError."""
    try:
        inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"method {method!r}: bad options {sorted(kwargs)}: {exc}") from None
    except ValueError:  # no signature available
        pass
    try:
        return cls(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"method {method!r}: {first}") from None


def _state_of(obj: Any) -> dict[str, Any]:
    fn = getattr(obj, "state_dict", None)
    return dict(fn()) if callable(fn) else {}


def _load_state(obj: Any, state: dict[str, Any] | None) -> None:
    fn = getattr(obj, "load_state_dict", None)
    if callable(fn) and state:
        fn(state)


class ENormMethod(Method):
    """ENorm (Stock et al. 2019): one balancing cycle every ``every`` SGD steps."""

    name = "enorm"
    cfg: ENormConfig

    def __init__(self, cfg: ENormConfig) -> None:
        super().__init__(cfg)
        self.impl: Any = None

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        cls = optim_class("ENorm", self.name)
        kwargs: dict[str, Any] = {"c": self.cfg.c, "p": self.cfg.p, "every": self.cfg.every,
                                  "exclude_batchnorm": self.cfg.exclude_batchnorm}
        if "optimizer" in _parameters(cls):
            kwargs["optimizer"] = ctx.optimizer
        self.impl = _construct(cls, self.name, ctx.model, ctx.input_shape, **kwargs)

    def after_step(self, step: int) -> None:
        self.impl.step()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "impl": _state_of(self.impl)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        _load_state(self.impl, state.get("impl"))


class _OptimizerMethod(Method):
    """A method that is an optimizer of :mod:`pathcond.optim` (Path-SGD, G-SGD)."""

    class_name: ClassVar[str] = ""
    cfg: PathSGDConfig | GSGDConfig

    def build_optimizer(self, model: nn.Module, cfg: OptimizerConfig,
                        input_shape: tuple[int, ...]) -> torch.optim.Optimizer | None:
        cls = optim_class(self.class_name, self.name)
        kwargs: dict[str, Any] = {"lr": cfg.lr}
        params = _parameters(cls)
        if cfg.momentum and "momentum" in params:
            kwargs["momentum"] = cfg.momentum
        elif cfg.momentum:
            raise ConfigError(f"method {self.name!r} does not support optimizer.momentum")
        if cfg.weight_decay and "weight_decay" in params:
            kwargs["weight_decay"] = cfg.weight_decay
        elif cfg.weight_decay:
            raise ConfigError(f"method {self.name!r} does not support optimizer.weight_decay")
        if cfg.name != "sgd":
            raise ConfigError(f"method {self.name!r} is its own optimizer: use optimizer.name: "
                              "sgd (only lr and momentum are used)")
        kwargs.update(self.cfg.options)
        opt: torch.optim.Optimizer = _construct(cls, self.name, model, input_shape, **kwargs)
        return opt


def _parameters(cls: Any) -> Sequence[str]:
    try:
        return list(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return []


class PathSGDMethod(_OptimizerMethod):
    """Path-SGD (Neyshabur et al. 2015): ``w <- w - lr g / m``."""

    name = "pathsgd"
    class_name = "PathSGD"


class GSGDMethod(_OptimizerMethod):
    """G-SGD (Meng et al. 2019): SGD on the values of basis paths."""

    name = "gsgd"
    class_name = "GSGD"


class WeightFixMethod(Method):
    """Weight fixing (thesis section 3): one outgoing weight per hidden unit is fixed."""

    name = "weightfix"
    cfg: WeightFixConfig

    def __init__(self, cfg: WeightFixConfig) -> None:
        super().__init__(cfg)
        self.impl: Any = None

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        cls = optim_class("WeightFixing", self.name)
        kwargs: dict[str, Any] = {"set_to_one": self.cfg.set_to_one, **self.cfg.options}
        if self.cfg.strategy is not None:
            kwargs["strategy"] = self.cfg.strategy
        self.impl = _construct(cls, self.name, ctx.model, ctx.input_shape, **kwargs)

    def on_train_begin(self) -> None:
        for hook in ("apply", "reparametrize", "fix"):
            fn = getattr(self.impl, hook, None)
            if callable(fn):
                fn()
                return

    def before_step(self) -> None:
        fn = getattr(self.impl, "zero_fixed_grads", None)
        if callable(fn):
            fn()

    def after_step(self, step: int) -> None:
        fn = getattr(self.impl, "step", None)
        if callable(fn):
            fn()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "impl": _state_of(self.impl)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        _load_state(self.impl, state.get("impl"))


METHODS: dict[str, type[Method]] = {
    "baseline": Baseline,
    "pathcond": PathCondMethod,
    "enorm": ENormMethod,
    "pathsgd": PathSGDMethod,
    "gsgd": GSGDMethod,
    "weightfix": WeightFixMethod,
}


def build_method(cfg: BaselineConfig | PathCondConfig | ENormConfig | PathSGDConfig
                 | GSGDConfig | WeightFixConfig) -> Method:
    """The plug-in for a method config."""
    try:
        cls = METHODS[cfg.name]
    except KeyError:
        raise ConfigError(f"unknown method {cfg.name!r}; available: "
                          f"{', '.join(METHODS)}") from None
    return cls(cfg)
