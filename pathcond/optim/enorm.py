"""ENorm / Equi-normalization (Stock, Graham, Gribonval, Jegou, ICLR 2019; SPEC section 5) on
the rescaling graph.

ENorm minimises, over the rescalings ``theta' = exp(B u) theta`` (SPEC section 2), the
weighted norm

    N(u) = sum_t c^{depth(t)} || theta'_t ||_p^p                                      (1)

where ``t`` runs over the balanced parameter tensors (weights *and biases*; BatchNorm's
affine parameters only with ``exclude_batchnorm=False``) and ``depth(t)`` is the depth of
``t``'s layer (the number of layers on the longest path from the input, 1 for the first).
For one group ``h``, with ``A_h = sum c^depth |theta_i|^p`` over its incoming parameters
(``B[i, h] = +1``: incoming weights and bias) and ``O_h`` the same sum over its outgoing
weights (``B[i, h] = -1``), the restriction of (1) to ``u_h = log d`` is
``d^p A_h + O_h / d^p + const``, minimised by

    d_h = (O_h / A_h)^(1 / (2p))          (p = 2:  d = (c ||out||^2 / ||in||^2)^(1/4)   (2)

for a layered network, where the outgoing layer is one deeper than the incoming one).
Groups that share no parameter do not interact in (1), so a block of such groups is
minimised exactly at once by (2): each block step is an exact block-coordinate step and
(1) never increases. One *cycle* updates every block once:

* ``schedule="layers"`` (default, the paper's sweep): blocks are the groups of one layer
  (the blocks of :func:`pathcond.solver.group_blocks` split by the layer where a group first
  appears), in layer order; for an MLP that is hidden layer 1, 2, ..., L-1;
* ``schedule="colours"``: the colour classes of :func:`pathcond.solver.group_blocks` (two
  blocks for an MLP: odd and even hidden layers), fewer and larger steps.

Residual-tied groups get one factor from the summed norms of all their units (2). Incoming
norms include the biases, so the rescaling is an exact symmetry and the function never
changes (train and eval mode; BatchNorm statistics are not touched). A group with
``A_h = 0`` or ``O_h = 0`` (a dead unit, or a unit rescaled only through an excluded
BatchNorm) has no minimiser and is left alone. Optimizer state is transported
(:func:`pathcond.rescale.transport_optimizer_state`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..graph import RescalingGraph, resolve_graph
from ..rescale import check_optimizer_state, transport_optimizer_state
from ..solver import group_blocks
from ._checks import check_attached_optimizer, check_model
from ._structure import Slot, Structure, constant_dims

Schedule = Literal["layers", "colours"]


@dataclass(frozen=True)
class ENormReport:
    """One ENorm cycle: ``log_scales`` is the ``u`` applied (``theta <- exp(B u) theta``),
    ``balanced_groups`` marks the groups that had a minimiser, ``cycle`` counts the cycles
    done so far (this one included). Nothing here forces a device synchronisation until
    read."""

    cycle: int
    log_scales: torch.Tensor
    balanced_groups: torch.Tensor

    @property
    def balanced(self) -> int:
        """Number of groups balanced by eq. (2) in this cycle."""
        return int(self.balanced_groups.sum())

    @property
    def max_log_scale(self) -> float:
        """Largest ``|u_h|`` of the cycle (0 at ENorm's fixed point)."""
        return float(self.log_scales.abs().max()) if self.log_scales.numel() else 0.0


@dataclass(frozen=True)
class _Reduce:
    """How to sum ``|theta|^p`` of one slot per group: reduce ``dims``, then ``index_add``
    into ``index`` (group ids, ``H`` for none); ``keep`` masks self-loop entries."""

    dims: tuple[int, ...]
    index: torch.Tensor
    keep: torch.Tensor | None


@dataclass(frozen=True)
class _Block:
    groups: torch.Tensor
    mask: torch.Tensor  # (H + 1,) bool
    incoming: tuple[int, ...]  # slots with dst in the block
    outgoing: tuple[int, ...]  # slots with src in the block


class ENorm:
    """Equi-normalization of ``model``: ``step()`` runs one balancing cycle.

    Args:
        model: the network (any model :func:`pathcond.rescaling_graph` supports).
        input_shape: one sample's shape (or give ``graph=``).
        c: depth-wise asymmetric penalty of (1) (``c^depth``); 1 balances plainly.
        p: the norm of (1); the paper uses ``p = 2``.
        every: when attached to an optimizer, one cycle every ``every`` optimizer steps.
        exclude_batchnorm: leave BatchNorm affine parameters out of (1) (paper setting);
            groups rescaled only through a BatchNorm then have no minimiser and stay.

    Groups whose incoming or outgoing norm is 0 or non-finite (a NaN or Inf parameter)
    have no minimiser: a cycle leaves them alone, ``ENormReport.balanced_groups`` marks them
    False and :meth:`unbalanced_groups` names them. No error is raised, so a diverging
    training run reaches its non-finite loss, which the harness reports as ``diverged``.
        schedule: ``"layers"`` or ``"colours"`` (module docstring).
        optimizer: attach to this optimizer (see :meth:`attach`).
        graph: a prebuilt rescaling graph of ``model``.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int] | None = None, *,
                 c: float = 1.0, p: float = 2, every: int = 1, exclude_batchnorm: bool = True,
                 schedule: Schedule = "layers", optimizer: torch.optim.Optimizer | None = None,
                 graph: RescalingGraph | None = None):
        check_model(type(self).__name__, model)
        if not (c > 0 and math.isfinite(c)):
            raise ValueError(f"c must be positive and finite, got {c}")
        if not (p > 0 and math.isfinite(p)):
            raise ValueError(f"p must be positive and finite, got {p}")
        if int(every) != every or every < 1:
            raise ValueError(f"every must be a positive integer, got {every}")
        if schedule not in ("layers", "colours"):
            raise ValueError(f"schedule must be 'layers' or 'colours', got {schedule!r}")
        graph = resolve_graph(model, input_shape, graph)
        self.model = model
        self.graph = graph
        self.c = float(c)
        self.p = float(p)
        self.every = int(every)
        self.exclude_batchnorm = bool(exclude_batchnorm)
        self.schedule: Schedule = schedule
        self.structure = Structure(model, graph)
        self._included = tuple(not (self.exclude_batchnorm and s.batchnorm)
                               for s in self.structure.slots)
        self._weights = tuple(self.c ** s.depth for s in self.structure.slots)
        self._in_reduce = tuple(self._incoming_reduce(s) for s in self.structure.slots)
        self._out_reduce = tuple(self._outgoing_reduce(s) for s in self.structure.slots)
        self._blocks = self._make_blocks()
        # A block with no included incoming (or no outgoing) entry can never balance (its
        # ratio is 0/0 or x/0, left alone by _factor): step() skips it, with the same result
        # (e.g. every block of a BatchNorm MLP when BatchNorm is excluded, the paper setting).
        self._live = tuple(
            any(self._included[i] and self._in_reduce[i] is not None for i in b.incoming)
            and any(self._included[i] and self._out_reduce[i] is not None for i in b.outgoing)
            for b in self._blocks)
        st = self.structure
        self._dst_ext = [None if t.dst is None else st.ext(t.dst) for t in st.slots]
        self._src_ext = [None if t.src is None else st.ext(t.src) for t in st.slots]
        if self.exclude_batchnorm:
            self._warn_batchnorm_only()
        self.optimizer: torch.optim.Optimizer | None = None
        self._hook: Any = None
        self.steps = 0  # optimizer steps seen while attached
        self.cycles = 0
        if optimizer is not None:
            self.attach(optimizer)

    # ------------------------------------------------------------------ set-up
    def _keep_mask(self, slot: Slot) -> torch.Tensor | None:
        if slot.dst is None or slot.src is None:
            return None
        same = (slot.dst == slot.src) & (slot.dst >= 0)
        if not bool(same.any()):
            return None
        return (~same).to(slot.param.dtype)

    def _reduce(self, slot: Slot, index: torch.Tensor) -> _Reduce:
        """Sum over the dimensions along which ``index`` (broadcastable to the parameter) is
        constant, then add into the groups ``index`` names: rows for incoming entries,
        columns (or (row, column) pairs of a grouped convolution) for outgoing ones."""
        if index.dim() == 0:
            index = index.reshape(1)
        return _Reduce(constant_dims(index), self.structure.ext(index.reshape(-1)),
                       self._keep_mask(slot))

    def _incoming_reduce(self, slot: Slot) -> _Reduce | None:
        return None if slot.dst is None else self._reduce(slot, slot.dst)

    def _outgoing_reduce(self, slot: Slot) -> _Reduce | None:
        return None if slot.src is None else self._reduce(slot, slot.src)

    def _make_blocks(self) -> tuple[_Block, ...]:
        st = self.structure
        h = st.num_groups
        blocks = [b.to(st.device) for b in group_blocks(self.graph)]
        if self.schedule == "layers":
            parts: list[tuple[int, int, torch.Tensor]] = []
            for n, b in enumerate(blocks):
                first = st.first_layer[b]
                for layer in torch.unique(first).tolist():
                    parts.append((layer, n, b[first == layer]))
            parts.sort(key=lambda x: (x[0], x[1]))
            blocks = [b for _, _, b in parts]
        out = []
        for b in blocks:
            mask = torch.zeros(h + 1, dtype=torch.bool, device=st.device)
            mask[b] = True
            incoming = tuple(i for i, s in enumerate(st.slots)
                             if s.dst is not None and bool(mask[st.ext(s.dst)].any()))
            outgoing = tuple(i for i, s in enumerate(st.slots)
                             if s.src is not None and bool(mask[st.ext(s.src)].any()))
            out.append(_Block(b, mask, incoming, outgoing))
        return tuple(out)

    def _warn_batchnorm_only(self) -> None:
        st = self.structure
        plain = torch.zeros(st.num_groups + 1, dtype=torch.bool, device=st.device)
        for s in st.slots:
            if s.dst is not None and not s.batchnorm:
                plain[st.ext(s.dst.reshape(-1))] = True
        count = int((~plain[:-1]).sum())
        if count:
            warnings.warn(
                f"ENorm: {count} of {st.num_groups} rescaling groups are rescaled only through "
                "BatchNorm affine parameters, which exclude_batchnorm=True leaves out of the "
                "balanced norm; they have no minimiser and are left alone (pass "
                "exclude_batchnorm=False to balance them through the BatchNorm weight and "
                "bias)", UserWarning, stacklevel=3)

    # ------------------------------------------------------------------ sums
    def _norm_p(self, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        """``sum |x|^p`` over ``dims`` (vector_norm is fast along contiguous rows only)."""
        if dims and dims[0] != 0:
            return torch.linalg.vector_norm(x, ord=self.p, dim=dims) ** self.p
        if self.p == 2 and dims and x.dim() > 1:  # column sums without a temporary
            out = torch.linalg.vecdot(x, x, dim=0)
            rest = tuple(d - 1 for d in dims[1:])
            return out.sum(dim=rest) if rest else out
        powered = x.square() if self.p == 2 else x.abs() ** self.p
        return powered.sum(dim=dims) if dims else powered

    def _accumulate(self, target: torch.Tensor, index: int, red: _Reduce) -> None:
        x = self.structure.slots[index].param.detach()
        if red.keep is not None:
            x = x * red.keep
        sums = self._norm_p(x, red.dims).reshape(-1).to(torch.float64)
        weight = self._weights[index]
        if weight == 1.0:
            target.index_add_(0, red.index, sums)
        else:
            target.index_add_(0, red.index, sums, alpha=weight)

    def _sums(self, slots_in: Sequence[int], slots_out: Sequence[int]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.structure.num_groups
        dev = self.structure.device
        inc = torch.zeros(h + 1, dtype=torch.float64, device=dev)
        out = torch.zeros(h + 1, dtype=torch.float64, device=dev)
        for i in slots_in:
            red = self._in_reduce[i]
            if self._included[i] and red is not None:
                self._accumulate(inc, i, red)
        for i in slots_out:
            red = self._out_reduce[i]
            if self._included[i] and red is not None:
                self._accumulate(out, i, red)
        return inc, out

    def _factor(self, inc: torch.Tensor, out: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        ratio = out / inc  # 0 / 0 = nan, x / 0 = inf, 0 / x = 0: all left alone
        ok = mask & (ratio > 0) & (ratio < torch.inf)
        logs = torch.where(ok, torch.log(ratio), 0.0).mul_(1.0 / (2 * self.p))
        return logs, ok

    # ------------------------------------------------------------------ public
    @torch.no_grad()
    def step(self) -> ENormReport:
        """One balancing cycle (every block once, eq. (2)); transports the attached
        optimizer's state. The function computed by the model is unchanged."""
        st = self.structure
        if self.optimizer is not None and self.optimizer.state:  # fail before any change
            check_optimizer_state(self.optimizer, (s.param for s in st.slots))
        h = st.num_groups
        total = torch.zeros(h, dtype=torch.float64, device=st.device)
        balanced = torch.zeros(h + 1, dtype=torch.bool, device=st.device)
        dtype = st.slots[0].param.dtype if st.slots else torch.float64
        for block, live in zip(self._blocks, self._live, strict=True):
            if not live:
                continue
            inc, out = self._sums(block.incoming, block.outgoing)
            logs, ok = self._factor(inc, out, block.mask)
            balanced |= ok
            up64 = torch.exp(logs)
            up = up64.to(dtype)
            down = torch.reciprocal(up64).to(dtype)
            for i in block.incoming:
                s = st.slots[i]
                s.param.mul_(up[self._dst_ext[i]].to(s.param.dtype))
            for i in block.outgoing:
                s = st.slots[i]
                s.param.mul_(down[self._src_ext[i]].to(s.param.dtype))
            total += logs[:h]
        if (self.optimizer is not None and self.optimizer.state
                and not getattr(self.optimizer, "rescaling_invariant_state", False)):
            scales = st.scales_of(total)
            transport_optimizer_state(self.optimizer, [
                (s.param, ls) for s, ls in zip(st.slots, scales, strict=True) if ls is not None])
        self.cycles += 1
        return ENormReport(self.cycles, total, balanced[:h])

    @torch.no_grad()
    def objective(self) -> float:
        """The weighted norm (1) at the current parameters."""
        total = 0.0
        for i, s in enumerate(self.structure.slots):
            if self._included[i]:
                total += self._weights[i] * float(self._norm_p(
                    s.param.detach(), tuple(range(s.param.dim()))).to(torch.float64))
        return total

    @torch.no_grad()
    def imbalance(self) -> torch.Tensor:
        """Per group, ``log d_h`` of eq. (2) at the current parameters, all groups at once
        (0 for groups without a minimiser): zero at ENorm's fixed point, where
        ``A_h = O_h`` for every balanced group."""
        everything = range(len(self.structure.slots))
        inc, out = self._sums(everything, everything)
        mask = torch.ones_like(inc, dtype=torch.bool)
        mask[-1] = False
        return self._factor(inc, out, mask)[0][:-1]

    def unbalanced_groups(self) -> tuple[str, ...]:
        """Names of the groups eq. (2) leaves alone at the current parameters: a zero
        incoming or outgoing norm, or a non-finite one (a NaN or Inf parameter)."""
        everything = range(len(self.structure.slots))
        inc, out = self._sums(everything, everything)
        mask = torch.ones_like(inc, dtype=torch.bool)
        mask[-1] = False
        bad = ~self._factor(inc, out, mask)[1][:-1]
        return tuple(self.graph.group_name(int(g)) for g in torch.nonzero(bad).flatten())

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Run one cycle after every ``every`` steps of ``optimizer`` (a step post-hook) and
        transport its state on every cycle."""
        check_attached_optimizer(type(self).__name__, self.model, optimizer)
        self.detach()
        self.optimizer = optimizer

        def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self.steps += 1
            if self.steps % self.every == 0:
                self.step()

        self._hook = optimizer.register_step_post_hook(hook)

    def detach(self) -> None:
        """Stop running after the optimizer's steps."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.optimizer = None

    def state_dict(self) -> dict[str, Any]:
        """Counters and options (the parameters themselves live in the model)."""
        return {"steps": self.steps, "cycles": self.cycles, "c": self.c, "p": self.p,
                "every": self.every, "exclude_batchnorm": self.exclude_batchnorm,
                "schedule": self.schedule}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the counters; the options must match this instance's."""
        for key in ("c", "p", "every", "exclude_batchnorm", "schedule"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"ENorm state has {key}={state[key]!r}, this instance "
                                 f"{getattr(self, key)!r}")
        self.steps = int(state.get("steps", 0))
        self.cycles = int(state.get("cycles", 0))

    def __repr__(self) -> str:
        return (f"ENorm(c={self.c}, p={self.p}, every={self.every}, exclude_batchnorm="
                f"{self.exclude_batchnorm}, schedule={self.schedule!r}, "
                f"{len(self._blocks)} blocks)")
