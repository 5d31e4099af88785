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
functions at every step.

**Initialisation** (``init=``, applied once, by the constructor). ``"rescale"`` (default)
first rescales the model so that every fixed entry is ``+-1``: function-preserving, it
changes nothing in G-space but keeps (1)-(5) well scaled. ``"keep"`` leaves the weights as
they are (same trajectory of functions as ``"rescale"``). ``"ones"`` is the G-SGD paper's
initialisation: every skeleton weight, the fixed entries *and the roots*, is overwritten with
1, so ``U = D = 1`` and ``v_e = theta_e``; **this changes the function**. It matters: a free
weight moves by ``-lr * dL/dtheta_e / (U(src) D(dst))^2`` in a G-space SGD step, and from a
standard (Kaiming) initialisation ``U D = v_e / theta_e`` is a product of several weights of
~``1/sqrt(fan_in)``: G-SGD's steps are orders of magnitude larger than SGD's at the same
``lr`` (MNIST 784-64x4-10: ~1e10; lr 0.1 reaches 82% from ``"rescale"``, 97.7% from
``"ones"``; docs/methods.md).

:class:`GSGD` is plain or momentum SGD in ``v``, fused into two passes over the weights;
:class:`GSpace` runs any ``torch.optim`` optimizer on the ``v`` tensors, created once, so its
state (momentum, Adam moments) persists across steps and is invariant under rescalings.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import PathcondError
from ..graph import RescalingGraph, resolve_graph
from ..rescale import apply_rescaling
from ._checks import ModelParamGroups, check_model, check_trainable
from ._sgd import check_lr_momentum, closure_loss, heavy_ball
from ._skeleton import (
    FixedChoice,
    Init,
    Strategy,
    Upstream,
    choose_fixed,
    choose_upstream,
    resolve_init,
    write_entries,
)
from ._structure import Structure, constant_dims

_MOMENTUM = "gspace_momentum_buffer"


