"""G-space optimizers: G-SGD (Meng et al., ICLR 2019) and the thesis' G-space wrapper
(section 2), generalised to any rescaling graph (unequal widths, biases, convolutions,
BatchNorm, residual ties).

**Coordinates.** With one fixed outgoing entry ``k(h)`` per group (the skeleton, see
:mod:`pathcond.optim._skeleton`), the downstream factor of a group is the product of the
fixed entries on its skeleton chain to the output,

    D(h) = theta_{k(h)} * D(dst(k(h))),         D(none) = 1,                             (1)

and the upstream factor is the value of its skeleton path from an input or a bias,

    U(c) = U(a) * theta_{k(a)}        if c is fed by the fixed entry of an earlier group a,
    U(c) = U(src(r)) * theta_r        if c is reached through its free root entry r,     (2)

(``U(none) = 1``). The basis-path value of a free entry ``e`` (thesis Table 2.3 with the
constant path factor of section 2.2.2) is

    v_e = U(src(e)) * theta_e * D(dst(e)),                                              (3)

the value of the path made of ``e`` and skeleton entries only: an input-to-output path with
at most one non-skeleton weight (G-SGD Lemma 9.2). ``v`` is invariant under every rescaling
(``D(h)`` scales like ``exp(-u_h)``, ``U(c)`` like ``exp(u_c)``), and the map from the free
entries to ``v`` is invertible: ``U(c) = v_{anchor(c)} * K(c)`` with ``K`` a product of fixed
entries, so ``theta_e = v_e / (U(src(e)) D(dst(e)))``. The equal-width, bias-free MLP of the
thesis gets exactly its skeleton (roots = first-layer diagonal ``w_j``, fixed entries = the
diagonals of layers 2..L), and (3) gives its ``v_j = w_j``, ``v_h = w_h``,
``v_i = w_j w_i`` (thesis Table 2.1, fixed weights 1).

**Gradients (inverse chain rule, thesis 6.2.2).** With ``rho_e = theta_e * dL/dtheta_e``,

    dL/dv_e = dL/dtheta_e / (U(src(e)) D(dst(e)))                  e not a root,
    dL/dv_r = (rho_r - sum_{e free: anchor(src(e)) = r} rho_e) / v_r    e = r a root,  (4)

the second line being the thesis' ``(dL/dw_j - psi) / w_s`` with ``psi`` summed over the
paths through ``w_j``. **Back to the weights** (weight allocation, thesis 6.2.3): after the
step ``v -> v'``, ``U'(c) = U(c) v'_{anchor(c)} / v_{anchor(c)}`` and

    theta'_e = v'_e / (U'(src(e)) D(dst(e))),                                            (5)

the fixed entries never move. Starting from ``theta`` or from any rescaling ``D theta``,
the values ``v`` and their gradients are the same, so G-space optimizers compute the same
functions at every step. With ``set_to_one=True`` the model is first rescaled so that
every fixed entry is ``+-1`` (function-preserving; G-SGD sets them to 1, which changes the
function, and a sign cannot be changed by a positive rescaling); this changes nothing in
G-space but keeps (1)-(5) well scaled.

:class:`GSGD` is plain or momentum SGD in ``v``, fused into two passes over the weights;
:class:`GSpace` runs any ``torch.optim`` optimizer on the ``v`` tensors, created once, so its
state (momentum, Adam moments) persists across steps and is invariant under rescalings.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import PathcondError
from ..graph import RescalingGraph, rescaling_graph
from ..rescale import apply_rescaling
from ._skeleton import FixedChoice, Strategy, Upstream, choose_fixed, choose_upstream
from ._structure import Structure

_MOMENTUM = "gspace_momentum_buffer"


class _Engine:
    """The basis-path coordinates (1)-(5) of one model for one skeleton."""

    def __init__(self, structure: Structure, fixed: FixedChoice, up: Upstream):
        st = structure
        self.structure = st
        self.fixed = fixed
        self.up = up
        h = st.num_groups
        self.h = h
        dev = st.device
        self.src_ext = [None if s.src is None else st.ext(s.src) for s in st.slots]
        self.dst_ext = [None if s.dst is None else st.ext(s.dst) for s in st.slots]
        groups = torch.arange(h, device=dev)
        roots = torch.arange(up.root_slot.numel(), device=dev)
        self.fixed_at: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        self.root_at: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for i in range(len(st.slots)):
            here = fixed.slot == i
            self.fixed_at.append((fixed.index[here], groups[here]) if bool(here.any()) else None)
            here = up.root_slot == i
            self.root_at.append((up.root_index[here], roots[here]) if bool(here.any()) else None)
        self.fixed_dst_ext = st.ext(fixed.dst)
        self.dist_levels = [torch.nonzero(st.distance == d).flatten()
                            for d in torch.unique(st.distance).tolist()]
        self.root_src_ext = st.ext(up.root_src)
        # fixed entries are outgoing entries of their own group: (slot reduce) src index
        self.snapshot = torch.zeros(h, dtype=torch.float64, device=dev)
        self.d_ext = torch.ones(h + 1, dtype=torch.float64, device=dev)
        self.k = torch.ones(h, dtype=torch.float64, device=dev)
        self.unit_d = True
        self.refresh()

    # ---------------------------------------------------------------- values
    def fixed_values(self) -> torch.Tensor:
        out = torch.zeros(self.h, dtype=torch.float64, device=self.structure.device)
        for s, at in zip(self.structure.slots, self.fixed_at, strict=True):
            if at is not None:
                out[at[1]] = s.param.detach().reshape(-1)[at[0]].to(torch.float64)
        return out

    def root_values(self) -> torch.Tensor:
        out = torch.zeros(self.up.root_slot.numel(), dtype=torch.float64,
                          device=self.structure.device)
        for s, at in zip(self.structure.slots, self.root_at, strict=True):
            if at is not None:
                out[at[1]] = s.param.detach().reshape(-1)[at[0]].to(torch.float64)
        return out

    def refresh(self) -> torch.Tensor:
        """Recompute the constants (1) and ``K`` from the fixed entries; returns the old
        ``D`` (extended)."""
        old = self.d_ext
        vals = self.fixed_values()
        zero = torch.nonzero(vals == 0).flatten()
        if zero.numel():
            raise PathcondError(
                f"the fixed (skeleton) weight of group "
                f"{self.structure.graph.group_name(int(zero[0]))} is zero: G-space needs "
                "non-zero skeleton weights (re-initialise, or pick another strategy)")
        d = torch.ones(self.h + 1, dtype=torch.float64, device=vals.device)
        for level in self.dist_levels:
            d[level] = vals[level] * d[self.fixed_dst_ext[level]]
        k = torch.ones(self.h, dtype=torch.float64, device=vals.device)
        parent = self.up.parent
        for gs in self.up.order:
            fed = gs[parent[gs] >= 0]
            k[fed] = k[parent[fed]] * vals[parent[fed]]
        self.snapshot = vals
        self.d_ext = d
        self.k = k
        self.unit_d = bool((d.abs() == 1).all())
        return old

    def changed(self) -> bool:
        """Whether a fixed entry moved since the last refresh (an external rescaling)."""
        return not torch.equal(self.fixed_values(), self.snapshot)

    def upstream(self, rv: torch.Tensor) -> torch.Tensor:
        """``U`` of (2), extended with ``U(none) = 1``."""
        u = torch.ones(self.h + 1, dtype=torch.float64, device=rv.device)
        anchor = self.up.anchor
        for idx in self.up.root_levels:
            a = anchor[idx]
            u[idx] = u[self.root_src_ext[a]] * rv[a] * self.k[idx]
        return u

    def root_terms(self, u_ext: torch.Tensor, rv: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """``v`` of the roots (3) and their gradients (4) from the current ``.grad``."""
        st = self.structure
        dev = st.device
        s_sum = torch.zeros(self.h + 1, dtype=torch.float64, device=dev)
        rho_root = torch.zeros_like(rv)
        for i, s in enumerate(st.slots):
            g = s.param.grad
            if g is None:
                continue
            p = s.param.detach()
            if s.src is not None:
                dense = s.src.shape[0] == 1
                dims = (0, *range(2, p.dim())) if dense else tuple(range(2, p.dim()))
                rho = (p * g).sum(dim=dims) if dims else p * g
                s_sum.index_add_(0, st.ext(s.src.reshape(-1)), rho.reshape(-1).to(torch.float64))
                at = self.fixed_at[i]
                if at is not None:
                    fixed_rho = p.reshape(-1)[at[0]] * g.reshape(-1)[at[0]]
                    s_sum.index_add_(0, at[1], fixed_rho.to(torch.float64), alpha=-1.0)
            at = self.root_at[i]
            if at is not None:
                rho_root[at[1]] = (p.reshape(-1)[at[0]] * g.reshape(-1)[at[0]]).to(torch.float64)
        psi = torch.zeros_like(rv).index_add_(0, self.up.anchor, s_sum[: self.h])
        v_root = u_ext[self.root_src_ext] * rv * self.d_ext[self.up.root_group]
        return v_root, (rho_root - psi) / v_root

    def check_roots(self, rv: torch.Tensor) -> None:
        zero = torch.nonzero(rv == 0).flatten()
        if zero.numel():
            g = int(self.up.root_group[zero[0]])
            raise PathcondError(
                f"the root weight of group {self.structure.graph.group_name(g)} is zero: its "
                "basis-path value is 0 and G-space cannot map back to the weights")

    # ---------------------------------------------------------------- export
    def export(self) -> dict[str, Any]:
        names = [s.name for s in self.structure.slots]
        return {"slots": names,
                "fixed_slot": self.fixed.slot.cpu(), "fixed_index": self.fixed.index.cpu(),
                "root_slot": self.up.root_slot.cpu(), "root_index": self.up.root_index.cpu()}


def _build(model: nn.Module, input_shape: Sequence[int] | None, graph: RescalingGraph | None,
           strategy: Strategy, set_to_one: bool, optimizer: torch.optim.Optimizer | None = None
           ) -> tuple[RescalingGraph, Structure, FixedChoice, _Engine]:
    if graph is None:
        if input_shape is None:
            raise TypeError("give input_shape (one sample's shape) or graph=")
        graph = rescaling_graph(model, input_shape)
    structure = Structure(model, graph)
    fixed = choose_fixed(structure, strategy)
    if set_to_one and graph.num_groups:
        apply_rescaling(model, graph, fixed.log_scales, optimizer=optimizer)
    up = choose_upstream(structure, fixed, largest=strategy == "largest")
    return graph, structure, fixed, _Engine(structure, fixed, up)


def _restore_choice(engine: _Engine, saved: dict[str, Any]) -> _Engine:
    """The engine for a saved skeleton (value-dependent strategies may choose differently
    on the loaded weights)."""
    st = engine.structure
    names = [s.name for s in st.slots]
    if list(saved["slots"]) != names:
        raise ValueError("the saved G-space skeleton belongs to another model")
    slot = saved["fixed_slot"].to(st.device)
    index = saved["fixed_index"].to(st.device)
    if torch.equal(slot, engine.fixed.slot) and torch.equal(index, engine.fixed.index):
        engine_new = engine
    else:
        dst = torch.empty_like(slot)
        for i, s in enumerate(st.slots):
            here = slot == i
            if bool(here.any()):
                assert s.dst is not None or s.src is not None
                rows = torch.div(index[here], s.param[0].numel(), rounding_mode="floor")
                dst[here] = -1 if s.dst is None else s.dst.reshape(-1)[rows]
        zeros = torch.zeros(st.num_groups, dtype=torch.float64, device=st.device)
        fixed = FixedChoice(slot, index, dst, zeros, torch.zeros_like(slot, dtype=torch.bool))
        engine_new = _Engine(st, fixed, choose_upstream(st, fixed))
    if not (torch.equal(saved["root_slot"].to(st.device), engine_new.up.root_slot)
            and torch.equal(saved["root_index"].to(st.device), engine_new.up.root_index)):
        warnings.warn("G-space roots chosen on the loaded weights differ from the saved ones; "
                      "the optimizer state of those coordinates is reused as is",
                      RuntimeWarning, stacklevel=3)
    return engine_new


class GSpace(torch.optim.Optimizer):
    """Run any ``torch.optim`` optimizer on the basis-path values of ``model`` (thesis 2.2.4).

    ``optimizer`` (a class, e.g. ``torch.optim.Adam``) is built once, with ``options``, on
    tensors holding the values ``v`` (3); at each :meth:`step` they are refreshed from the
    weights, given the gradients (4), the inner optimizer steps, and the weights are set by
    (5). ``param_groups`` and ``state`` are the inner optimizer's (LR schedulers work on
    them); ``zero_grad`` clears the model's gradients. Parameters the rescaling never
    touches (a bias before a BatchNorm) are their own coordinates.

    Args:
        model: the network (any model :func:`pathcond.rescaling_graph` supports).
        input_shape: one sample's shape (or give ``graph=``).
        optimizer: the inner optimizer class.
        strategy: how skeleton weights are chosen (:mod:`pathcond.optim._skeleton`).
        set_to_one: first rescale the model so that every skeleton weight is ``+-1``
            (function-preserving).
        graph: a prebuilt rescaling graph of ``model``.
        **options: passed to ``optimizer`` (``lr=...``, ``betas=...``).

    Raises:
        UnsupportedModelError: a group has no valid skeleton weight or no basis path
            (no skeleton exists for the structure).
        PathcondError: a skeleton or root weight is zero.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int] | None = None,
                 optimizer: type[torch.optim.Optimizer] = torch.optim.SGD, *,
                 strategy: Strategy = "skeleton", set_to_one: bool = True,
                 graph: RescalingGraph | None = None, **options: Any):
        self.model = model
        self.graph, self.structure, self.fixed_choice, self.engine = _build(
            model, input_shape, graph, strategy, set_to_one)
        self.strategy = strategy
        self.set_to_one = set_to_one
        st = self.structure
        self._values: list[torch.Tensor | None] = []
        coordinates: list[torch.Tensor] = []
        for s in st.slots:
            if s.variant:
                v = torch.zeros_like(s.param.detach()).requires_grad_(True)
                self._values.append(v)
                coordinates.append(v)
            else:
                self._values.append(None)
                coordinates.append(s.param)
        coordinates.extend(st.others)
        self._model_params = [s.param for s in st.slots] + list(st.others)
        self.inner = optimizer(coordinates, **options)
        super().__init__(coordinates, dict(self.inner.defaults))
        self.param_groups = self.inner.param_groups
        self.state = self.inner.state

    @torch.no_grad()
    def _sync(self) -> None:
        if self.engine.changed():
            self.engine.refresh()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step of the inner optimizer in G-space (module docstring (3)-(5))."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        e = self.engine
        self._sync()
        rv = e.root_values()
        e.check_roots(rv)
        u = e.upstream(rv)
        v_root, gv_root = e.root_terms(u, rv)
        d = e.d_ext
        for i, s in enumerate(self.structure.slots):
            v = self._values[i]
            if v is None:
                continue
            p = s.param
            src, dst = e.src_ext[i], e.dst_ext[i]
            v.copy_(p)
            gv = torch.zeros_like(v) if p.grad is None else p.grad.detach().clone()
            if src is not None:
                col = u[src].to(p.dtype)
                v.mul_(col)
                gv.div_(col)
            if dst is not None:
                row = d[dst].to(p.dtype)
                v.mul_(row)
                gv.div_(row)
            at = e.fixed_at[i]
            if at is not None:
                gv.view(-1)[at[0]] = 0
            at = e.root_at[i]
            if at is not None:
                gv.view(-1)[at[0]] = gv_root[at[1]].to(p.dtype)
            v.grad = gv
        self.inner.step()
        new_root = torch.zeros_like(v_root)
        for i, at in enumerate(e.root_at):
            v = self._values[i]
            if at is not None and v is not None:
                new_root[at[1]] = v.detach().reshape(-1)[at[0]].to(torch.float64)
        u_new = u.clone()
        u_new[: e.h] = u[: e.h] * (new_root / v_root)[e.up.anchor]
        for i, s in enumerate(self.structure.slots):
            v = self._values[i]
            if v is None:
                continue
            p = s.param
            src, dst = e.src_ext[i], e.dst_ext[i]
            p.copy_(v)
            if src is not None:
                p.div_(u_new[src].to(p.dtype))
            if dst is not None:
                p.div_(d[dst].to(p.dtype))
            at = e.fixed_at[i]
            if at is not None:
                p.view(-1)[at[0]] = e.snapshot[at[1]].to(p.dtype)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of the model's parameters."""
        for p in self._model_params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_()
                p.grad.zero_()

    def values(self) -> dict[str, torch.Tensor]:
        """The basis-path values (3) of the current weights, keyed by parameter name."""
        e = self.engine
        with torch.no_grad():
            self._sync()
            u = e.upstream(e.root_values())
            out = {}
            for i, s in enumerate(self.structure.slots):
                v = s.param.detach().clone()
                if e.src_ext[i] is not None:
                    v = v * u[e.src_ext[i]].to(v.dtype)
                if e.dst_ext[i] is not None:
                    v = v * e.d_ext[e.dst_ext[i]].to(v.dtype)
                out[s.name] = v
        return out

    def state_dict(self) -> dict[str, Any]:
        sd = self.inner.state_dict()
        sd["gspace"] = self.engine.export()
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        saved = sd.pop("gspace", None)
        if saved is not None:
            self.engine = _restore_choice(self.engine, saved)
        self.inner.load_state_dict(sd)
        self.param_groups = self.inner.param_groups
        self.state = self.inner.state
        with torch.no_grad():
            self.engine.refresh()


