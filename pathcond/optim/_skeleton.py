"""Which weight to fix for every rescaling group (thesis sections 2.1.4, 3.0.2-3.0.4, 6.3.1),
generalised to any rescaling graph, and the upstream tree G-space needs.

**Fixed weights.** Every group ``h`` gets one *fixed* outgoing entry ``k(h)`` (an entry with
``src = h``). Fixing ``k(h)`` pins ``u_h`` relative to ``u_{dst(k(h))}``; to break every
symmetry the chain ``h -> dst(k(h)) -> ...`` must end at a unit that is never rescaled, so
only entries whose ``dst`` group is strictly closer to the output (``Structure.distance``)
are candidates. Groups are processed by increasing distance, which is also the order of the
function-preserving *set-to-one* reparametrisation (thesis 6.3.1):
``u_h = u_{dst(k(h))} + log |theta_{k(h)}|`` makes ``|theta_{k(h)}| = 1`` (its sign cannot
change under a positive rescaling, so it becomes ``+1`` or ``-1``).

Strategies:

* ``"skeleton"``: structural, as the G-SGD skeleton (thesis Algorithm 1): for the column
  ``j`` of ``h`` in its first consumer layer, the row ``j mod out`` (the diagonal, wrapped
  for unequal widths), the kernel centre for convolutions; a zero entry only if no other.
* ``"largest"``: the entry of largest ``|theta| exp(u_dst)`` (its magnitude after the
  downstream groups were set to one): invariant under rescaling, like ``"skeleton"``.
* ``"hungarian"``: the thesis' reparametrisation-aware choice (6.3.1): cost
  ``min(|DW - 1|, |DW + 1|) = | |theta| exp(u_dst) - 1 |``, one fixed entry per row and
  column of each consumer layer where possible, optimal by
  :func:`scipy.optimize.linear_sum_assignment` (rows are reused in further rounds when a
  layer narrows). It depends on the representative by design (it minimises how much the
  reparametrisation changes the weights).

**Upstream tree (G-space).** Every group ``c`` also needs a path from an input or a bias to
it whose value is ``U(c)``: either through a fixed entry ``k(a)`` with ``dst = c`` and ``a``
earlier (the diagonal of the G-SGD skeleton), or through a free *root* entry (first-layer
skeleton weight ``w_j`` of the thesis; generally a weight from an input, a BatchNorm weight,
a bias, or a weight from an earlier group). Roots must be non-zero.

**Initialisations** (the ``init=`` option of :class:`~pathcond.optim.GSGD`,
:class:`~pathcond.optim.GSpace` and :class:`~pathcond.optim.WeightFixing`, and
:func:`init_skeleton`): ``"rescale"`` (the function-preserving set-to-one above), ``"keep"``
(the weights as they are) or ``"ones"``: the skeleton weights are *overwritten* with 1, as the
G-SGD paper and the thesis initialise them; this changes the function.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..errors import NonFiniteParameterError, UnsupportedModelError
from ..graph import Layer, RescalingGraph, resolve_graph
from ._structure import Slot, Structure, kernel_center_order

Strategy = Literal["skeleton", "hungarian", "largest"]
STRATEGIES = ("skeleton", "hungarian", "largest")
Init = Literal["rescale", "keep", "ones"]
INITS = ("rescale", "keep", "ones")
_MAX = torch.iinfo(torch.int64).max


@dataclass(frozen=True)
class FixedChoice:
    """Per group: the slot and flat index of its fixed entry, the entry's ``dst`` group, the
    set-to-one log-scales ``u`` (``theta' = exp(B u) theta`` has ``|theta'_k(h)| = 1``) and
    the groups whose fixed entry is zero (left at ``u_h = u_dst``)."""

    slot: torch.Tensor
    index: torch.Tensor
    dst: torch.Tensor
    log_scales: torch.Tensor
    zero: torch.Tensor


@dataclass(frozen=True)
class Upstream:
    """The upstream tree: ``parent[c]`` the group whose fixed entry feeds ``c`` (or ``-1``
    when ``c`` is reached through a root); roots as (slot, flat index, group, src group);
    ``anchor[c]`` the root on the way to ``c``; ``order``: groups by first layer."""

    parent: torch.Tensor
    root_slot: torch.Tensor
    root_index: torch.Tensor
    root_group: torch.Tensor
    root_src: torch.Tensor
    anchor: torch.Tensor
    order: tuple[torch.Tensor, ...]
    root_levels: tuple[torch.Tensor, ...]


def lex_best(group: torch.Tensor, score: torch.Tensor, prio: torch.Tensor, size: int
             ) -> torch.Tensor:
    """Per group, the position of the candidate with the largest ``score``, ties broken by
    the smallest ``prio`` then position; ``-1`` for groups without candidate."""
    dev = group.device
    best = torch.full((size,), -torch.inf, dtype=score.dtype, device=dev)
    best = best.scatter_reduce(0, group, score, reduce="amax", include_self=True)
    ok = score == best[group]
    p = torch.where(ok, prio, _MAX)
    best_p = torch.full((size,), _MAX, dtype=torch.int64, device=dev)
    best_p = best_p.scatter_reduce(0, group, p, reduce="amin", include_self=True)
    ok &= prio == best_p[group]
    positions = torch.nonzero(ok).flatten()
    pos = torch.full((size,), _MAX, dtype=torch.int64, device=dev)
    pos = pos.scatter_reduce(0, group[positions], positions, reduce="amin", include_self=True)
    return torch.where(pos == _MAX, -1, pos)


@dataclass
class _Pairs:
    """The (row, column) pairs of one weight slot with the kernel positions folded."""

    slot_index: int
    slot: Slot
    src: torch.Tensor  # (1|out, width)
    dst: torch.Tensor  # (out, 1)
    gcol: torch.Tensor  # like src
    order: torch.Tensor  # kernel positions, centre first
    out: int
    width: int
    layer: Layer  # rows and columns are those of its lifting layout (out, in/g, *kernel)
    native: torch.Tensor | None = None  # lifting-layout flat position -> parameter's

    def values(self) -> torch.Tensor:
        """``(out, width, K)`` detached float64 values, kernel positions centre first."""
        p = self.layer.to_lifting(self.slot.param.detach().to(torch.float64))
        k = self.order.numel()
        return p.reshape(self.out, -1, k)[:, :, self.order.to(p.device)]

    def flat_index(self, rows: torch.Tensor, cols: torch.Tensor, kidx: torch.Tensor
                   ) -> torch.Tensor:
        """Row-major flat index, in the parameter, of the entries ``(rows, cols, kidx)``."""
        k = self.order.numel()
        flat = (rows * self.width + cols) * k + self.order.to(rows.device)[kidx]
        return flat if self.native is None else self.native.to(flat.device)[flat]


def _pairs(structure: Structure) -> list[_Pairs]:
    out: list[_Pairs] = []
    for i, slot in structure.weight_slots():
        src = structure.pair_src(slot)
        layer = structure.graph.layers[slot.layer]
        native = None
        if structure.transposed(slot):
            positions = torch.arange(slot.param.numel(), device=structure.device)
            native = layer.to_lifting(positions.reshape(slot.param.shape)).reshape(-1)
        out.append(_Pairs(i, slot, src, structure.pair_dst(slot), structure.global_columns(slot),
                          kernel_center_order(tuple(slot.param.shape)), layer.out_units,
                          int(src.shape[1]), layer, native))
    return out


def choose_fixed(structure: Structure, strategy: Strategy) -> FixedChoice:
    """One fixed outgoing entry per group (see the module docstring) and the set-to-one
    log-scales, processing groups by increasing distance to the output."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    for slot in structure.slots:  # else the rescaling to +-1 fails on NaN log-scales
        if not bool(torch.isfinite(slot.param.detach()).all()):
            raise NonFiniteParameterError(
                f"'{slot.name}' holds NaN or infinite values: no skeleton weight can be "
                "chosen on a diverged model (reload a checkpoint or re-initialise)")
    h = structure.num_groups
    dev = structure.device
    dist = structure.distance
    dist_ext = torch.cat([dist, dist.new_zeros(1)])
    u_ext = torch.zeros(h + 1, dtype=torch.float64, device=dev)
    sel_slot = torch.full((h,), -1, dtype=torch.int64, device=dev)
    sel_index = torch.full((h,), -1, dtype=torch.int64, device=dev)
    sel_dst = torch.full((h,), -1, dtype=torch.int64, device=dev)
    zero = torch.zeros(h, dtype=torch.bool, device=dev)
    pairs = _pairs(structure)
    p1 = max([p.out for p in pairs], default=1) + 1
    p2 = max([int(p.gcol.max()) + 1 for p in pairs], default=1) + 1
    valid = []
    for p in pairs:
        ok = (p.src >= 0) & (p.src != p.dst)
        ok &= (p.dst < 0) | (dist_ext[structure.ext(p.dst)] < dist_ext[structure.ext(p.src)])
        valid.append(ok)
    for level in torch.unique(dist).tolist():
        members = torch.nonzero(dist == level).flatten()
        groups, scores, prios, slots, rows, cols, kidxs, values, targets = \
            [], [], [], [], [], [], [], [], []
        for n, (p, ok) in enumerate(zip(pairs, valid, strict=True)):
            mask = ok & (dist_ext[structure.ext(p.src)] == level)
            if not bool(mask.any()):
                continue
            vals = p.values()
            dst_scale = torch.exp(u_ext[structure.ext(p.dst)]).unsqueeze(-1)  # (out, 1, 1)
            mags = vals.abs() * dst_scale
            if strategy == "skeleton":
                nz = vals != 0
                kidx = nz.to(torch.int8).argmax(-1)
                score = torch.where(nz.any(-1), 0.0, -1.0).to(torch.float64)
            elif strategy == "largest":
                kidx = mags.argmax(-1)
                score = torch.log(mags.gather(-1, kidx.unsqueeze(-1)).squeeze(-1))
            else:  # hungarian: larger score = smaller cost
                cost = torch.where(mags > 0, (mags - 1).abs(), torch.inf)
                kidx = cost.argmin(-1)
                score = -cost.gather(-1, kidx.unsqueeze(-1)).squeeze(-1)
            rr, cc = torch.nonzero(mask.expand(p.out, p.width), as_tuple=True)
            src = p.src.expand(p.out, p.width)[rr, cc]
            rowdist = (rr - p.gcol.expand(p.out, p.width)[rr, cc]) % p.out
            gc = p.gcol.expand(p.out, p.width)[rr, cc]
            groups.append(src)
            scores.append(score[rr, cc])
            prios.append((n * p1 + rowdist) * p2 + gc)
            slots.append(torch.full_like(rr, p.slot_index))
            rows.append(rr)
            cols.append(cc)
            kidxs.append(kidx[rr, cc])
            values.append(vals[rr, cc, kidx[rr, cc]])
            targets.append(n * p1 + rr)  # (slot, row) identifies a hungarian target
        group = torch.cat(groups)
        score = torch.cat(scores)
        prio = torch.cat(prios)
        if strategy == "hungarian":
            keep = _hungarian_filter(group, score, torch.cat(targets), members, h)
            score = torch.where(keep, score, -torch.inf)
            prio = torch.where(keep, prio, _MAX - 1)
        pos = lex_best(group, score, prio, h)[members]
        missing = members[pos < 0]
        if missing.numel():
            raise UnsupportedModelError(
                f"rescaling group {structure.graph.group_name(int(missing[0]))} has no "
                "outgoing weight that can be fixed (no skeleton exists for this structure)")
        slot_sel = torch.cat(slots)[pos]
        row_sel, col_sel, k_sel = torch.cat(rows)[pos], torch.cat(cols)[pos], \
            torch.cat(kidxs)[pos]
        value = torch.cat(values)[pos]
        flat = torch.empty_like(pos)
        dsts = torch.empty_like(pos)
        for p in pairs:
            here = slot_sel == p.slot_index
            if bool(here.any()):
                flat[here] = p.flat_index(row_sel[here], col_sel[here], k_sel[here])
                dsts[here] = p.dst[row_sel[here], 0]
        sel_slot[members] = slot_sel
        sel_index[members] = flat
        sel_dst[members] = dsts
        is_zero = value == 0
        zero[members] = is_zero
        base = u_ext[structure.ext(dsts)]
        u_ext[members] = torch.where(is_zero, base, base + torch.log(value.abs()))
    return FixedChoice(sel_slot, sel_index, sel_dst, u_ext[:h].clone(), zero)