class _Engine:
    """The basis-path coordinates (1)-(5) of one model for one skeleton.

    The *selected* entries are the fixed entries (one per group, in group order) followed by
    the roots; they are gathered from, and written to, all parameters at once. Per-group
    vectors are expanded to every weight's columns with one gather for all slots.
    """

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
        n_root = up.root_slot.numel()
        self.n_root = n_root
        groups = torch.arange(h, device=dev)
        roots = torch.arange(n_root, device=dev) + h
        self.sel_slots: list[int] = []
        self.sel_flat: list[torch.Tensor] = []  # row-major flat indices (torch.take/put_)
        self.sel_sizes: list[int] = []
        order = []
        for i in range(len(st.slots)):
            f_here, r_here = fixed.slot == i, up.root_slot == i
            if not bool(f_here.any() or r_here.any()):
                continue
            flat = torch.cat([fixed.index[f_here], up.root_index[r_here]])
            self.sel_slots.append(i)
            self.sel_flat.append(flat)
            self.sel_sizes.append(int(flat.numel()))
            order.append(torch.cat([groups[f_here], roots[r_here]]))
        self.sel_order = torch.cat(order) if order else torch.zeros(0, dtype=torch.int64,
                                                                    device=dev)
        self.sel_inverse = torch.argsort(self.sel_order)
        # columns of every weight slot, concatenated
        self.col_slots = [i for i, s in enumerate(st.slots) if s.src is not None]
        col_src = [st.ext(s.src) for s in st.slots if s.src is not None]
        self.col_index = torch.cat([c.reshape(-1) for c in col_src]) if col_src \
            else torch.zeros(0, dtype=torch.int64, device=dev)
        self.col_sizes = [int(c.numel()) for c in col_src]
        self.col_shapes = [tuple(c.shape) for c in col_src]
        self.col_dims = []
        for i in self.col_slots:
            src = st.slots[i].src
            assert src is not None
            self.col_dims.append(constant_dims(src))
        self.root_slot = up.root_slot
        self.fixed_dst_ext = st.ext(fixed.dst)
        self.dist_levels = [torch.nonzero(st.distance == d).flatten()
                            for d in torch.unique(st.distance).tolist()]
        self.root_src_ext = st.ext(up.root_src)
        self.snapshot = torch.zeros(h, dtype=torch.float64, device=dev)
        self.d_ext = torch.ones(h + 1, dtype=torch.float64, device=dev)
        self.k = torch.ones(h, dtype=torch.float64, device=dev)
        self.unit_d = True
        self.refresh()

    # ---------------------------------------------------------------- gathers
    def gather(self, tensors: list[torch.Tensor | None]) -> torch.Tensor:
        """The selected entries (fixed, then roots) of per-slot tensors, float64; ``None``
        reads as zeros."""
        dev = self.structure.device
        parts = []
        for i, flat, size in zip(self.sel_slots, self.sel_flat, self.sel_sizes, strict=True):
            t = tensors[i]
            parts.append(torch.zeros(size, dtype=torch.float64, device=dev) if t is None
                         else torch.take(t.detach(), flat))
        if not parts:
            return torch.zeros(0, dtype=torch.float64, device=dev)
        if len({p.dtype for p in parts}) > 1:
            parts = [p.to(torch.float64) for p in parts]
        return torch.cat(parts).to(torch.float64)[self.sel_inverse]

    def scatter(self, values: torch.Tensor, tensors: list[torch.Tensor | None]) -> None:
        """Write the selected entries (fixed, then roots) into per-slot tensors."""
        if not self.sel_slots:
            return
        present = [t for t in tensors if t is not None]
        if present:
            values = values.to(present[0].dtype)
        chunks = values[self.sel_order].split(self.sel_sizes)
        for i, flat, chunk in zip(self.sel_slots, self.sel_flat, chunks, strict=True):
            t = tensors[i]
            if t is not None:
                t.put_(flat, chunk.to(t.dtype))

    def columns(self, vector_ext: torch.Tensor, dtype: torch.dtype
                ) -> list[torch.Tensor | None]:
        """Per slot, ``vector_ext[src]`` shaped to broadcast against the parameter."""
        out: list[torch.Tensor | None] = [None] * len(self.structure.slots)
        if not self.col_slots:
            return out
        parts = vector_ext[self.col_index].to(dtype).split(self.col_sizes)
        for i, part, shape in zip(self.col_slots, parts, self.col_shapes, strict=True):
            out[i] = part.reshape(shape)
        return out

    def rows(self, vector_ext: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor | None]:
        """Per slot, ``vector_ext[dst]`` shaped to broadcast against the parameter."""
        return [None if d is None else vector_ext[d].to(dtype) for d in self.dst_ext]

    # ---------------------------------------------------------------- values
    def fixed_values(self) -> torch.Tensor:
        params: list[torch.Tensor | None] = [s.param for s in self.structure.slots]
        return self.gather(params)[: self.h]

    def root_values(self) -> torch.Tensor:
        params: list[torch.Tensor | None] = [s.param for s in self.structure.slots]
        return self.gather(params)[self.h:]

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
        self.levels = []  # per root level: groups, their anchors, the anchors' sources, K
        for idx in self.up.root_levels:
            a = self.up.anchor[idx]
            self.levels.append((idx, a, self.root_src_ext[a], k[idx]))
        self.unit_d = bool((d.abs() == 1).all())
        return old

    def upstream(self, rv: torch.Tensor) -> torch.Tensor:
        """``U`` of (2), extended with ``U(none) = 1``."""
        u = torch.ones(self.h + 1, dtype=torch.float64, device=rv.device)
        for idx, a, src, k in self.levels:
            u[idx] = u[src] * rv[a] * k
        return u

    def root_terms(self, u_ext: torch.Tensor, rv: torch.Tensor, rho_sel: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """``v`` of the roots (3) and their gradients (4); ``rho_sel``: ``theta * g`` of the
        selected entries."""
        st = self.structure
        parts = []
        for i, dims in zip(self.col_slots, self.col_dims, strict=True):
            p = st.slots[i].param
            if p.grad is None:
                parts.append(torch.zeros(self.col_sizes[self.col_slots.index(i)],
                                         dtype=p.dtype, device=p.device))
            else:
                parts.append(_column_dot(p.detach(), p.grad, dims).reshape(-1))
        s_sum = torch.zeros(self.h + 1, dtype=torch.float64, device=st.device)
        if parts:
            s_sum.index_add_(0, self.col_index, torch.cat(parts).to(torch.float64))
        s_sum[: self.h] -= rho_sel[: self.h]  # the fixed entry of h is outgoing from h
        psi = torch.zeros_like(rv).index_add_(0, self.up.anchor, s_sum[: self.h])
        v_root = u_ext[self.root_src_ext] * rv * self.d_ext[self.up.root_group]
        return v_root, (rho_sel[self.h:] - psi) / v_root

    def check_roots(self, rv: torch.Tensor) -> None:
        if bool(rv.all()):
            return
        zero = torch.nonzero(rv == 0).flatten()
        if zero.numel():
            g = int(self.up.root_group[zero[0]])
            raise PathcondError(
                f"the root weight of group {self.structure.graph.group_name(g)} is zero: its "
                "basis-path value is 0 and G-space cannot map back to the weights")

    # ---------------------------------------------------------------- export
    def export(self) -> dict[str, Any]:
        names = [s.name for s in self.structure.slots]
        return {"slots": names, "shapes": [list(s.param.shape) for s in self.structure.slots],
                "fixed_slot": self.fixed.slot.cpu(), "fixed_index": self.fixed.index.cpu(),
                "root_slot": self.up.root_slot.cpu(), "root_index": self.up.root_index.cpu()}


def _column_dot(a: torch.Tensor, b: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``(a * b).sum(dims)`` without a full-size temporary where possible."""
    if not dims:
        return a * b
    if dims[0] == 0:  # dense: columns, then the kernel positions
        out = torch.linalg.vecdot(a, b, dim=0)
        return out.sum(dim=tuple(range(1, out.dim()))) if out.dim() > 1 else out
    return torch.linalg.vecdot(a.flatten(2), b.flatten(2), dim=-1)


def _scale(t: torch.Tensor, factors: Iterable[torch.Tensor | None], *,
           divide: bool = False) -> torch.Tensor:
    """``t`` multiplied (or divided) in place by each factor that is not ``None``."""
    for f in factors:
        if f is not None:
            t.div_(f) if divide else t.mul_(f)
    return t


@dataclass(frozen=True)
class _Prepared:
    """What every G-space step needs at the current weights and gradients."""

    u: torch.Tensor  # U of (2), extended
    v_root: torch.Tensor  # v of the roots (3)
    gv_root: torch.Tensor  # dL/dv of the roots (4)
    old_d: torch.Tensor | None  # D before a refresh, if the skeleton weights had moved


def _prepare(e: _Engine) -> _Prepared:
    st = e.structure
    params: list[torch.Tensor | None] = [s.param for s in st.slots]
    p_sel = e.gather(params)
    old_d = None
    if not torch.equal(p_sel[: e.h], e.snapshot):  # rescaled from outside: new constants
        old_d = e.refresh()
    rv = p_sel[e.h:]
    e.check_roots(rv)
    g_sel = e.gather([s.param.grad for s in st.slots])
    u = e.upstream(rv)
    v_root, gv_root = e.root_terms(u, rv, p_sel * g_sel)
    return _Prepared(u, v_root, gv_root, old_d)


@dataclass(frozen=True)
class _Built:
    graph: RescalingGraph
    structure: Structure
    fixed: FixedChoice
    engine: _Engine
    changed: bool  # init="ones" overwrote a weight that was not 1


def _build(model: nn.Module, input_shape: Sequence[int] | None, graph: RescalingGraph | None,
           strategy: Strategy, init: Init, owner: str) -> _Built:
    graph = resolve_graph(model, input_shape, graph)
    structure = Structure(model, graph)
    check_trainable(owner, ((s.name, s.param) for s in structure.slots))
    fixed = choose_fixed(structure, strategy)
    if init == "rescale" and graph.num_groups:
        apply_rescaling(model, graph, fixed.log_scales)
    up = choose_upstream(structure, fixed, largest=strategy == "largest")
    changed = False
    if init == "ones" and graph.num_groups:  # every skeleton weight := 1 (G-SGD paper)
        changed = write_entries(structure, torch.cat([fixed.slot, up.root_slot]),
                                torch.cat([fixed.index, up.root_index]), 1.0)
    return _Built(graph, structure, fixed, _Engine(structure, fixed, up), changed)


def _check_resume(owner: Any, saved: dict[str, Any] | None) -> None:
    """Refuse a state dict of a trained optimizer when ``init="ones"`` has just overwritten
    the model's skeleton weights and nothing loaded weights after it: the model's weights
    were loaded *before* the optimizer was built, and the initialisation overwrote them."""
    if not owner._init_changed or owner._steps or saved is None or not saved.get("steps"):
        return
    params: list[torch.Tensor | None] = [s.param for s in owner.structure.slots]
    with torch.no_grad():
        if not bool((owner.engine.gather(params) == 1).all()):
            return
    raise PathcondError(
        f"{type(owner).__name__}(init='ones') overwrote the skeleton weights of the model "
        "with 1 when it was built, and they are still 1 while the state being loaded comes "
        "from a trained optimizer: the model's weights were loaded before the optimizer was "
        "built and the initialisation has overwritten them. Build the optimizer on the "
        "freshly built model and load the model's state dict after it (as pathcond.train "
        "does), or pass init='keep' to an optimizer built on trained weights")


def _export(owner: Any) -> dict[str, Any]:
    return {**owner.engine.export(), "init": owner.init, "steps": owner._steps}


def _check_same_model(engine: _Engine, saved: dict[str, Any]) -> None:
    slots = engine.structure.slots
    shapes = saved.get("shapes")  # absent from states saved before it was recorded
    if list(saved["slots"]) != [s.name for s in slots] or (
            shapes is not None and [list(x) for x in shapes] != [list(s.param.shape)
                                                                for s in slots]):
        raise ValueError("the saved G-space skeleton belongs to another model")


def _restore_choice(engine: _Engine, saved: dict[str, Any]) -> _Engine:
    """The engine of a saved skeleton: its fixed entries and roots, which value-dependent
    strategies ("hungarian", "largest") could choose differently on the loaded weights."""
    st = engine.structure
    _check_same_model(engine, saved)
    slot = saved["fixed_slot"].to(st.device)
    index = saved["fixed_index"].to(st.device)
    root_slot = saved["root_slot"].to(st.device)
    root_index = saved["root_index"].to(st.device)
    if torch.equal(slot, engine.fixed.slot) and torch.equal(index, engine.fixed.index):
        fixed = engine.fixed
        if torch.equal(root_slot, engine.up.root_slot) and \
                torch.equal(root_index, engine.up.root_index):
            return engine
    else:
        dst = torch.empty_like(slot)
        for i, s in enumerate(st.slots):
            here = slot == i
            if bool(here.any()):
                assert s.dst is not None or s.src is not None
                dst[here] = -1 if s.dst is None else torch.broadcast_to(
                    s.dst, s.param.shape).reshape(-1)[index[here]]
        zeros = torch.zeros(st.num_groups, dtype=torch.float64, device=st.device)
        fixed = FixedChoice(slot, index, dst, zeros, torch.zeros_like(slot, dtype=torch.bool))
    engine_new = _Engine(st, fixed, choose_upstream(st, fixed, prefer=(root_slot, root_index)))
    if not (torch.equal(root_slot, engine_new.up.root_slot)
            and torch.equal(root_index, engine_new.up.root_index)):
        warnings.warn("some saved G-space roots are zero in the loaded weights, so other roots "
                      "were chosen; the optimizer state of those coordinates is reused as is",
                      RuntimeWarning, stacklevel=3)
    return engine_new


class _SkeletonOptimizer(ModelParamGroups):
    """What :class:`GSpace` and :class:`GSGD` share: the skeleton and engine built on the
    model (with ``init``), saved with the optimizer's own state and restored from it.

    Subclasses set ``init`` and call :meth:`_build_skeleton`; :meth:`_step_state_dict` and
    :meth:`_load_step_state_dict` are the state of the steps (by default the optimizer's
    own, ``torch.optim.Optimizer``'s)."""

    #: G-space state is invariant (or kept in step by the optimizer itself): rescalers
    #: such as ENorm must not transport it.
    rescaling_invariant_state = True

    init: Init

    def _build_skeleton(self, model: nn.Module, input_shape: Sequence[int] | None,
                        graph: RescalingGraph | None, strategy: Strategy) -> None:
        self.model = model
        built = _build(model, input_shape, graph, strategy, self.init, type(self).__name__)
        self.graph, self.structure = built.graph, built.structure
        self.fixed_choice, self.engine = built.fixed, built.engine
        self._init_changed = built.changed
        self._steps = 0
        self.strategy = strategy

    @property
    def set_to_one(self) -> bool:
        """Deprecated: ``init == "rescale"``."""
        return self.init == "rescale"

    def _step_state_dict(self) -> dict[str, Any]:
        return super().state_dict()

    def _load_step_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)

    def state_dict(self) -> dict[str, Any]:
        sd = self._step_state_dict()
        sd["gspace"] = _export(self)
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the optimizer's state (the inner optimizer's, or the momentum buffers)
        and the skeleton; the initialisation is not applied again (see ``init``)."""
        sd = dict(state_dict)
        saved = sd.pop("gspace", None)
        if saved is not None:
            _check_same_model(self.engine, saved)
        _check_resume(self, saved)
        if saved is not None:
            self.engine = _restore_choice(self.engine, saved)
            self._steps = int(saved.get("steps", 0))
        self._load_step_state_dict(sd)
        with torch.no_grad():
            self.engine.refresh()


def _check_inner(optimizer: Any, options: dict[str, Any]) -> None:
    """Refuse an inner optimizer that is not a ``torch.optim.Optimizer`` class, or options
    it does not take, before the model is touched (a probe on one dummy tensor)."""
    if not (isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)):
        got = f"an instance of {type(optimizer).__name__}" \
            if isinstance(optimizer, torch.optim.Optimizer) else type(optimizer).__name__
        raise TypeError("GSpace: optimizer must be a torch.optim.Optimizer class (e.g. "
                        f"torch.optim.Adam, its options as keywords), got {got}")
    try:
        optimizer([torch.zeros(1, requires_grad=True)], **options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"GSpace: {optimizer.__name__} does not take these options: "
                         f"{str(exc).strip().splitlines()[0]}") from None


class GSpace(_SkeletonOptimizer):
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
        init: what the constructor does to the model first (once; never on
            :meth:`load_state_dict`):

            * ``"rescale"`` (default): rescale it so that every fixed skeleton weight is
              ``+-1``. Function-preserving.
            * ``"keep"``: nothing. Same trajectory of functions as ``"rescale"``.
            * ``"ones"``: overwrite every skeleton weight (the fixed entries and the G-space
              roots, on an MLP the first layer's diagonal) with 1: the G-SGD paper's
              initialisation. **Changes the function the model computes.**

            G-space dynamics depend on the initial basis-path values, not on the
            rescaling: from a standard initialisation (``"rescale"`` / ``"keep"``) a free
            weight's G-SGD step is ``lr * grad / (U D)^2``, ``U D`` the rest of its basis
            path (a product of several ~``1/sqrt(fan_in)`` weights), so the same ``lr`` as
            SGD is far too large (on the paper's MNIST setting G-SGD at lr 0.1 reaches 82%
            from ``"rescale"``, 97.7% from ``"ones"``). Use ``"ones"`` to reproduce the
            paper, or a much smaller ``lr``.
            To resume, build the optimizer on the fresh model and then load the model's and
            the optimizer's state dicts; an optimizer built on already-trained weights
            needs ``init="keep"`` (with ``"ones"``, :meth:`load_state_dict` refuses a
            trained state when it finds the skeleton still at 1).
        set_to_one: deprecated: ``True`` is ``init="rescale"``, ``False`` ``init="keep"``.
        graph: a prebuilt rescaling graph of ``model``.
        **options: passed to ``optimizer`` (``lr=...``, ``betas=...``).

    Raises:
        UnsupportedModelError: a group has no valid skeleton weight or no basis path
            (no skeleton exists for the structure).
        PathcondError: a skeleton or root weight is zero.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int] | None = None,
                 optimizer: type[torch.optim.Optimizer] = torch.optim.SGD, *,
                 strategy: Strategy = "skeleton", init: Init = "rescale",
                 set_to_one: bool | None = None, graph: RescalingGraph | None = None,
                 **options: Any):
        check_model(type(self).__name__, model)
        self.init: Init = resolve_init(init, set_to_one, type(self).__name__)
        _check_inner(optimizer, options)
        self._build_skeleton(model, input_shape, graph, strategy)
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
        self._built = True

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Refused once built: the G-space coordinates (and which weights are fixed) are
        chosen for the whole model at construction."""
        if getattr(self, "_built", False):
            raise ValueError("GSpace: its coordinates cover the whole model and are set at "
                             "construction; add_param_group is not supported (build a new "
                             "GSpace, or optimise other tensors with a second optimizer)")
        super().add_param_group(param_group)

    def _live_slots(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(i, parameter, its G-space value)`` of every slot that has a value."""
        for i, s in enumerate(self.structure.slots):
            v = self._values[i]
            if v is not None:
                yield i, s.param, v

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step of the inner optimizer in G-space (module docstring (3)-(5))."""
        loss = closure_loss(closure)
        e = self.engine
        st = self.structure
        prep = _prepare(e)
        dtype = st.slots[0].param.dtype if st.slots else torch.float64
        cols = e.columns(prep.u, dtype)
        rows = e.rows(e.d_ext, dtype)
        grads: list[torch.Tensor | None] = [None] * len(st.slots)
        for i, p, v in self._live_slots():
            factors = (cols[i], rows[i])
            _scale(v.copy_(p), factors)
            gv = torch.zeros_like(v) if p.grad is None else p.grad.detach().clone()
            v.grad = grads[i] = _scale(gv, factors, divide=True)
        e.scatter(torch.cat([torch.zeros_like(e.snapshot), prep.gv_root]), grads)
        self.inner.step()
        new_root = e.gather(list(self._values))[e.h:]
        u_new = prep.u.clone()
        u_new[: e.h] = prep.u[: e.h] * (new_root / prep.v_root)[e.up.anchor]
        cols = e.columns(u_new, dtype)
        params: list[torch.Tensor | None] = [None] * len(st.slots)
        for i, p, v in self._live_slots():
            params[i] = _scale(p.copy_(v), (cols[i], rows[i]), divide=True)
        theta_root = new_root / (u_new[e.root_src_ext] * e.d_ext[e.up.root_group])
        e.scatter(torch.cat([e.snapshot, theta_root]), params)
        self._steps += 1
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
            if not torch.equal(e.fixed_values(), e.snapshot):
                e.refresh()
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

    def _step_state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def _load_step_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.inner.load_state_dict(state_dict)
        self.param_groups = self.inner.param_groups
        self.state = self.inner.state


class GSGD(_SkeletonOptimizer):
    """G-SGD: SGD (with optional momentum) on the basis-path values (Meng et al. 2019).

    Equivalent to ``GSpace(model, shape, torch.optim.SGD, lr=lr, momentum=momentum)`` but
    fused: per step one pass over the weights for ``rho = theta * g`` (eq. (4)) and one or
    two in-place updates (eq. (5)), no copy of the parameters. The momentum buffer lives in
    G-space (invariant under rescalings), stored as ``D(dst) * buffer`` under the state key
    ``'gspace_momentum_buffer'``. If the model is rescaled from outside (e.g. by
    :func:`pathcond.apply_rescaling`), the next step notices the moved skeleton weights and
    recomputes its constants.

    Args:
        model, input_shape, strategy, graph: as :class:`GSpace`.
        init: ``"rescale"`` (default, function-preserving), ``"keep"`` or ``"ones"`` (the
            G-SGD paper's initialisation: every skeleton weight, first-layer roots included,
            overwritten with 1; **changes the function**). See :class:`GSpace`: from a
            standard initialisation, G-SGD needs a far smaller ``lr`` than SGD; the paper's
            lr 0.1 on MNIST trains from ``"ones"``.
        set_to_one: deprecated: ``True`` is ``init="rescale"``, ``False`` ``init="keep"``.
        lr: learning rate in G-space.
        momentum: heavy-ball momentum in G-space (``buf = momentum * buf + dL/dv``).
        params: parameter groups of ``model`` (default: all its parameters, one group);
            a parameter in no group keeps ``lr = 0`` in G-space.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int] | None = None, *,
                 lr: float, momentum: float = 0.0, strategy: Strategy = "skeleton",
                 init: Init = "rescale", set_to_one: bool | None = None,
                 params: Iterable[Any] | None = None, graph: RescalingGraph | None = None):
        check_model(type(self).__name__, model)
        check_lr_momentum(lr, momentum)
        self.init: Init = resolve_init(init, set_to_one, type(self).__name__)
        self._own_param_ids = frozenset(id(p) for p in model.parameters())
        super().__init__(model.parameters() if params is None else params,
                         {"lr": lr, "momentum": momentum})
        self._build_skeleton(model, input_shape, graph, strategy)
        slot_ids = {id(s.param) for s in self.structure.slots}
        self._extra = [p for g in self.param_groups for p in g["params"] if id(p) not in slot_ids]
        self._root_options: tuple[Any, tuple[torch.Tensor, torch.Tensor]] | None = None

    def _group_of(self) -> dict[int, dict[str, Any]]:
        return {id(p): g for g in self.param_groups for p in g["params"]}

    @torch.no_grad()
    def _rescale_buffers(self, old_d: torch.Tensor) -> None:
        """Stored buffers are ``D(dst) * buffer``: follow a change of ``D``."""
        e = self.engine
        for i, s in enumerate(self.structure.slots):
            buf = self.state.get(s.param, {}).get(_MOMENTUM)
            dst = e.dst_ext[i]
            if buf is not None and dst is not None:
                buf.mul_((e.d_ext[dst] / old_d[dst]).to(buf.dtype))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One G-SGD step (module docstring (3)-(5)); a missing gradient counts as zero,
        and a step without any gradient does nothing (as ``torch.optim.SGD``)."""
        loss = closure_loss(closure)
        e = self.engine
        st = self.structure
        if not any(p.grad is not None for g in self.param_groups for p in g["params"]):
            return loss
        prep = _prepare(e)
        if prep.old_d is not None:
            self._rescale_buffers(prep.old_d)
        groups = self._group_of()
        options = [groups.get(id(s.param)) for s in st.slots]
        lrs = [0.0 if g is None else float(g["lr"]) for g in options]
        moms = [0.0 if g is None else float(g["momentum"]) for g in options]
        key = (tuple(lrs), tuple(moms))
        if self._root_options is None or self._root_options[0] != key:
            dev = st.device
            self._root_options = (key, (
                torch.tensor(lrs, dtype=torch.float64, device=dev)[e.root_slot],
                torch.tensor(moms, dtype=torch.float64, device=dev)[e.root_slot]))
        lr_r, mom_r = self._root_options[1]
        any_momentum = any(moms)
        buffers: list[torch.Tensor | None] = [None] * len(st.slots)
        if any_momentum:
            for i, s in enumerate(st.slots):
                if moms[i]:
                    buffers[i] = self.state[s.param].get(_MOMENTUM)
        d_root = e.d_ext[e.up.root_group]
        b_root = prep.gv_root
        if any_momentum:
            b_root = mom_r * e.gather(buffers)[e.h:] / d_root + prep.gv_root
        new_root = prep.v_root - lr_r * b_root
        u = prep.u
        u_new = u.clone()
        u_new[: e.h] = u[: e.h] * (new_root / prep.v_root)[e.up.anchor]
        dtype = st.slots[0].param.dtype if st.slots else torch.float64
        factors = e.columns(u / u_new, dtype)  # U / U' per source column, eq. (5)
        inv_u = e.columns(1.0 / u, dtype) if any_momentum else [None] * len(st.slots)
        coefs = e.columns(u / (u_new * u.square()), dtype) if not all(moms) \
            else [None] * len(st.slots)
        inv_d2 = e.rows(1.0 / e.d_ext.square(), dtype) if not e.unit_d \
            else [None] * len(st.slots)
        for i, s in enumerate(st.slots):
            p, lr, momentum = s.param, lrs[i], moms[i]
            direction = p.grad
            coef = coefs[i]  # (U / U') / U^2 without momentum, (U / U') / U with it
            if momentum:
                buf = buffers[i]
                if buf is None:
                    buf = self.state[p][_MOMENTUM] = torch.zeros_like(p.detach())
                    buffers[i] = buf
                else:
                    buf.mul_(momentum)
                if direction is not None:
                    col_u = inv_u[i]
                    if col_u is None:
                        buf.add_(direction)
                    else:
                        buf.addcmul_(direction, col_u)
                direction = buf
                col_u, factor_i = inv_u[i], factors[i]
                coef = None if col_u is None or factor_i is None else factor_i * col_u
            factor = factors[i]
            if factor is not None:
                p.mul_(factor)
            if direction is None or not lr:
                continue
            row_d2 = inv_d2[i]
            if row_d2 is not None:
                direction = direction * row_d2
            if coef is None:
                p.add_(direction, alpha=-lr)
            else:
                p.addcmul_(direction, coef, value=-lr)
        theta_root = new_root / (u_new[e.root_src_ext] * d_root)
        params: list[torch.Tensor | None] = [s.param for s in st.slots]
        e.scatter(torch.cat([e.snapshot, theta_root]), params)
        if any_momentum:
            e.scatter(torch.cat([torch.zeros_like(e.snapshot), d_root * b_root]), buffers)
        for p in self._extra:  # parameters outside the graph: plain SGD
            g = groups[id(p)]
            if p.grad is None:
                continue
            direction = p.grad
            if g["momentum"]:
                direction = heavy_ball(self.state[p], _MOMENTUM, direction, g["momentum"])
            p.add_(direction, alpha=-g["lr"])
        self._steps += 1
        return loss
