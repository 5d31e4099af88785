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

Distributed runs (:mod:`pathcond.train.distributed`): the hooks run on every rank, on the
plain module (never the DDP wrapper), after DDP has averaged the gradients. A hook that
changes the parameters must count it in ``rescalings``: after ``on_train_begin``,
``after_step`` and ``on_epoch_end`` (when :meth:`Method.may_rescale` says it may), the
trainer checks whether any rank's count moved and, if so, broadcasts rank 0's parameters,
buffers and optimizer state. ``before_step`` must not change the parameters.

``baseline`` is plain training; ``pathcond`` drives :class:`pathcond.rescale.PathCondSchedule`;
``enorm``, ``pathsgd``, ``gsgd`` and ``weightfix`` wrap the classes of :mod:`pathcond.optim`
(``ENorm``, ``PathSGD``, ``GSGD`` / ``GSpace``, ``WeightFixing``), looked up when a run
starts: a missing one is a one-line :class:`~pathcond.errors.ConfigError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import ConfigError
from ..graph import RescalingGraph, rescaling_graph
from ..rescale import pathcond_lr_scales
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
           "optim_class", "resolve_lr_scales"]


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


def _param_groups(model: nn.Module, cfg: OptimizerConfig) -> Any:
    """``model``'s parameters, in one parameter group per ``lr_scales`` factor (with the
    scaled lr) and one for the rest; all of them in one list without ``lr_scales``."""
    if not cfg.lr_scales:
        return model.parameters()
    if isinstance(cfg.lr_scales, str):
        raise ConfigError("optimizer.lr_scales: 'pathcond' must be resolved first: a run does "
                          "it when it starts (resolve_lr_scales); elsewhere pass the mapping "
                          "pathcond.pathcond_lr_scales(model, input_shape) gives")
    groups: dict[float, list[nn.Parameter]] = {}
    used: set[str] = set()
    for name, p in model.named_parameters():
        hits = [q for q in cfg.lr_scales if name == q or name.startswith(q + ".")]
        if len(hits) > 1:
            raise ConfigError(f"optimizer.lr_scales: parameter {name!r} lies under several "
                              f"names ({', '.join(hits)}); give each parameter one factor")
        used.update(hits)
        groups.setdefault(cfg.lr_scales[hits[0]] if hits else 1.0, []).append(p)
    unknown = [q for q in cfg.lr_scales if q not in used]
    if unknown:
        modules = ", ".join(n for n, _ in model.named_children()) or "none"
        raise ConfigError(f"optimizer.lr_scales: no parameter of the model is {unknown[0]!r} "
                          f"or lies under it (its top-level modules: {modules})")
    return [{"params": ps, "lr": cfg.lr * factor} for factor, ps in groups.items()]


def resolve_lr_scales(cfg: OptimizerConfig, model: nn.Module, input_shape: Sequence[int], *,
                      method: str) -> OptimizerConfig:
    """``cfg`` with ``lr_scales: pathcond`` replaced by its mapping, PathCond at ``model``'s
    current parameters as one learning-rate factor per tensor
    (:func:`pathcond.rescale.pathcond_lr_scales`); any other ``cfg`` unchanged."""
    if cfg.lr_scales != "pathcond":
        return cfg
    if method == "pathcond":
        raise ConfigError("optimizer.lr_scales: 'pathcond' is PathCond as learning rates "
                          "without rescaling; method 'pathcond' rescales already, so one of "
                          "the two must go (lr_scales: pathcond goes with method: baseline)")
    with torch.random.fork_rng():
        scales = pathcond_lr_scales(model, tuple(input_shape))
    if not scales:
        raise ConfigError("optimizer.lr_scales: 'pathcond' found nothing to scale: PathCond "
                          "rescales no parameter of this model")
    return cfg.model_copy(update={"lr_scales": scales})


def make_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The standard optimizer of an ``optimizer`` section (SGD with momentum, or Adam) over
    ``model``'s parameters, with ``lr_scales`` as parameter groups."""
    params = _param_groups(model, cfg)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                            weight_decay=cfg.weight_decay)


class Method:
    """Base class: plain training, every hook a no-op."""

    name: ClassVar[str] = "baseline"
    #: Whether the optimizer step reads buffers (BatchNorm statistics): under DDP the
    #: trainer then gives every rank rank 0's buffers before each step.
    step_reads_buffers: ClassVar[bool] = False

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._ctx: MethodContext | None = None
        self.rescalings = 0

    @property
    def ctx(self) -> MethodContext:
        """The model, optimizer and input shape given to :meth:`setup`."""
        if self._ctx is None:
            raise RuntimeError(f"method {self.name!r} used before setup()")
        return self._ctx

    def build_optimizer(self, model: nn.Module, cfg: OptimizerConfig,
                        input_shape: tuple[int, ...]) -> torch.optim.Optimizer | None:
        """An optimizer of the method's own, or ``None`` for the standard one."""
        return None

    def may_rescale(self, hook: str) -> bool:
        """Whether the hook ``hook`` (``train_begin``, ``after_step`` or ``epoch_end``) may
        change the parameters (distributed runs check for a rescaling after it). The base
        class says yes to all, so that a new method is safe before it is precise."""
        return True

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

    def may_rescale(self, hook: str) -> bool:
        return False


class PathCondMethod(Method):
    """PathCond at initialisation and/or every k steps or epochs and/or when the AM/GM of
    the path magnitudes exceeds a threshold (:class:`pathcond.rescale.PathCondSchedule`);
    the optimizer state is transported (SPEC section 5) so momentum and Adam moments stay
    consistent."""

    name = "pathcond"
    cfg: PathCondConfig

    def __init__(self, cfg: PathCondConfig) -> None:
        super().__init__(cfg)
        self.schedule: Any = None

    def setup(self, ctx: MethodContext) -> None:
        from ..rescale import PathCondSchedule

        super().setup(ctx)
        c = self.cfg
        self.schedule = PathCondSchedule(
            ctx.model, graph=ctx.graph, optimizer=ctx.optimizer, at_start=c.at_init,
            every_steps=c.every_steps, every_epochs=c.every_epochs,
            am_gm_threshold=c.am_gm_threshold, check_every=c.check_every,
            rescale_options={"solver": c.solver, "tol": c.tol, "max_sweeps": c.max_sweeps})

    def _report(self, report: Any) -> None:
        if report is None:
            return
        self.rescalings += 1
        if self.rescalings == 1 or not report.converged:
            status = "" if report.converged else " (NOT converged)"
            self.ctx.log(f"PathCond: AM/GM {report.am_gm_before:.4g} -> "
                         f"{report.am_gm_after:.4g} in {report.sweeps} sweeps, "
                         f"{report.seconds:.2f} s{status}")

    def may_rescale(self, hook: str) -> bool:
        c = self.cfg
        if hook == "train_begin":
            return c.at_init
        if hook == "after_step":
            return c.every_steps is not None or c.am_gm_threshold is not None
        return hook == "epoch_end" and c.every_epochs is not None

    def on_train_begin(self) -> None:
        self._report(self.schedule.start())

    def after_step(self, step: int) -> None:
        self._report(self.schedule.after_step())

    def on_epoch_end(self, epoch: int) -> None:
        self._report(self.schedule.after_epoch())

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state["schedule"])
        super().load_state_dict(state)


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
    """Instantiate ``cls``; a refusal of the options or of the model becomes a one-line
    ConfigError (UnsupportedModelError and other PathcondErrors pass through)."""
    try:
        return cls(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"method {method!r}: {first}") from None


def _plain_sgd(cfg: OptimizerConfig, method: str) -> None:
    """Refuse optimizer options a method does not implement."""
    if cfg.nesterov:
        raise ConfigError(f"method {method!r} does not support optimizer.nesterov")
    if cfg.weight_decay:
        raise ConfigError(f"method {method!r} does not support optimizer.weight_decay")
    if cfg.lr_scales:
        raise ConfigError(f"method {method!r} does not support optimizer.lr_scales")


class ENormMethod(Method):
    """ENorm (Stock et al. 2019): one balancing cycle every ``every`` optimizer steps, or
    every ``every_epochs`` epochs; the optimizer state is transported at each cycle."""

    name = "enorm"
    cfg: ENormConfig

    def __init__(self, cfg: ENormConfig) -> None:
        super().__init__(cfg)
        self.impl: Any = None

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        cls = optim_class("ENorm", self.name)
        c = self.cfg
        self.impl = _construct(cls, self.name, ctx.model, graph=ctx.graph, c=c.c, p=c.p,
                               every=c.every, exclude_batchnorm=c.exclude_batchnorm,
                               schedule=c.schedule)
        # Not attached as a step hook, so that its time is counted here; ``optimizer`` is
        # the attribute ENorm.step() transports the state of.
        self.impl.optimizer = ctx.optimizer

    def _cycle(self) -> None:
        self.impl.step()
        self.rescalings += 1

    def may_rescale(self, hook: str) -> bool:
        if hook == "after_step":
            return self.cfg.every_epochs is None
        return hook == "epoch_end" and self.cfg.every_epochs is not None

    def after_step(self, step: int) -> None:
        if self.cfg.every_epochs is None and step % self.cfg.every == 0:
            self._cycle()

    def on_epoch_end(self, epoch: int) -> None:
        if self.cfg.every_epochs is not None and epoch % self.cfg.every_epochs == 0:
            self._cycle()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "impl": self.impl.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.impl.load_state_dict(state["impl"])


class PathSGDMethod(Method):
    """Path-SGD (Neyshabur et al. 2015): ``w <- w - lr g / m``, the optimizer itself."""

    name = "pathsgd"
    cfg: PathSGDConfig
    step_reads_buffers = True  # the magnitudes fold BatchNorm's running variances

    def may_rescale(self, hook: str) -> bool:
        return False  # the step is deterministic given the all-reduced gradients

    def build_optimizer(self, model: nn.Module, cfg: OptimizerConfig,
                        input_shape: tuple[int, ...]) -> torch.optim.Optimizer | None:
        cls = optim_class("PathSGD", self.name)
        if cfg.name != "sgd":
            raise ConfigError("method 'pathsgd' is its own optimizer: set optimizer.name: sgd "
                              "(its lr and momentum are used)")
        _plain_sgd(cfg, self.name)
        opt: torch.optim.Optimizer = _construct(cls, self.name, model, input_shape, lr=cfg.lr,
                                                momentum=cfg.momentum, eps=self.cfg.eps)
        return opt


class GSGDMethod(Method):
    """G-SGD (Meng et al. 2019): SGD on the values of basis paths; with Adam configured,
    Adam in G-space (:class:`pathcond.optim.GSpace`). ``init`` is applied when the optimizer
    is built, on the freshly seeded model; a resumed run loads the checkpoint's weights
    after that, so the initialisation never touches them."""

    name = "gsgd"
    cfg: GSGDConfig

    def may_rescale(self, hook: str) -> bool:
        return False  # the step is deterministic given the all-reduced gradients

    def build_optimizer(self, model: nn.Module, cfg: OptimizerConfig,
                        input_shape: tuple[int, ...]) -> torch.optim.Optimizer | None:
        _plain_sgd(cfg, self.name)
        opts = {"strategy": self.cfg.strategy, "init": self.cfg.init}
        opt: torch.optim.Optimizer
        if cfg.name == "sgd":
            cls = optim_class("GSGD", self.name)
            opt = _construct(cls, self.name, model, input_shape, lr=cfg.lr,
                             momentum=cfg.momentum, **opts)
        else:
            cls = optim_class("GSpace", self.name)
            opt = _construct(cls, self.name, model, input_shape, torch.optim.Adam, lr=cfg.lr,
                             betas=cfg.betas, eps=cfg.eps, **opts)
        return opt


class WeightFixMethod(Method):
    """Weight fixing (thesis section 3): one outgoing weight per hidden unit is fixed (set
    to +-1 first by a function-preserving rescaling with ``init: rescale``, kept with
    ``keep``, overwritten with 1 with ``ones``); the configured optimizer trains the others
    (its steps are hooked so the fixed entries stay put)."""

    name = "weightfix"
    cfg: WeightFixConfig

    def __init__(self, cfg: WeightFixConfig) -> None:
        super().__init__(cfg)
        self.impl: Any = None

    def may_rescale(self, hook: str) -> bool:
        # The set-to-one rescaling happens in setup(), identically on every rank (before
        # DDP starts); the fixed entries are restored after every optimizer step.
        return False

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        cls = optim_class("WeightFixing", self.name)
        self.impl = _construct(cls, self.name, ctx.model, graph=ctx.graph,
                               strategy=self.cfg.strategy, init=self.cfg.init,
                               optimizer=ctx.optimizer)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "impl": self.impl.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.impl.load_state_dict(state["impl"])


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