def _hungarian_filter(group: torch.Tensor, score: torch.Tensor, target: torch.Tensor,
                      members: torch.Tensor, h: int) -> torch.Tensor:
    """Candidates allowed by an optimal assignment of the level's groups to distinct
    (slot, row) targets (cost ``-score``), per connected component, in rounds."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    cost = (-score).cpu().numpy()
    grp = group.cpu().numpy()
    tgt_ids, tgt = np.unique(target.cpu().numpy(), return_inverse=True)
    local = np.full(h, -1)
    mem = members.cpu().numpy()
    local[mem] = np.arange(mem.size)
    lg = local[grp]
    n_g, n_t = mem.size, tgt_ids.size
    # dense-ish cost per (group, target): minimum over the candidates of that pair
    key = lg * n_t + tgt
    uniq, inv = np.unique(key, return_inverse=True)
    best = np.full(uniq.size, np.inf)
    np.minimum.at(best, inv, cost)
    ug, ut = uniq // n_t, uniq % n_t
    adj = coo_matrix((np.ones(uniq.size), (ug, n_g + ut)), shape=(n_g + n_t, n_g + n_t))
    _, comp = connected_components(adj, directed=False)
    finite = best[np.isfinite(best)]
    big = (finite.max() + 1.0) * 1e3 if finite.size else 1.0
    chosen = np.full(n_g, -1)
    for c in np.unique(comp[:n_g]):
        gs = np.nonzero(comp[:n_g] == c)[0]
        ts = np.nonzero(comp[n_g:] == c)[0]
        gpos = np.full(n_g, -1)
        gpos[gs] = np.arange(gs.size)
        tpos = np.full(n_t, -1)
        tpos[ts] = np.arange(ts.size)
        mat = np.full((gs.size, ts.size), big * 10)
        sel = comp[ug] == c
        mat[gpos[ug[sel]], tpos[ut[sel]]] = np.where(np.isfinite(best[sel]), best[sel], big)
        left = np.arange(gs.size)
        while left.size:
            r, col = linear_sum_assignment(mat[left])
            chosen[gs[left[r]]] = ts[col]
            left = np.delete(left, r)
    allowed = chosen[lg] == tgt
    return torch.from_numpy(allowed).to(group.device)


def _preferred_taps(p: _Pairs, vals: torch.Tensor, kidx: torch.Tensor,
                    flat: torch.Tensor) -> torch.Tensor:
    """``kidx`` with the kernel tap of each preferred entry (parameter flat indices
    ``flat``) wherever it is non-zero: a pair offers one tap as a root candidate, and a
    saved root may sit at another tap than the rule picks on the current weights."""
    if not flat.numel():
        return kidx
    flat = flat.to(kidx.device)
    if p.native is not None:  # parameter flat index -> lifting-layout flat position
        flat = torch.argsort(p.native.to(flat.device))[flat]
    k = p.order.numel()
    row, col, tap = flat // (p.width * k), (flat // k) % p.width, flat % k
    position = torch.argsort(p.order.to(flat.device))[tap]  # order[position] = tap
    usable = vals[row, col, position] != 0
    kidx = kidx.clone()
    kidx[row[usable], col[usable]] = position[usable]
    return kidx


def choose_upstream(structure: Structure, fixed: FixedChoice, *, largest: bool = False,
                    prefer: tuple[torch.Tensor, torch.Tensor] | None = None) -> Upstream:
    """The upstream tree of G-space (see the module docstring). With ``largest``, a root
    from an input, a bias or a BatchNorm weight is the largest in magnitude among those of
    its group (they all scale alike under rescalings, so the choice is invariant).
    ``prefer``: ``(slot, flat index)`` of roots to take wherever they are candidates (the
    saved roots of a resumed optimizer), before any other rule."""
    h = structure.num_groups
    dev = structure.device
    first = structure.first_layer
    first_ext = torch.cat([first, first.new_full((1,), -1)])
    # (1) through fixed entries of earlier groups
    groups = torch.arange(h, device=dev)
    feeds = (fixed.dst >= 0) & (first[groups] < first_ext[structure.ext(fixed.dst)])
    parent = torch.full((h + 1,), _MAX, dtype=torch.int64, device=dev)
    if bool(feeds.any()):
        parent = parent.scatter_reduce(0, fixed.dst[feeds], groups[feeds], reduce="amin",
                                       include_self=True)
    parent = torch.where(parent[:h] == _MAX, -1, parent[:h])
    need = parent < 0
    # (2) roots for the others
    nslots = len(structure.slots)
    cand_group, cand_prio, cand_slot, cand_index, cand_src = [], [], [], [], []
    cand_score: list[torch.Tensor] = []
    pairs = {p.slot_index: p for p in _pairs(structure)}
    p1 = max([p.out for p in pairs.values()], default=1) + 1
    p2 = max([int(p.gcol.max()) + 1 for p in pairs.values()], default=1) + 1
    need_ext = torch.cat([need, need.new_zeros(1)])
    for i, slot in enumerate(structure.slots):
        if slot.dst is None:
            continue
        if slot.src is None:  # bias, BatchNorm weight or bias: one entry per row
            dst = slot.dst.reshape(-1)
            value = slot.param.detach().reshape(-1)
            ok = need_ext[structure.ext(dst)] & (dst >= 0) & (value != 0)
            k = torch.nonzero(ok).flatten()
            cls = 1 if slot.role == "bn_weight" else 2
            cand_group.append(dst[k])
            cand_score.append(value[k].abs().to(torch.float64))
            cand_prio.append(((cls * nslots + i) * p1) * p2 + k)
            cand_slot.append(torch.full_like(k, i))
            cand_index.append(k)
            cand_src.append(torch.full_like(k, -1))
            continue
        p = pairs[i]
        vals = p.values()
        nz = vals != 0
        kidx = vals.abs().argmax(-1) if largest else nz.to(torch.int8).argmax(-1)
        if prefer is not None:
            kidx = _preferred_taps(p, vals, kidx, prefer[1].to(dev)[prefer[0].to(dev) == i])
        src = p.src.expand(p.out, p.width)
        dst = p.dst.expand(p.out, p.width)
        earlier = (src < 0) | ((first_ext[structure.ext(src)] < first_ext[structure.ext(dst)])
                               & (src != dst))
        ok = need_ext[structure.ext(dst)] & (dst >= 0) & nz.any(-1) & earlier
        rr, cc = torch.nonzero(ok, as_tuple=True)
        s = src[rr, cc]
        klass = torch.where(s < 0, 0, 3)
        width = int(p.gcol.max()) + 1
        coldist = (p.gcol.expand(p.out, p.width)[rr, cc] - rr) % width
        cand_group.append(dst[rr, cc])
        mag = vals.abs().gather(-1, kidx.unsqueeze(-1)).squeeze(-1)[rr, cc]
        cand_score.append(torch.where(s < 0, mag, -1.0))  # hidden sources: not comparable
        cand_prio.append(((klass * nslots + i) * p1 + coldist) * p2 + rr)
        cand_slot.append(torch.full_like(rr, i))
        cand_index.append(p.flat_index(rr, cc, kidx[rr, cc]))
        cand_src.append(s)
    if cand_group:
        group = torch.cat(cand_group)
        score = torch.cat(cand_score) if largest else \
            torch.zeros(group.numel(), dtype=torch.float64, device=dev)
        if prefer is not None:  # a preferred candidate outscores every other
            width = max(int(s.param.numel()) for s in structure.slots) + 1
            keys = torch.cat(cand_slot) * width + torch.cat(cand_index)
            wanted = prefer[0].to(dev) * width + prefer[1].to(dev)
            score = torch.where(torch.isin(keys, wanted), torch.inf, score)
        pos = lex_best(group, score, torch.cat(cand_prio), h)
    else:
        pos = torch.full((h,), -1, dtype=torch.int64, device=dev)
    roots = torch.nonzero(need).flatten()
    missing = roots[pos[roots] < 0]
    if missing.numel():
        raise UnsupportedModelError(
            f"rescaling group {structure.graph.group_name(int(missing[0]))} has no non-zero "
            "incoming parameter from an input, a bias or an earlier unit, so G-space has no "
            "basis path reaching it (no skeleton exists for this structure and these values)")
    rp = pos[roots]
    root_slot = torch.cat(cand_slot)[rp] if cand_group else rp
    root_index = torch.cat(cand_index)[rp] if cand_group else rp
    root_src = torch.cat(cand_src)[rp] if cand_group else rp
    root_of = torch.full((h,), -1, dtype=torch.int64, device=dev)
    root_of[roots] = torch.arange(roots.numel(), device=dev)
    # anchors and root levels, groups in order of first appearance
    anchor = root_of.clone()
    level = torch.full((roots.numel(),), -1, dtype=torch.int64, device=dev)
    order = []
    for layer in torch.unique(first).tolist():
        gs = torch.nonzero(first == layer).flatten()
        order.append(gs)
        fed = gs[parent[gs] >= 0]
        anchor[fed] = anchor[parent[fed]]
        rs = root_of[gs[parent[gs] < 0]]
        src = root_src[rs]
        level[rs] = torch.where(src < 0, 0, level[anchor[src.clamp(min=0)]] + 1)
    group_level = level[anchor]
    root_levels = tuple(torch.nonzero(group_level == lv).flatten()
                        for lv in range(int(group_level.max()) + 1 if h else 0))
    return Upstream(parent, root_slot, root_index, roots, root_src, anchor, tuple(order),
                    root_levels)


# ---------------------------------------------------------------------- initialisations


def resolve_init(init: str, set_to_one: bool | None, owner: str) -> Init:
    """Check ``init`` and map the deprecated ``set_to_one`` onto it (``True`` = ``"rescale"``,
    ``False`` = ``"keep"``)."""
    if set_to_one is not None:
        warnings.warn(f"{owner}(set_to_one=...) is deprecated: use init='rescale' (was "
                      "set_to_one=True) or init='keep' (was set_to_one=False)",
                      DeprecationWarning, stacklevel=3)
        if init != "rescale":
            raise ValueError(f"{owner}: give init only (set_to_one is its deprecated form)")
        return "rescale" if set_to_one else "keep"
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")
    return init  # type: ignore[return-value]


@torch.no_grad()
def write_entries(structure: Structure, slot: torch.Tensor, index: torch.Tensor,
                  value: float) -> bool:
    """Overwrite the entries ``(slot, flat index)`` of the model's parameters with
    ``value``; ``True`` when any of them held another value."""
    changed = False
    for i, s in enumerate(structure.slots):
        here = slot == i
        if not bool(here.any()):
            continue
        idx = index[here].to(s.param.device)
        new = torch.full(idx.shape, value, dtype=s.param.dtype, device=s.param.device)
        changed |= not torch.equal(torch.take(s.param.detach(), idx), new)
        s.param.put_(idx, new)
    return changed


@dataclass(frozen=True)
class SkeletonInit:
    """What :func:`init_skeleton` did: the value written, how many fixed entries (one per
    rescaling group) and G-space roots it overwrote, and whether the model changed."""

    value: float
    num_fixed: int
    num_roots: int
    changed: bool

    def __str__(self) -> str:
        roots = f" and {self.num_roots} roots" if self.num_roots else ""
        return (f"skeleton init: {self.num_fixed} fixed entries{roots} set to {self.value:g}"
                f"{'' if self.changed else ' (already there)'}")


def init_skeleton(model: nn.Module, input_shape: Sequence[int] | None = None, *,
                  value: float = 1.0, roots: bool = True, strategy: Strategy = "skeleton",
                  graph: RescalingGraph | None = None) -> SkeletonInit:
    """Overwrite the skeleton weights of ``model`` with ``value`` (in place).

    This is the initialisation of the G-SGD paper (Meng et al. 2019; ``value=1``,
    ``roots=True``) and of the thesis' weight fixing (``roots=False``): the fixed entry of
    every rescaling group (one outgoing weight per hidden unit, chosen by ``strategy``) and,
    with ``roots``, the free root entries of G-space (on a layered MLP, the first layer's
    diagonal) are set to ``value``. With ``value=1`` and ``roots``, every G-space upstream
    and downstream factor is 1, so every basis-path value equals its free weight.

    **This changes the function** the network computes (it is not a rescaling); the
    function-preserving alternative is ``init="rescale"`` of the optimizers. It is what
    ``GSGD(..., init="ones")`` (roots included) and ``WeightFixing(..., init="ones")`` (fixed
    entries only) do at construction; use it directly to give another optimizer the same
    starting point (e.g. plain SGD as a control). With a structural strategy
    (``"skeleton"``) the optimizers choose the same entries afterwards.

    Args:
        model: any network :func:`pathcond.rescaling_graph` supports.
        input_shape: one sample's shape (or give ``graph=``).
        value: the value written (finite, non-zero).
        roots: also overwrite the G-space roots (not only the fixed entries).
        strategy: how the fixed entries are chosen (see the module docstring).
        graph: a prebuilt rescaling graph of ``model``.
    """
    if not math.isfinite(value) or value == 0:
        raise ValueError(f"value must be finite and non-zero, got {value}")
    graph = resolve_graph(model, input_shape, graph)
    structure = Structure(model, graph)
    fixed = choose_fixed(structure, strategy)
    slots, indices = [fixed.slot], [fixed.index]
    n_roots = 0
    if roots and graph.num_groups:
        up = choose_upstream(structure, fixed, largest=strategy == "largest")
        slots.append(up.root_slot)
        indices.append(up.root_index)
        n_roots = int(up.root_slot.numel())
    changed = write_entries(structure, torch.cat(slots), torch.cat(indices), value)
    return SkeletonInit(float(value), int(graph.num_groups), n_roots, changed)