class GSGD(torch.optim.Optimizer):
    """G-SGD: SGD (with optional momentum) on the basis-path values (Meng et al. 2019).

    Equivalent to ``GSpace(model, shape, torch.optim.SGD, lr=lr, momentum=momentum)`` but
    fused: per step one pass over the weights for ``rho = theta * g`` (eq. (4)) and one or
    two in-place updates (eq. (5)), no copy of the parameters. The momentum buffer lives in
    G-space (invariant under rescalings), stored as ``D(dst) * buffer`` under the state key
    ``'gspace_momentum_buffer'``. If the model is rescaled from outside (e.g. by
    :func:`pathcond.apply_rescaling`), the next step notices the moved skeleton weights and
    recomputes its constants.

    Args:
        model, input_shape, strategy, set_to_one, graph: as :class:`GSpace`.
        lr: learning rate in G-space.
        momentum: heavy-ball momentum in G-space (``buf = momentum * buf + dL/dv``).
        params: parameter groups of ``model`` (default: all its parameters, one group);
            a parameter in no group keeps ``lr = 0`` in G-space.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int] | None = None, *,
                 lr: float, momentum: float = 0.0, strategy: Strategy = "skeleton",
                 set_to_one: bool = True, params: Iterable[Any] | None = None,
                 graph: RescalingGraph | None = None):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        super().__init__(model.parameters() if params is None else params,
                         {"lr": lr, "momentum": momentum})
        self.model = model
        self.graph, self.structure, self.fixed_choice, self.engine = _build(
            model, input_shape, graph, strategy, set_to_one)
        self.strategy = strategy
        self.set_to_one = set_to_one
        slot_ids = {id(s.param) for s in self.structure.slots}
        self._extra = [p for g in self.param_groups for p in g["params"] if id(p) not in slot_ids]

    def _group_of(self) -> dict[int, dict[str, Any]]:
        return {id(p): g for g in self.param_groups for p in g["params"]}

    @torch.no_grad()
    def _sync(self) -> None:
        e = self.engine
        if not e.changed():
            return
        old = e.refresh()
        for i, s in enumerate(self.structure.slots):  # stored buffers are D(dst) * buffer
            buf = self.state.get(s.param, {}).get(_MOMENTUM)
            if buf is not None and e.dst_ext[i] is not None:
                dst = e.dst_ext[i]
                assert dst is not None
                buf.mul_((e.d_ext[dst] / old[dst]).to(buf.dtype))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One G-SGD step (module docstring (3)-(5))."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        e = self.engine
        st = self.structure
        self._sync()
        groups = self._group_of()
        rv = e.root_values()
        e.check_roots(rv)
        u = e.upstream(rv)
        v_root, gv_root = e.root_terms(u, rv)
        d = e.d_ext
        # per-root learning rate and momentum, old root buffers
        n_root = rv.numel()
        lr_r = torch.zeros(n_root, dtype=torch.float64, device=rv.device)
        mom_r = torch.zeros_like(lr_r)
        buf_r = torch.zeros_like(lr_r)
        for i, s in enumerate(st.slots):
            at = e.root_at[i]
            g = groups.get(id(s.param))
            if at is None or g is None:
                continue
            lr_r[at[1]] = g["lr"]
            mom_r[at[1]] = g["momentum"]
            buf = self.state.get(s.param, {}).get(_MOMENTUM)
            if buf is not None:
                buf_r[at[1]] = buf.reshape(-1)[at[0]].to(torch.float64)
        d_root = d[e.up.root_group]
        b_root = mom_r * buf_r / d_root + gv_root
        new_root = v_root - lr_r * b_root
        ratio = new_root / v_root
        u_new = u.clone()
        u_new[: e.h] = u[: e.h] * ratio[e.up.anchor]
        col_factor = u / u_new  # (5): U / U' per source group
        for i, s in enumerate(st.slots):
            g = groups.get(id(s.param))
            p = s.param
            src, dst = e.src_ext[i], e.dst_ext[i]
            lr = 0.0 if g is None else float(g["lr"])
            momentum = 0.0 if g is None else float(g["momentum"])
            us = None if src is None else u[src]
            inv_d2 = None if dst is None or e.unit_d else (1.0 / d[dst].square()).to(p.dtype)
            direction = p.grad
            coef: torch.Tensor | None = None
            if momentum:
                state = self.state[p]
                buf = state.get(_MOMENTUM)
                if buf is None:
                    buf = state[_MOMENTUM] = torch.zeros_like(p.detach())
                else:
                    buf.mul_(momentum)
                if direction is not None:
                    if us is None:
                        buf.add_(direction)
                    else:
                        buf.addcmul_(direction, (1.0 / us).to(p.dtype))
                direction = buf
                coef = None if us is None else 1.0 / us
            elif direction is not None:
                coef = None if us is None else 1.0 / us.square()
            if src is not None:
                cf = col_factor[src]
                p.mul_(cf.to(p.dtype))
                coef = cf if coef is None else cf * coef
            if direction is not None and lr:
                if inv_d2 is not None:
                    direction = direction * inv_d2
                if coef is None:
                    p.add_(direction, alpha=-lr)
                else:
                    p.addcmul_(direction, coef.to(p.dtype), value=-lr)
            at = e.root_at[i]
            if at is not None:
                vals = new_root[at[1]] / (u_new[e.root_src_ext[at[1]]] * d_root[at[1]])
                p.view(-1)[at[0]] = vals.to(p.dtype)
                buf = self.state.get(p, {}).get(_MOMENTUM)
                if buf is not None:
                    buf.view(-1)[at[0]] = (d_root[at[1]] * b_root[at[1]]).to(buf.dtype)
            at = e.fixed_at[i]
            if at is not None:
                p.view(-1)[at[0]] = e.snapshot[at[1]].to(p.dtype)
                buf = self.state.get(p, {}).get(_MOMENTUM)
                if buf is not None:
                    buf.view(-1)[at[0]] = 0
        for p in self._extra:  # parameters outside the graph: plain SGD
            g = groups[id(p)]
            if p.grad is None:
                continue
            direction = p.grad
            if g["momentum"]:
                state = self.state[p]
                buf = state.get(_MOMENTUM)
                if buf is None:
                    buf = state[_MOMENTUM] = direction.detach().clone()
                else:
                    buf.mul_(g["momentum"]).add_(direction)
                direction = buf
            p.add_(direction, alpha=-g["lr"])
        return loss

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["gspace"] = self.engine.export()
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        saved = sd.pop("gspace", None)
        if saved is not None:
            self.engine = _restore_choice(self.engine, saved)
        super().load_state_dict(sd)
        with torch.no_grad():
            self.engine.refresh()
