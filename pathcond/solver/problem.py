"""The PathCond criterion of a network, in the reduced form its solvers use (SPEC section 4).

With ``q_i(u) = m_i exp(-2 (B u)_i)`` and ``S(u) = sum_i q_i`` the criterion is (paper eq. 9)

    F(u) = G log S(u) + 2 sum_i (B u)_i = G log(AM(q) / GM(q)) + const.

For a layer with output groups ``r`` and input groups ``c``, every kernel position of the
weight entry ``(k, j)`` carries the same factor ``exp(-2 (u_r(k) - u_c(j)))``, so the
magnitudes are summed over kernel positions once (``M``), and ``S``, the incoming sums
``A_h`` and outgoing sums ``Bo_h`` of every group cost one pass over ``M``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import NonFiniteParameterError
from ..graph import RescalingGraph
from ..lifting import Magnitudes


@dataclass(frozen=True)
class LayerBlock:
    """One layer of the reduced problem. Group index ``H`` stands for "not rescaled"."""

    magnitudes: torch.Tensor  # (out, in) or (out, in_per_group): m summed over the kernel
    bias: torch.Tensor | None  # (out,)
    rows: torch.Tensor  # (out,) group of each output unit
    cols: torch.Tensor  # (1, in) or (out, in_per_group) group of each input unit
    dense: bool  # cols has one row shared by all outputs


@dataclass(frozen=True)
class GroupSums:
    """``S`` and the per-group sums of ``q`` over incoming (``A``) and outgoing (``Bo``)
    parameters at some ``u``, parameters that are both (self-loops) excluded."""

    total: torch.Tensor
    incoming: torch.Tensor
    outgoing: torch.Tensor


@dataclass(frozen=True)
class CoarseLayer:
    """The aggregates (see :attr:`RescalingProblem.aggregates`) of one layer's units.

    ``cols`` is, for a dense layer, the distinct aggregates of its input units and ``onehot``
    the ``(in, k)`` indicator of those (None when ``k = 1``); for a grouped layer, the
    aggregate of every entry, like :attr:`LayerBlock.cols`."""

    rows: torch.Tensor  # (out,)
    cols: torch.Tensor
    onehot: torch.Tensor | None


@dataclass(frozen=True)
class Evaluation:
    """Per-layer sums of ``q`` at one point ``u``: what ``F``, its gradient and its
    curvature are made of."""

    u: torch.Tensor
    row_weights: torch.Tensor  # exp(-2 u), extended by the unscaled group
    col_weights: torch.Tensor  # exp(2 u), extended
    layer_sums: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None], ...]
    total: torch.Tensor  # S(u)
    value: float  # F(u)


@dataclass(frozen=True)
class Curvature:
    """``F``, its gradient, Hessian-vector products, the Hessian's diagonal (without its
    rank-one part) and the Hessian projected on the aggregates (``R H R^T``) at one point,
    for Newton steps."""

    value: torch.Tensor
    gradient: torch.Tensor
    hessian_vector: Callable[[torch.Tensor], torch.Tensor]
    diagonal: torch.Tensor
    coarse: torch.Tensor  # (K, K), K = RescalingProblem.num_aggregates


@dataclass(frozen=True)
class RescalingProblem:
    """Everything the solvers need: reduced magnitudes, parameter counts, the imbalance
    ``a_h = n_in - n_out`` of every group, and the groups whose step is unbounded."""

    graph: RescalingGraph
    layers: tuple[LayerBlock, ...]
    num_parameters: int  # G
    imbalance: torch.Tensor  # (H,) a_h, float
    self_loops: torch.Tensor  # (H,) sum of m over parameters both incoming and outgoing
    dead: torch.Tensor  # (H,) bool
    dead_reasons: tuple[str, ...]  # one per group ("" if alive)
    mean_log_magnitude: float  # over the parameters with m > 0
    num_positive: int
    #: (H,) number of incoming minus outgoing parameters with m > 0 of every group: the
    #: geometric mean of the rescaled magnitudes is exp(mean log m - 2 u . this / num_positive)
    positive_imbalance: torch.Tensor
    #: (H + 1,) aggregate of every group, the unscaled index H and dead groups mapped to
    #: ``num_aggregates`` ("ground"). An aggregate is the set of live groups first produced by
    #: the same layer: the coarse space of the Newton solver's two-level preconditioner.
    aggregates: torch.Tensor
    num_aggregates: int
    coarse_layers: tuple[CoarseLayer, ...]

    @property
    def num_groups(self) -> int:
        """H: the number of rescaling groups (entries of ``u``)."""
        return self.graph.num_groups

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the problem is solved in (float64 unless asked otherwise)."""
        return self.layers[0].magnitudes.dtype

    @property
    def device(self) -> torch.device:
        """The device the problem's tensors live on."""
        return self.layers[0].magnitudes.device

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, graph: RescalingGraph, mags: Magnitudes) -> RescalingProblem:
        """Reduce the magnitudes ``m / N`` of every lifting parameter over kernel positions."""
        h = graph.num_groups
        device, dtype = mags.weights[0].device, mags.weights[0].dtype
        n_in = torch.zeros(h + 1, dtype=torch.int64, device=device)
        n_out = torch.zeros(h + 1, dtype=torch.int64, device=device)
        loops = torch.zeros(h + 1, dtype=dtype, device=device)
        pos_in = torch.zeros(h + 1, dtype=torch.int64, device=device)
        pos_out = torch.zeros(h + 1, dtype=torch.int64, device=device)
        blocks = []
        log_sum, positive = 0.0, 0
        for layer, w, b in zip(graph.layers, mags.weights, mags.biases, strict=True):
            w3 = w.reshape(w.shape[0], w.shape[1], -1)
            reduced = w3.sum(dim=2)  # m >= 0: non-finite exactly when some entry is
            for t in (reduced, b):  # (the total first: one pass where all is finite)
                if (t is not None and not math.isfinite(float(t.sum()))
                        and not bool(torch.isfinite(t).all())):
                    raise NonFiniteParameterError(
                        f"the path magnitudes of layer '{layer.name}' are not finite in "
                        f"{t.dtype}: the parameters span more than its range")
            rows = torch.where(layer.row_groups < 0, h, layer.row_groups).to(device)
            cols = torch.where(layer.col_groups < 0, h, layer.col_groups).to(device)
            kernel = layer.kernel_numel
            n_in.index_add_(0, rows, torch.full_like(rows, kernel * w.shape[1]))
            if cols.shape[0] == 1:  # dense: every input unit meets every output unit
                n_out.index_add_(0, cols[0], torch.full_like(cols[0], kernel * w.shape[0]))
            else:
                n_out.index_add_(0, cols.reshape(-1), torch.full_like(cols.reshape(-1), kernel))
            produced = torch.zeros(h + 1, dtype=torch.bool, device=device)
            produced[rows] = True
            produced[h] = False
            if bool(produced[cols].any()):  # an input unit tied to an output unit: self-loops
                same = (rows.unsqueeze(1) == cols) & (rows.unsqueeze(1) < h)
                loop_rows = rows.unsqueeze(1).expand(reduced.shape)[same]
                loops.index_add_(0, loop_rows, reduced[same])
            if b is not None:
                n_in.index_add_(0, rows, torch.ones_like(rows))
            positive_counts = (w3 > 0).sum(dim=2)
            pos_in.index_add_(0, rows, positive_counts.sum(dim=1))
            if cols.shape[0] == 1:
                pos_out.index_add_(0, cols[0], positive_counts.sum(dim=0))
            else:
                pos_out.index_add_(0, cols.reshape(-1), positive_counts.reshape(-1))
            blocks.append(LayerBlock(reduced, b, rows, cols, dense=cols.shape[0] == 1))
            log_sum += _sum_log_positive(w)
            positive += int(positive_counts.sum())
            if b is not None:
                log_sum += _sum_log_positive(b)
                positive += int((b > 0).sum())
                pos_in.index_add_(0, rows, (b > 0).to(torch.int64))
        num_parameters = graph.num_lifting_parameters
        imbalance = (n_in - n_out)[:h].to(dtype)  # self-loops count in both: they cancel
        positive_imbalance = (pos_in - pos_out)[:h].to(dtype)  # self-loops cancel here too
        dead = torch.zeros(h, dtype=torch.bool, device=device)
        aggregates, count, coarse = _aggregates(graph, tuple(blocks), dead)
        problem = cls(graph, tuple(blocks), num_parameters, imbalance, loops[:h], dead,
                      ("",) * h, log_sum / max(positive, 1), positive, positive_imbalance,
                      aggregates, count, coarse)
        sums = problem.group_sums(torch.zeros(h, dtype=dtype, device=device))
        no_in = (sums.incoming <= 0).cpu()
        no_out = (sums.outgoing <= 0).cpu()
        reasons = tuple(
            "no path magnitude through its incoming parameters (dead unit)" if i else
            "no path magnitude through its outgoing weights (dead unit)" if o else ""
            for i, o in zip(no_in.tolist(), no_out.tolist(), strict=True))
        dead = (no_in | no_out).to(device)
        if bool(dead.any()):
            aggregates, count, coarse = _aggregates(graph, tuple(blocks), dead)
        return cls(graph, tuple(blocks), num_parameters, imbalance, loops[:h], dead, reasons,
                   problem.mean_log_magnitude, positive, positive_imbalance, aggregates, count,
                   coarse)

    # ------------------------------------------------------------- evaluation
    def _extended(self, u: torch.Tensor) -> torch.Tensor:
        return torch.cat([u, u.new_zeros(1)])

    def evaluate(self, u: torch.Tensor) -> Evaluation:
        """The per-layer row sums, column sums and bias terms of ``q = r M c`` at ``u``
        (``r = exp(-2 u_rows)``, ``c = exp(2 u_cols)``: two matrix-vector products per dense
        layer), their total ``S`` and ``F(u)``."""
        ext = self._extended(u)
        row_w = torch.exp(-2.0 * ext)
        col_w = torch.exp(2.0 * ext)
        total = u.new_zeros(())
        layer_sums = []
        for blk in self.layers:
            r = row_w[blk.rows]
            row_sums, col_sums = self._row_col_sums(blk, r, col_w)
            qb = None if blk.bias is None else blk.bias * r
            layer_sums.append((row_sums, col_sums, qb))
            total = total + (row_sums.sum() if qb is None else row_sums.sum() + qb.sum())
        value = float((self.num_parameters * torch.log(total)
                       + 2.0 * (self.imbalance * u).sum()).detach())
        return Evaluation(u, row_w, col_w, tuple(layer_sums), total, value)

    def group_sums(self, u: torch.Tensor) -> GroupSums:
        """``S``, ``A`` and ``Bo`` at ``u``: ``A = r * (M c)`` and ``Bo = c * (M^T r)``."""
        h = self.num_groups
        ev = self.evaluate(u)
        incoming = torch.zeros(h + 1, dtype=u.dtype, device=u.device)
        outgoing = torch.zeros(h + 1, dtype=u.dtype, device=u.device)
        for blk, (row_sums, col_sums, qb) in zip(self.layers, ev.layer_sums, strict=True):
            incoming.index_add_(0, blk.rows, row_sums if qb is None else row_sums + qb)
            outgoing.index_add_(0, blk.cols.reshape(-1), col_sums)
        return GroupSums(ev.total, incoming[:h] - self.self_loops,
                         outgoing[:h] - self.self_loops)

    @staticmethod
    def _row_col_sums(blk: LayerBlock, r: torch.Tensor, col_w: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Row sums and column sums (aligned with ``blk.cols``) of ``q = r M c``."""
        if blk.dense:
            c = col_w[blk.cols[0]]
            return r * (blk.magnitudes @ c), c * (blk.magnitudes.t() @ r)
        q = blk.magnitudes * col_w[blk.cols] * r.unsqueeze(1)
        return q.sum(dim=1), q.reshape(-1)

    def criterion(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``F(u) = G log S + 2 sum_h a_h u_h`` (paper eq. 9) and its gradient
        ``G (2 Bo - 2 A) / S + 2 a``."""
        sums = self.group_sums(u)
        g = float(self.num_parameters)
        value = g * torch.log(sums.total) + 2.0 * (self.imbalance * u).sum()
        grad = g * 2.0 * (sums.outgoing - sums.incoming) / sums.total + 2.0 * self.imbalance
        return value, grad

    def value(self, u: torch.Tensor) -> float:
        """``F(u)`` alone."""
        return self.evaluate(u).value

    def normalised(self, value: torch.Tensor | float) -> float:
        """``F / G - log G - mean(log m)``: equals ``log(AM(q) / GM(q))`` when every ``m > 0``."""
        g = float(self.num_parameters)
        return float(value) / g - math.log(g) - self.mean_log_magnitude

    def am_gm(self, u: torch.Tensor, value: float | None = None) -> float:
        """Arithmetic over geometric mean of the rescaled magnitudes ``q_i``, ``m_i > 0``:
        ``log GM(q) = mean log m - 2 u . (positive incoming - positive outgoing) / count``.
        ``value``, the criterion ``F(u)`` if known, saves evaluating ``S(u)``."""
        if value is None:
            value = self.value(u)
        shift = float((self.imbalance * u).sum())
        log_total = (float(value) - 2.0 * shift) / self.num_parameters
        p = max(self.num_positive, 1)
        log_gm = self.mean_log_magnitude - 2.0 * float((self.positive_imbalance * u).sum()) / p
        return math.exp(log_total - math.log(p) - log_gm)

    def curvature(self, u: torch.Tensor, evaluation: Evaluation | None = None) -> Curvature:
        """Gradient of ``F`` at ``u`` and a closure for Hessian-vector products:
        ``grad = -2 G B^T q / S + 2 a``,
        ``H v = 4 G (B^T (q * B v) / S - (B^T q)(B^T q . v) / S^2)``.

        For a dense layer ``q = diag(r) M diag(c)`` and ``(B v)_kj = v_k - v_j``, so
        ``B^T (q * B v)`` needs only the matrix-vector products ``M (c v)`` and
        ``M^T (r v)``: ``q`` is never formed. ``evaluation`` (of the same ``u``, from
        :meth:`evaluate`) saves recomputing the sums."""
        h = self.num_groups
        ev = self.evaluate(u) if evaluation is None else evaluation
        row_w, col_w, cached, total = ev.row_weights, ev.col_weights, ev.layer_sums, ev.total
        flow = torch.zeros(h + 1, dtype=u.dtype, device=u.device)  # B^T q
        diag = torch.zeros(h + 1, dtype=u.dtype, device=u.device)
        for blk, (row_sums, col_sums, qb) in zip(self.layers, cached, strict=True):
            row_all = row_sums if qb is None else row_sums + qb
            cols = blk.cols.reshape(-1)
            flow.index_add_(0, blk.rows, row_all)
            flow.index_add_(0, cols, -col_sums)
            diag.index_add_(0, blk.rows, row_all)
            diag.index_add_(0, cols, col_sums)
        g = float(self.num_parameters)
        flow_h = flow[:h]
        grad = -2.0 * g * flow_h / total + 2.0 * self.imbalance
        value = torch.as_tensor(ev.value, dtype=u.dtype, device=u.device)

        def hessian_vector(v: torch.Tensor) -> torch.Tensor:
            vext = torch.cat([v, v.new_zeros(1)])
            out = torch.zeros(h + 1, dtype=v.dtype, device=v.device)
            for blk, (row_sums, col_sums, qb) in zip(self.layers, cached, strict=True):
                vr = vext[blk.rows]
                r = row_w[blk.rows]
                if blk.dense:
                    c = col_w[blk.cols[0]]
                    vc = vext[blk.cols[0]]
                    q_vc = r * (blk.magnitudes @ (c * vc))  # (q v_c) per row
                    qt_vr = c * (blk.magnitudes.t() @ (r * vr))  # (q^T v_r) per column
                    row_part = row_sums * vr - q_vc
                    col_part = qt_vr - col_sums * vc
                else:
                    q = blk.magnitudes * col_w[blk.cols] * r.unsqueeze(1)
                    weighted = q * (vr.unsqueeze(1) - vext[blk.cols])
                    row_part = weighted.sum(dim=1)
                    col_part = weighted.reshape(-1)
                if qb is not None:
                    row_part = row_part + qb * vr
                out.index_add_(0, blk.rows, row_part)
                out.index_add_(0, blk.cols.reshape(-1), -col_part)
            return 4.0 * g * (out[:h] / total - flow_h * (flow_h @ v) / total**2)

        precondition = 4.0 * g * (diag[:h] - 2.0 * self.self_loops) / total
        return Curvature(value, grad, hessian_vector, precondition,
                         self._coarse_hessian(ev, flow_h))

    def _coarse_hessian(self, ev: Evaluation, flow: torch.Tensor) -> torch.Tensor:
        """``R H R^T`` with ``R`` the (K, H) aggregation matrix: ``R B^T diag(q) B R^T`` is
        the Laplacian of the aggregates weighted by the ``q`` joining them (ground dropped),
        and ``R f`` the aggregated flow ``f = B^T q``."""
        k = self.num_aggregates
        u = ev.u
        pair_keys, pair_weights = [], []
        for blk, coarse, (row_sums, col_sums, qb) in zip(self.layers, self.coarse_layers,
                                                         ev.layer_sums, strict=True):
            if not blk.dense:  # the column sums of a grouped layer are q itself, flattened
                pair_keys.append((coarse.rows.unsqueeze(1) * (k + 1) + coarse.cols).reshape(-1))
                pair_weights.append(col_sums)
            elif coarse.onehot is None:
                pair_keys.append(coarse.rows * (k + 1) + coarse.cols)
                pair_weights.append(row_sums)
            else:
                r = ev.row_weights[blk.rows]
                c = ev.col_weights[blk.cols[0]]
                by_col = r.unsqueeze(1) * (blk.magnitudes @ (c.unsqueeze(1) * coarse.onehot))
                pair_keys.append((coarse.rows.unsqueeze(1) * (k + 1) + coarse.cols).reshape(-1))
                pair_weights.append(by_col.reshape(-1))
            if qb is not None:
                pair_keys.append(coarse.rows * (k + 1) + k)
                pair_weights.append(qb)
        weights = torch.zeros((k + 1) * (k + 1), dtype=u.dtype, device=u.device)
        weights.index_add_(0, torch.cat(pair_keys), torch.cat(pair_weights))
        w = weights.reshape(k + 1, k + 1)
        w = w + w.t()
        w.fill_diagonal_(0.0)
        laplacian = torch.diag(w.sum(dim=1)) - w
        coarse_flow = torch.zeros(k + 1, dtype=u.dtype, device=u.device)
        coarse_flow.index_add_(0, self.aggregates[:-1], flow)
        lap, cf = laplacian[:k, :k], coarse_flow[:k]
        g = float(self.num_parameters)
        return 4.0 * g * (lap / ev.total - torch.outer(cf, cf) / ev.total**2)


_LOG_BLOCK = 16
_SMALLEST_NORMAL = torch.finfo(torch.float64).tiny


def _sum_log_positive(t: torch.Tensor) -> float:
    """``sum(log t_i)`` over the entries ``t_i > 0`` of a non-negative tensor, as the logs of
    products of blocks of 16 entries (a log is several times dearer than a product); a block
    whose product is zero, subnormal or infinite is summed entry by entry."""
    flat = t.reshape(-1)
    whole = flat.numel() // _LOG_BLOCK * _LOG_BLOCK
    blocks = flat[:whole].reshape(-1, _LOG_BLOCK)
    products = blocks.prod(dim=1)
    tiny = max(_SMALLEST_NORMAL, torch.finfo(t.dtype).tiny)
    normal = (products >= tiny) & (products < math.inf)
    total = float(torch.where(normal, products, 1.0).log().sum())
    rest = [blocks[~normal].reshape(-1), flat[whole:]]
    for part in rest:
        if part.numel():
            total += float(torch.where(part > 0, part, 1.0).log().sum())
    return total


def _aggregates(graph: RescalingGraph, blocks: tuple[LayerBlock, ...], dead: torch.Tensor
                ) -> tuple[torch.Tensor, int, tuple[CoarseLayer, ...]]:
    """The aggregate of every live group: the index of the first layer producing one of its
    units, renumbered ``0..K-1``; dead groups and the unscaled index ``H`` map to ``K``."""
    h = graph.num_groups
    device = dead.device
    first = torch.tensor([min(li for li, _ in members) for members in graph.group_members],
                         dtype=torch.int64)
    alive = ~dead.cpu()
    labels, index = torch.unique(first[alive], return_inverse=True)
    k = int(labels.numel())
    agg = torch.full((h + 1,), k, dtype=torch.int64)
    agg[:h][alive] = index
    agg = agg.to(device)
    coarse = []
    for blk in blocks:
        rows = agg[blk.rows]
        if not blk.dense:
            coarse.append(CoarseLayer(rows, agg[blk.cols], None))
            continue
        col_agg = agg[blk.cols[0]]
        distinct, position = torch.unique(col_agg, return_inverse=True)
        if distinct.numel() == 1:  # the usual case: the row sums are the pair weights
            coarse.append(CoarseLayer(rows, distinct.expand(rows.shape), None))
            continue
        onehot = torch.zeros((col_agg.numel(), distinct.numel()), dtype=blk.magnitudes.dtype,
                             device=device)
        onehot[torch.arange(col_agg.numel(), device=device), position] = 1.0
        coarse.append(CoarseLayer(rows, distinct, onehot))
    return agg, k, tuple(coarse)
