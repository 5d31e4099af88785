"""The weight-fixing method (thesis section 3) on the rescaling graph.

Fixing one outgoing weight ``k(h)`` of every hidden group ``h`` removes the rescaling
symmetry: under ``theta' = exp(B u) theta`` the fixed entry is multiplied by
``exp(u_{dst(k(h))} - u_h)``, so keeping every fixed entry constant forces ``u = 0`` as long
as the chains ``h -> dst(k(h)) -> ...`` end at units that are never rescaled (which the
choice guarantees, :mod:`pathcond.optim._skeleton`). The ``G - H`` other parameters are
trained by any optimizer; the fixed entries get zero gradients (a post-accumulate-grad hook
on each parameter, and a pre-step hook on attached optimizers) and are written back after
every step of an attached optimizer (weight decay or a stale momentum would move them).

**Set to one** (thesis 3.0.4 and 6.3.1). First the model is rescaled, from the output
backwards, so that every fixed entry has magnitude 1:
``u_h = u_{dst(k(h))} + log |theta_{k(h)}|`` gives ``|exp(B u) theta|_{k(h)} = 1``. This is a
rescaling, so the function is unchanged. A positive rescaling cannot change a sign: the
fixed entries become ``+1`` or ``-1`` (the thesis' ``D = |diag(D W)|`` keeps signs the same
way). A zero fixed entry (only if a group has no non-zero candidate) cannot be set to one
and is reported. With ``init="rescale"`` (the default) and a structural strategy the result
is a canonical form of the rescaling orbit: starting from ``theta`` or from any ``D theta``,
training computes the same functions. ``init="keep"`` fixes the entries at the values they
have; ``init="ones"`` *overwrites* them with 1, the thesis' "Fixed SGD" (its code sets the
fixed weights to 1): this changes the function.

Strategies: ``"skeleton"`` (the thesis' diagonal choice, 3.0.3), ``"largest"`` and
``"hungarian"`` (the thesis' reparametrisation-aware assignment, 6.3.1); see
:mod:`pathcond.optim._skeleton`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..graph import RescalingGraph, resolve_graph
from ..rescale import apply_rescaling
from ._checks import check_attached_optimizer, check_model
from ._skeleton import Init, Strategy, choose_fixed, resolve_init
from ._structure import Structure


@dataclass(frozen=True)
class WeightFixingReport:
    """What :class:`WeightFixing` did: ``init`` the initialisation, ``log_scales`` the
    set-to-one rescaling applied (zeros unless ``init="rescale"``), ``zero_groups`` the groups
    whose fixed entry is zero."""

    strategy: str
    init: str
    num_fixed: int
    num_free: int
    log_scales: torch.Tensor
    zero_groups: tuple[str, ...]

    @property
    def set_to_one(self) -> bool:
        """Deprecated: ``init == "rescale"``."""
        return self.init == "rescale"

    @property
    def max_log_scale(self) -> float:
        """Largest ``|u_h|`` of the set-to-one rescaling."""
        return float(self.log_scales.abs().max()) if self.log_scales.numel() else 0.0

    def __str__(self) -> str:
        lines = [f"weight fixing ({self.strategy}): {self.num_fixed} fixed entries, "
                 f"{self.num_free:,} free parameters"]
        if self.init == "rescale":
            lines.append(f"  set to +-1 by a rescaling with max |log-scale| "
                         f"{self.max_log_scale:.4g}")
        elif self.init == "ones":
            lines.append("  overwritten with 1 (the function changed)")
        if self.zero_groups:
            lines.append(f"  {len(self.zero_groups)} group(s) with a zero fixed entry, e.g. "
                         f"{self.zero_groups[0]}")
        return "\n".join(lines)


class WeightFixing:
    """Fix one outgoing weight per hidden unit of ``model`` (thesis section 3).

    Fixed entries are addressed by row-major flat indices (``torch.take`` / ``Tensor.put_``),
    so any memory layout (e.g. channels-last) works.

    Args:
        model: the network (any model :func:`pathcond.rescaling_graph` supports).
        input_shape: one sample's shape (or give ``graph=``).
        strategy: ``"skeleton"``, ``"hungarian"`` or ``"largest"``.
        init: what is done to the fixed entries first (once, by the constructor):
            ``"rescale"`` (default) rescales the model so that every fixed entry is ``+-1``
            (function-preserving); ``"keep"`` fixes them as they are; ``"ones"`` overwrites
            them with 1, the thesis' Fixed SGD: **this changes the function**.
        set_to_one: deprecated: ``True`` is ``init="rescale"``, ``False`` ``init="keep"``.
        optimizer: attach to this optimizer (see :meth:`attach`); its state is transported
            by the set-to-one rescaling.
        graph: a prebuilt rescaling graph of ``model``.

    The model is modified in place (initialisation; gradient hooks). Use any optimizer
    on ``model.parameters()``; :meth:`attach` it so that fixed entries stay put whatever the
    optimizer does, or call :meth:`restore` after each step. :meth:`load_state_dict`
    reinstalls the saved fixed entries and values (the initialisation is not repeated).
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int] | None = None, *,
                 strategy: Strategy = "skeleton", init: Init = "rescale",
                 set_to_one: bool | None = None,
                 optimizer: torch.optim.Optimizer | None = None,
                 graph: RescalingGraph | None = None):
        check_model(type(self).__name__, model)
        if optimizer is not None:
            check_attached_optimizer(type(self).__name__, model, optimizer)
        self.init: Init = resolve_init(init, set_to_one, type(self).__name__)
        graph = resolve_graph(model, input_shape, graph)
        self.model = model
        self.graph = graph
        self.strategy = strategy
        self.structure = Structure(model, graph)
        choice = choose_fixed(self.structure, strategy)
        h = graph.num_groups
        log_scales = torch.zeros(h, dtype=torch.float64)
        if self.init == "rescale" and h:
            log_scales = choice.log_scales.detach().cpu()
            apply_rescaling(model, graph, choice.log_scales, optimizer=optimizer)
        self._fixed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        with torch.no_grad():
            for i, s in enumerate(self.structure.slots):
                here = choice.slot == i
                if not bool(here.any()):
                    continue
                index = choice.index[here]
                values = torch.take(s.param.detach(), index)
                if self.init == "rescale":
                    values = torch.sign(values)  # exactly +-1 (0 stays 0)
                    s.param.put_(index, values)
                elif self.init == "ones":
                    values = torch.ones_like(values)
                    s.param.put_(index, values)
                self._fixed[s.name] = (index, values)
        self._params = dict(model.named_parameters())
        self._param_hooks: list[Any] = []
        self._opt_hooks: list[Any] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self._install_param_hooks()
        zero = [] if self.init == "ones" else torch.nonzero(choice.zero).flatten().tolist()
        total = sum(s.param.numel() for s in self.structure.slots)
        self.report = WeightFixingReport(
            strategy=strategy, init=self.init, num_fixed=h, num_free=total - h,
            log_scales=log_scales, zero_groups=tuple(graph.group_name(g) for g in zero))
        if optimizer is not None:
            self.attach(optimizer)

    # ------------------------------------------------------------------ hooks
    def _install_param_hooks(self) -> None:
        for hook in self._param_hooks:
            hook.remove()
        self._param_hooks = []
        for name, (index, _) in self._fixed.items():
            param = self._params[name]
            if not param.requires_grad:  # frozen: never has a gradient to zero
                continue

            def zero_fixed(p: torch.Tensor, index: torch.Tensor = index) -> None:
                if p.grad is not None:
                    p.grad.put_(index, torch.zeros_like(index, dtype=p.grad.dtype))

            self._param_hooks.append(param.register_post_accumulate_grad_hook(zero_fixed))

    @torch.no_grad()
    def zero_fixed_grads(self) -> None:
        """Zero the gradients of the fixed entries (done automatically after backward)."""
        for name, (index, _) in self._fixed.items():
            grad = self._params[name].grad
            if grad is not None:
                grad.put_(index, torch.zeros_like(index, dtype=grad.dtype))

    @torch.no_grad()
    def restore(self) -> None:
        """Write the fixed values back into the model."""
        for name, (index, values) in self._fixed.items():
            self._params[name].put_(index, values)

    def step(self) -> None:
        """Call after each step of an optimizer that is not attached: writes the fixed
        values back (same as :meth:`restore`)."""
        self.restore()

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero the fixed entries' gradients before every step of ``optimizer`` and restore
        their values after it."""
        check_attached_optimizer(type(self).__name__, self.model, optimizer)
        for hook in self._opt_hooks:
            hook.remove()
        self.optimizer = optimizer
        self._opt_hooks = [
            optimizer.register_step_pre_hook(lambda opt, args, kwargs: self.zero_fixed_grads()),
            optimizer.register_step_post_hook(lambda opt, args, kwargs: self.restore()),
        ]

    def detach(self) -> None:
        """Remove every hook: the fixed entries become ordinary parameters again."""
        for hook in self._param_hooks + self._opt_hooks:
            hook.remove()
        self._param_hooks, self._opt_hooks = [], []
        self.optimizer = None

    # ------------------------------------------------------------------ queries
    def fixed_entries(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per parameter name: flat indices of its fixed entries and their values."""
        return {n: (i.clone(), v.clone()) for n, (i, v) in self._fixed.items()}

    def masks(self) -> dict[str, torch.Tensor]:
        """Per parameter name: boolean mask, ``True`` on the free (trainable) entries."""
        out = {}
        for name, p in self._params.items():
            mask = torch.ones_like(p, dtype=torch.bool)
            if name in self._fixed:
                mask.view(-1)[self._fixed[name][0]] = False
            out[name] = mask
        return out

    @property
    def set_to_one(self) -> bool:
        """Deprecated: ``init == "rescale"``."""
        return self.init == "rescale"

    def state_dict(self) -> dict[str, Any]:
        """The fixed entries (index and value per parameter) and options."""
        return {"strategy": self.strategy, "init": self.init, "set_to_one": self.set_to_one,
                "fixed": {n: {"index": i.cpu(), "value": v.cpu()}
                          for n, (i, v) in self._fixed.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Use the saved fixed entries (no new reparametrisation) and write their values."""
        fixed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, entry in state["fixed"].items():
            if name not in self._params:
                raise ValueError(f"saved weight fixing refers to unknown parameter {name!r}")
            p = self._params[name]
            fixed[name] = (entry["index"].to(p.device),
                           entry["value"].to(device=p.device, dtype=p.dtype))
        self._fixed = fixed
        self.strategy = state.get("strategy", self.strategy)
        legacy = state.get("set_to_one")
        self.init = state.get("init") or (self.init if legacy is None
                                          else "rescale" if legacy else "keep")
        self._install_param_hooks()
        self.restore()

    def __repr__(self) -> str:
        return (f"WeightFixing(strategy={self.strategy!r}, init={self.init!r}, "
                f"{self.report.num_fixed} fixed entries)")
