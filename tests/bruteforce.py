"""Independent brute-force path enumeration for small ReLU networks (SPEC sections 1 and 3).

Nothing here uses ``pathcond``. A network is rewritten by hand, layer by layer, as an explicit
unit-level DAG (:class:`UnitDAG`): one node per scalar unit of every intermediate tensor of
one sample, edges labelled either by a parameter entry ``(name, index)`` or by a constant.
The DAG can be *evaluated* on an input (ReLU / LeakyReLU / max nodes applied), which checks
that it describes the same function as the PyTorch model; its paths (from every input unit
and every bias to every output unit) are *enumerated* one by one, and path-norms, the number
of paths and the path magnitudes are computed from that list:

    Phi_p = prod of the factors of path p,
    ||Phi||_q = (sum_p |Phi_p|^q)^(1/q),
    m_i = sum_{p through i} prod_{j in p, j != i} factor_j^2     (constants included).

BatchNorm layers directly after a Linear/Conv are used in their eval-mode fold
``W' = (gamma / sigma) W``, ``b' = beta + gamma (b - mu) / sigma``; the folded weight is keyed
``<layer>.weight`` and the folded bias ``<batchnorm>.bias``.

The module also holds :class:`SpecNet`, small random architectures described by an
:class:`Arch`, their hand-written DAG (:func:`spec_dag`) and hypothesis strategies for them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

ONE = 0  # the node every bias edge starts from

ParamKey = tuple[str, tuple[int, ...]]


def _tup(value: int | Sequence[int], dims: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    return tuple(int(v) for v in value)


def fold(model: nn.Module, layer: str, bn: str | None = None
         ) -> tuple[torch.Tensor, torch.Tensor | None, str | None]:
    """Eval-mode affine form of ``layer`` (optionally followed by BatchNorm ``bn``):
    ``(weight, bias, bias_key)`` in float64."""
    module = model.get_submodule(layer)
    w = module.weight.detach().to(torch.float64).clone()
    b = None if module.bias is None else module.bias.detach().to(torch.float64).clone()
    if bn is None:
        return w, b, (None if b is None else f"{layer}.bias")
    norm = model.get_submodule(bn)
    mu = norm.running_mean.detach().to(torch.float64)
    sigma = torch.sqrt(norm.running_var.detach().to(torch.float64) + norm.eps)
    gamma = norm.weight.detach().to(torch.float64) if norm.affine else torch.ones_like(mu)
    beta = norm.bias.detach().to(torch.float64) if norm.affine else torch.zeros_like(mu)
    factor = gamma / sigma
    w_f = w * factor.reshape(-1, *([1] * (w.dim() - 1)))
    b0 = torch.zeros_like(mu) if b is None else b
    return w_f, beta + factor * (b0 - mu), f"{bn}.bias"


def pool_output_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's ``pooling_output_shape``."""
    num = size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


@dataclass
class UnitDAG:
    """A network as a DAG of scalar units; node ids are in topological order."""

    kind: list[str] = field(default_factory=lambda: ["one"])
    slope: list[float] = field(default_factory=lambda: [0.0])
    in_edges: list[list[tuple[int, ParamKey | None, float]]] = field(
        default_factory=lambda: [[]])
    params: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: np.ndarray | None = None
    outputs: list[np.ndarray] = field(default_factory=list)

    # ----------------------------------------------------------- construction
    def _node(self, kind: str, edges: list[tuple[int, ParamKey | None, float]],
              slope: float = 0.0) -> int:
        self.kind.append(kind)
        self.slope.append(slope)
        self.in_edges.append(edges)
        return len(self.kind) - 1

    def input(self, shape: Sequence[int]) -> np.ndarray:
        n = math.prod(shape)
        ids = np.array([self._node("input", []) for _ in range(n)], dtype=np.int64)
        self.inputs = ids.reshape(tuple(shape))
        return self.inputs

    def _register(self, key: str | None, value: torch.Tensor | None) -> None:
        if key is not None and value is not None:
            assert key not in self.params, f"parameter {key} used twice"
            self.params[key] = value.detach().to(torch.float64).numpy().copy()

    def linear(self, x: np.ndarray, model: nn.Module, name: str, bn: str | None = None
               ) -> np.ndarray:
        w, b, bkey = fold(model, name, bn)
        wkey = f"{name}.weight"
        self._register(wkey, w)
        self._register(bkey, b)
        assert x.ndim == 1 and w.shape[1] == x.shape[0]
        out = []
        for k in range(w.shape[0]):
            edges: list[tuple[int, ParamKey | None, float]] = [
                (int(x[j]), (wkey, (k, j)), 1.0) for j in range(x.shape[0])]
            if b is not None:
                edges.append((ONE, (bkey, (k,)), 1.0))
            out.append(self._node("sum", edges))
        return np.array(out, dtype=np.int64)

    def _conv_geometry(self, x: np.ndarray, module: nn.Module, name: str, w: torch.Tensor,
                       b: torch.Tensor | None, bkey: str | None
                       ) -> tuple[str, int, tuple[int, ...], tuple[int, ...], tuple[int, ...],
                                  tuple[int, ...]]:
        """Register a (transposed) convolution's parameters; its weight key, number of
        spatial dimensions, kernel, stride, padding and dilation."""
        wkey = f"{name}.weight"
        self._register(wkey, w)
        self._register(bkey, b)
        dims = w.dim() - 2
        assert x.ndim == dims + 1
        return (wkey, dims, tuple(w.shape[2:]), _tup(module.stride, dims),
                _tup(module.padding, dims), _tup(module.dilation, dims))

    def conv(self, x: np.ndarray, model: nn.Module, name: str, bn: str | None = None
             ) -> np.ndarray:
        module = model.get_submodule(name)
        w, b, bkey = fold(model, name, bn)
        wkey, dims, kernel, stride, padding, dilation = self._conv_geometry(
            x, module, name, w, b, bkey)
        groups = module.groups
        c_out, in_per_group = w.shape[0], w.shape[1]
        out_per_group = c_out // groups
        spatial = x.shape[1:]
        out_sp = tuple((spatial[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1)
                       // stride[i] + 1 for i in range(dims))
        out = np.zeros((c_out, *out_sp), dtype=np.int64)
        for c in range(c_out):
            g = c // out_per_group
            for pos in itertools.product(*map(range, out_sp)):
                edges: list[tuple[int, ParamKey | None, float]] = []
                for dl in range(in_per_group):
                    d = g * in_per_group + dl
                    for off in itertools.product(*map(range, kernel)):
                        ipos = tuple(pos[i] * stride[i] - padding[i] + off[i] * dilation[i]
                                     for i in range(dims))
                        if all(0 <= ipos[i] < spatial[i] for i in range(dims)):
                            edges.append((int(x[(d, *ipos)]), (wkey, (c, dl, *off)), 1.0))
                if b is not None:
                    edges.append((ONE, (bkey, (c,)), 1.0))
                out[(c, *pos)] = self._node("sum", edges)
        return out

    def conv_transpose(self, x: np.ndarray, model: nn.Module, name: str, bn: str | None = None,
                       output_size: Sequence[int] | None = None) -> np.ndarray:
        """``nn.ConvTransposeNd`` (optionally followed by BatchNorm ``bn``), unit by unit:
        input ``(d, ipos)`` feeds output ``(c, ipos * stride - padding + off * dilation)``
        through ``weight[d, c % out_per_group, *off]``, ``d`` and ``c`` in the same group."""
        module = model.get_submodule(name)
        w = module.weight.detach().to(torch.float64).clone()
        b = None if module.bias is None else module.bias.detach().to(torch.float64).clone()
        bkey = None if b is None else f"{name}.bias"
        in_c, out_per_group = w.shape[0], w.shape[1]
        groups = module.groups
        in_per_group = in_c // groups
        group_of_input = torch.arange(in_c) // in_per_group
        out_channel = group_of_input.unsqueeze(1) * out_per_group + torch.arange(out_per_group)
        if bn is not None:  # the BatchNorm scales output channel c: weight[:, c % opg]
            norm = model.get_submodule(bn)
            sigma = torch.sqrt(norm.running_var.detach().to(torch.float64) + norm.eps)
            gamma = (norm.weight.detach().to(torch.float64) if norm.affine
                     else torch.ones_like(sigma))
            w = w * (gamma / sigma)[out_channel].reshape(in_c, out_per_group,
                                                         *([1] * (w.dim() - 2)))
            beta = norm.bias.detach().to(torch.float64) if norm.affine else 0.0 * sigma
            mu = norm.running_mean.detach().to(torch.float64)
            b = beta + gamma / sigma * ((0.0 if b is None else b) - mu)
            bkey = f"{bn}.bias"
        wkey, dims, kernel, stride, padding, dilation = self._conv_geometry(
            x, module, name, w, b, bkey)
        spatial = x.shape[1:]
        natural = tuple((spatial[i] - 1) * stride[i] - 2 * padding[i]
                        + dilation[i] * (kernel[i] - 1) + 1 for i in range(dims))
        if output_size is None:
            out_sp = tuple(n + p for n, p in zip(natural, _tup(module.output_padding, dims),
                                                 strict=True))
        else:
            out_sp = tuple(output_size)
        edges: dict[tuple[int, ...], list[tuple[int, ParamKey | None, float]]] = {
            (c, *pos): [] for c in range(out_per_group * groups)
            for pos in itertools.product(*map(range, out_sp))}
        for d in range(in_c):
            for j in range(out_per_group):
                c = int(out_channel[d, j])
                for ipos in itertools.product(*map(range, spatial)):
                    for off in itertools.product(*map(range, kernel)):
                        opos = tuple(ipos[i] * stride[i] - padding[i] + off[i] * dilation[i]
                                     for i in range(dims))
                        if all(0 <= opos[i] < out_sp[i] for i in range(dims)):
                            edges[(c, *opos)].append((int(x[(d, *ipos)]),
                                                      (wkey, (d, j, *off)), 1.0))
        out = np.zeros((out_per_group * groups, *out_sp), dtype=np.int64)
        for key, incoming in edges.items():
            if b is not None:
                incoming.append((ONE, (bkey, (key[0],)), 1.0))
            out[key] = self._node("sum", incoming)
        return out

    def relu(self, x: np.ndarray, slope: float = 0.0) -> np.ndarray:
        flat = [self._node("relu", [(int(i), None, 1.0)], slope) for i in x.reshape(-1)]
        return np.array(flat, dtype=np.int64).reshape(x.shape)

    def scale(self, x: np.ndarray, factor: float) -> np.ndarray:
        flat = [self._node("sum", [(int(i), None, factor)]) for i in x.reshape(-1)]
        return np.array(flat, dtype=np.int64).reshape(x.shape)

    def add(self, a: np.ndarray, b: np.ndarray, sign: float = 1.0) -> np.ndarray:
        assert a.shape == b.shape
        flat = [self._node("sum", [(int(i), None, 1.0), (int(j), None, sign)])
                for i, j in zip(a.reshape(-1), b.reshape(-1), strict=True)]
        return np.array(flat, dtype=np.int64).reshape(a.shape)

    @staticmethod
    def select(x: np.ndarray, index: object) -> np.ndarray:
        """``x[index]`` per sample (numpy indexing, the same as torch's for static indices):
        the same units, moved; units left out have no edge onward."""
        return np.asarray(x[index])  # type: ignore[index]

    def zero_pad(self, x: np.ndarray, pad: Sequence[int]) -> np.ndarray:
        """``F.pad(x, pad)`` per sample (pairs from the last dimension; negative amounts
        crop): every new entry is a fresh unit with no incoming edge, constant 0."""
        out = x
        for i in range(len(pad) // 2):
            axis = x.ndim - 1 - i
            before, after = pad[2 * i], pad[2 * i + 1]
            crop = [slice(None)] * out.ndim
            crop[axis] = slice(max(0, -before), out.shape[axis] - max(0, -after))
            out = out[tuple(crop)]
            widths = [(0, 0)] * out.ndim
            widths[axis] = (max(0, before), max(0, after))
            out = np.pad(out, widths, constant_values=-1)
        out = out.copy()
        for pos in zip(*np.nonzero(out == -1), strict=True):
            out[pos] = self._node("sum", [])
        return out

    def interpolate(self, x: np.ndarray, matrices: Sequence[np.ndarray]) -> np.ndarray:
        """A separable per-channel linear map: output ``(c, i, j)`` sums input ``(c, a, b)``
        with coefficient ``R_1[i, a] * R_2[j, b]`` (edges only where it is non-zero)."""
        out_sp = tuple(r.shape[0] for r in matrices)
        out = np.zeros((x.shape[0], *out_sp), dtype=np.int64)
        for c in range(x.shape[0]):
            for pos in itertools.product(*map(range, out_sp)):
                edges: list[tuple[int, ParamKey | None, float]] = []
                for ipos in itertools.product(*map(range, x.shape[1:])):
                    coef = math.prod(float(r[o, i]) for r, o, i in zip(matrices, pos, ipos,
                                                                      strict=True))
                    if coef != 0.0:
                        edges.append((int(x[(c, *ipos)]), None, coef))
                out[(c, *pos)] = self._node("sum", edges)
        return out

    @staticmethod
    def permute(x: np.ndarray, dims: Sequence[int]) -> np.ndarray:
        """``x.permute`` per sample: the same units, moved."""
        return np.transpose(x, tuple(dims))

    @staticmethod
    def cat(xs: Sequence[np.ndarray], dim: int) -> np.ndarray:
        """``torch.cat`` along per-sample dimension ``dim``: the same units, moved."""
        return np.concatenate(list(xs), axis=dim)

    def _windows(self, x: np.ndarray, kind: str, windows_per_axis: list[list[list[int]]],
                 coefficient) -> np.ndarray:
        out_sp = tuple(len(w) for w in windows_per_axis)
        out = np.zeros((x.shape[0], *out_sp), dtype=np.int64)
        for c in range(x.shape[0]):
            for pos in itertools.product(*map(range, out_sp)):
                members = itertools.product(*(windows_per_axis[a][pos[a]]
                                              for a in range(len(pos))))
                coef = coefficient(pos)
                edges: list[tuple[int, ParamKey | None, float]] = [
                    (int(x[(c, *ipos)]), None, coef) for ipos in members]
                out[(c, *pos)] = self._node(kind, edges)
        return out

    def maxpool(self, x: np.ndarray, kernel_size, stride=None, padding=0, dilation=1,
                ceil_mode: bool = False) -> np.ndarray:
        """Max-pool: an edge of weight 1 from every (non-padding) input of the window."""
        dims = x.ndim - 1
        k = _tup(kernel_size, dims)
        s = _tup(stride if stride not in (None, []) else kernel_size, dims)
        p, d = _tup(padding, dims), _tup(dilation, dims)
        windows = []
        for a in range(dims):
            n_out = pool_output_size(x.shape[1 + a], k[a], s[a], p[a], d[a], ceil_mode)
            windows.append([[o * s[a] - p[a] + i * d[a] for i in range(k[a])
                             if 0 <= o * s[a] - p[a] + i * d[a] < x.shape[1 + a]]
                            for o in range(n_out)])
        return self._windows(x, "max", windows, lambda pos: 1.0)

    def avgpool(self, x: np.ndarray, kernel_size, stride=None, padding=0,
                ceil_mode: bool = False, count_include_pad: bool = True,
                divisor_override: int | None = None) -> np.ndarray:
        """Average pool with PyTorch's divisor: the window clipped to the padded input when
        ``count_include_pad``, to the input otherwise, or ``divisor_override``."""
        dims = x.ndim - 1
        k = _tup(kernel_size, dims)
        s = _tup(stride if stride not in (None, []) else kernel_size, dims)
        p = _tup(padding, dims)
        windows, padded_sizes, real_sizes = [], [], []
        for a in range(dims):
            size = x.shape[1 + a]
            n_out = pool_output_size(size, k[a], s[a], p[a], 1, ceil_mode)
            wins, padded, real = [], [], []
            for o in range(n_out):
                start = o * s[a] - p[a]
                end = min(start + k[a], size + p[a])
                padded.append(end - start)
                lo, hi = max(start, 0), min(end, size)
                wins.append(list(range(lo, hi)))
                real.append(hi - lo)
            windows.append(wins)
            padded_sizes.append(padded)
            real_sizes.append(real)

        def coefficient(pos: tuple[int, ...]) -> float:
            if divisor_override:
                return 1.0 / divisor_override
            sizes = padded_sizes if count_include_pad else real_sizes
            return 1.0 / math.prod(sizes[a][pos[a]] for a in range(dims))

        return self._windows(x, "sum", windows, coefficient)

    @staticmethod
    def _adaptive_windows(x: np.ndarray, output_size) -> list[list[list[int]]]:
        dims = x.ndim - 1
        out = _tup(output_size, dims)
        windows = []
        for a in range(dims):
            n_in = x.shape[1 + a]
            windows.append([list(range((o * n_in) // out[a], -((-(o + 1) * n_in) // out[a])))
                            for o in range(out[a])])
        return windows

    def adaptive_avgpool(self, x: np.ndarray, output_size) -> np.ndarray:
        windows = self._adaptive_windows(x, output_size)
        return self._windows(
            x, "sum", windows,
            lambda pos: 1.0 / math.prod(len(w[p]) for w, p in zip(windows, pos, strict=True)))

    def adaptive_maxpool(self, x: np.ndarray, output_size) -> np.ndarray:
        """Adaptive max-pool: an edge of weight 1 from every input of the window."""
        return self._windows(x, "max", self._adaptive_windows(x, output_size), lambda pos: 1.0)

    def mean(self, x: np.ndarray, dims: Sequence[int], keepdim: bool = False) -> np.ndarray:
        """``x.mean(dims)`` over per-sample dimensions ``dims``."""
        dims = sorted(dims)
        kept = [a for a in range(x.ndim) if a not in dims]
        moved = np.transpose(x, kept + dims)
        count = math.prod(x.shape[a] for a in dims)
        flat = moved.reshape(-1, count)
        out = np.array([self._node("sum", [(int(i), None, 1.0 / count) for i in row])
                        for row in flat], dtype=np.int64)
        shape = [x.shape[a] for a in kept]
        if keepdim:
            shape = [1 if a in dims else x.shape[a] for a in range(x.ndim)]
        return out.reshape(shape)

    def output(self, *xs: np.ndarray) -> None:
        self.outputs = list(xs)

    # ------------------------------------------------------------- evaluation
    def evaluate(self, sample: torch.Tensor) -> list[torch.Tensor]:
        """The network's outputs on one sample (no batch dimension), unit by unit."""
        assert self.inputs is not None
        values = [0.0] * len(self.kind)
        values[ONE] = 1.0
        flat_in = sample.detach().to(torch.float64).reshape(-1).tolist()
        for node, v in zip(self.inputs.reshape(-1), flat_in, strict=True):
            values[int(node)] = v
        for node in range(1, len(self.kind)):
            kind = self.kind[node]
            if kind == "input":
                continue
            terms = [values[src] * const * (1.0 if key is None else float(self.params[key[0]][
                key[1]])) for src, key, const in self.in_edges[node]]
            if kind == "sum":
                values[node] = math.fsum(terms)
            elif kind == "max":
                values[node] = max(terms)
            elif kind == "relu":
                t = terms[0]
                values[node] = t if t > 0 else self.slope[node] * t
            else:  # pragma: no cover
                raise AssertionError(kind)
        return [torch.tensor([values[int(i)] for i in ids.reshape(-1)],
                             dtype=torch.float64).reshape(ids.shape) for ids in self.outputs]

    # ------------------------------------------------------------ enumeration
    def _out_edges(self) -> list[list[tuple[int, ParamKey | None, float]]]:
        out: list[list[tuple[int, ParamKey | None, float]]] = [[] for _ in self.kind]
        for dst, edges in enumerate(self.in_edges):
            for src, key, const in edges:
                out[src].append((dst, key, const))
        return out

    def _sources(self) -> list[int]:
        assert self.inputs is not None
        return [ONE, *(int(i) for i in self.inputs.reshape(-1))]

    def count_paths(self) -> int:
        """Number of paths by dynamic programming (cheap; to size examples before
        enumerating)."""
        out_edges = self._out_edges()
        is_out = {int(i) for ids in self.outputs for i in ids.reshape(-1)}
        # through[n] = number of paths from n to an output unit
        through = [0] * len(self.kind)
        for node in range(len(self.kind) - 1, -1, -1):
            through[node] = (1 if node in is_out else 0) + sum(
                through[dst] for dst, _, _ in out_edges[node])
        total = sum(through[s] for s in self._sources() if s != ONE)
        total += sum(through[dst] for dst, _, _ in out_edges[ONE])  # paths start at a bias
        return total

    def paths(self) -> list[tuple[tuple[ParamKey, ...], float]]:
        """Every path as (its parameter entries in order, product of its constants)."""
        out_edges = self._out_edges()
        is_out = {int(i) for ids in self.outputs for i in ids.reshape(-1)}
        found: list[tuple[tuple[ParamKey, ...], float]] = []
        keys: list[ParamKey] = []

        def dfs(node: int, const: float) -> None:
            if node in is_out:
                found.append((tuple(keys), const))
            for dst, key, c in out_edges[node]:
                if key is not None:
                    keys.append(key)
                dfs(dst, const * c)
                if key is not None:
                    keys.pop()

        for source in self._sources():
            if source == ONE:
                for dst, key, c in out_edges[ONE]:  # a bias is a path's first factor
                    assert key is not None
                    keys.append(key)
                    dfs(dst, c)
                    keys.pop()
            else:
                dfs(source, 1.0)
        return found


@dataclass(frozen=True)
class BruteForce:
    """Path-lifting quantities computed path by path."""

    num_paths: int
    norm1: float
    norm2: float
    magnitudes: dict[str, torch.Tensor]
    values: list[float]

    def norm(self, q: float) -> float:
        return math.fsum(abs(v) ** q for v in self.values) ** (1.0 / q)


def brute_force(dag: UnitDAG) -> BruteForce:
    """Enumerate every path of ``dag`` and compute the path-lifting quantities from the list."""
    mags = {k: np.zeros_like(v) for k, v in dag.params.items()}
    values: list[float] = []
    for keys, const in dag.paths():
        factors = [float(dag.params[name][idx]) for name, idx in keys]
        assert len(set(keys)) == len(keys), "a parameter appears twice on one path"
        value = const
        for f in factors:
            value *= f
        values.append(value)
        for i, (name, idx) in enumerate(keys):
            others = const * const
            for j, f in enumerate(factors):
                if j != i:
                    others *= f * f
            mags[name][idx] += others
    return BruteForce(
        num_paths=len(values),
        norm1=math.fsum(abs(v) for v in values),
        norm2=math.sqrt(math.fsum(v * v for v in values)),
        magnitudes={k: torch.from_numpy(v) for k, v in mags.items()},
        values=values,
    )


def check_dag_matches_model(dag: UnitDAG, model: nn.Module, input_shape: Sequence[int],
                            samples: int = 2, seed: int = 0) -> None:
    """Assert that the hand-written DAG computes the model's function (eval mode)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((samples, *input_shape), generator=gen, dtype=torch.float64)
    was = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for m, flag in was.items():
            m.training = flag
    outs = list(out) if isinstance(out, tuple | list) else [out]
    assert len(outs) == len(dag.outputs)
    for n in range(samples):
        got = dag.evaluate(x[n])
        for g, o in zip(got, outs, strict=True):
            torch.testing.assert_close(g, o[n], rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- random nets
def randomize_batchnorm(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial running statistics and affine parameters for every BatchNorm."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                dt = m.running_mean.dtype
                m.running_mean.copy_(torch.randn(n, generator=gen, dtype=dt))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=gen, dtype=dt))
                if m.affine:
                    sign = torch.where(torch.rand(n, generator=gen) < 0.2, -1.0, 1.0)
                    m.weight.copy_(sign.to(dt) * (0.5 + torch.rand(n, generator=gen, dtype=dt)))
                    m.bias.copy_(torch.randn(n, generator=gen, dtype=dt))
                m.num_batches_tracked.fill_(7)


def randomize_parameters(model: nn.Module, gen: torch.Generator, scale: float = 1.0) -> None:
    """Gaussian weights and biases (std ``scale / sqrt(fan_in)``) for Linear/Conv layers."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen,
                                           dtype=m.weight.dtype) * scale / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=gen,
                                                   dtype=m.bias.dtype))


def linear_weights(n_in: int, n_out: int, align_corners: bool) -> np.ndarray:
    """The ``(n_out, n_in)`` matrix of 1-D linear interpolation (PyTorch's convention: pixel
    centres, or corners aligned), written from the formula."""
    r = np.zeros((n_out, n_in))
    for i in range(n_out):
        if align_corners:
            src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = min(int(math.floor(src)), n_in - 1)
        hi = min(lo + 1, n_in - 1)
        frac = src - lo
        r[i, lo] += 1.0 - frac
        r[i, hi] += frac
    return r


@dataclass(frozen=True)
class Arch:
    """A small random architecture: MLP or 2-D conv net, optional BatchNorm and residual
    blocks per hidden layer."""

    kind: str  # "mlp" | "conv"
    in_shape: tuple[int, ...]
    widths: tuple[int, ...]
    bias: tuple[bool, ...]  # per hidden layer, then the output layer
    batchnorm: tuple[bool, ...]  # per hidden layer
    residual: tuple[bool, ...]  # per hidden layer: a residual block after it
    pool: tuple[str, ...] = ()  # conv: per hidden layer, "none" | "max" | "avg"
    stride: tuple[int, ...] = ()  # conv: per hidden layer
    head: str = "flatten"  # conv: "flatten" | "mean" | "adaptive"
    leaky: bool = False
    out: int = 2
    # conv, per hidden layer with a residual block: 0 for an identity shortcut, or the number
    # of channels the block adds, with an "option A" shortcut (x[:, :, ::2, ::2] zero-padded
    # with that many channels) beside a stride-2 branch
    widen: tuple[int, ...] = ()
    # conv, per hidden layer: "none", or an upsampling by 2 after it (and its pooling):
    # "transpose" (a ConvTranspose2d(w, w, 2, stride=2) and the activation), "nearest",
    # "bilinear"
    up: tuple[str, ...] = ()

    def upsampling(self, i: int) -> str:
        return self.up[i] if self.up else "none"

    def widening(self, i: int) -> int:
        return self.widen[i] if self.widen else 0

    @property
    def has_batchnorm(self) -> bool:
        return any(self.batchnorm)


class SpecNet(nn.Module):
    """The network an :class:`Arch` describes (traceable by torch.fx)."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        body = nn.ModuleDict()
        conv = arch.kind == "conv"
        width = arch.in_shape[0]
        spatial = list(arch.in_shape[1:])
        for i, w in enumerate(arch.widths):
            if conv:
                body[f"l{i}"] = nn.Conv2d(width, w, 3, stride=arch.stride[i], padding=1,
                                          bias=arch.bias[i])
                spatial = [(s + 2 - 3) // arch.stride[i] + 1 for s in spatial]
            else:
                body[f"l{i}"] = nn.Linear(width, w, bias=arch.bias[i])
            if arch.batchnorm[i]:
                body[f"bn{i}"] = (nn.BatchNorm2d if conv else nn.BatchNorm1d)(w)
            if conv and arch.pool[i] == "max":
                body[f"p{i}"] = nn.MaxPool2d(2, ceil_mode=True)
            elif conv and arch.pool[i] == "avg":
                body[f"p{i}"] = nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)
            if conv and arch.pool[i] != "none":
                spatial = [-(-s // 2) for s in spatial]
            up = arch.upsampling(i)
            if up == "transpose":
                body[f"u{i}"] = nn.ConvTranspose2d(w, w, 2, stride=2, bias=arch.bias[i])
            elif up != "none":
                body[f"u{i}"] = nn.Upsample(scale_factor=2, mode=up)
            if up != "none":
                spatial = [2 * s for s in spatial]
            wide = w + arch.widening(i)
            if arch.residual[i]:
                if conv:
                    stride = 2 if arch.widening(i) else 1
                    body[f"r{i}a"] = nn.Conv2d(w, wide, 3, stride=stride, padding=1,
                                               bias=arch.bias[i])
                    body[f"r{i}b"] = nn.Conv2d(wide, wide, 3, padding=1, bias=arch.bias[i])
                    spatial = [(s - 1) // stride + 1 for s in spatial]
                else:
                    body[f"r{i}a"] = nn.Linear(w, w, bias=arch.bias[i])
                    body[f"r{i}b"] = nn.Linear(w, w, bias=arch.bias[i])
                if arch.batchnorm[i]:
                    body[f"r{i}bn"] = (nn.BatchNorm2d if conv else nn.BatchNorm1d)(wide)
            width = wide
        if conv and arch.head == "adaptive":
            body["pool"] = nn.AdaptiveAvgPool2d(1)
        features = width * math.prod(spatial) if conv and arch.head == "flatten" else width
        body["out"] = nn.Linear(features, arch.out, bias=arch.bias[-1])
        self.body = body
        self.act = nn.LeakyReLU(0.1) if arch.leaky else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arch = self.arch
        for i in range(len(arch.widths)):
            x = self.body[f"l{i}"](x)
            if arch.batchnorm[i]:
                x = self.body[f"bn{i}"](x)
            x = self.act(x)
            if arch.kind == "conv" and arch.pool[i] != "none":
                x = self.body[f"p{i}"](x)
            if arch.upsampling(i) != "none":
                x = self.body[f"u{i}"](x)
                if arch.upsampling(i) == "transpose":
                    x = self.act(x)
            if arch.residual[i]:
                h = self.act(self.body[f"r{i}a"](x))
                h = self.body[f"r{i}b"](h)
                if arch.batchnorm[i]:
                    h = self.body[f"r{i}bn"](h)
                extra = arch.widening(i)
                if extra:
                    x = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, extra // 2, extra - extra // 2))
                x = self.act(x + h)
        if arch.kind == "conv":
            if arch.head == "adaptive":
                x = torch.flatten(self.body["pool"](x), 1)
            elif arch.head == "mean":
                x = x.mean((2, 3))
            else:
                x = torch.flatten(x, 1)
        return self.body["out"](x)


def spec_dag(model: SpecNet) -> UnitDAG:
    """The unit-level DAG of a :class:`SpecNet`, written from its :class:`Arch`."""
    arch = model.arch
    slope = 0.1 if arch.leaky else 0.0
    g = UnitDAG()
    x = g.input(arch.in_shape)
    conv = arch.kind == "conv"
    layer = g.conv if conv else g.linear
    for i in range(len(arch.widths)):
        x = layer(x, model, f"body.l{i}", f"body.bn{i}" if arch.batchnorm[i] else None)
        x = g.relu(x, slope)
        if conv and arch.pool[i] == "max":
            x = g.maxpool(x, 2, ceil_mode=True)
        elif conv and arch.pool[i] == "avg":
            x = g.avgpool(x, 2, ceil_mode=True, count_include_pad=False)
        up = arch.upsampling(i)
        if up == "transpose":
            x = g.relu(g.conv_transpose(x, model, f"body.u{i}"), slope)
        elif up == "nearest":
            x = x.repeat(2, axis=1).repeat(2, axis=2)
        elif up == "bilinear":
            x = g.interpolate(x, [linear_weights(n, 2 * n, False) for n in x.shape[1:]])
        if arch.residual[i]:
            h = g.relu(layer(x, model, f"body.r{i}a"), slope)
            h = layer(h, model, f"body.r{i}b", f"body.r{i}bn" if arch.batchnorm[i] else None)
            extra = arch.widening(i)
            if extra:
                x = g.zero_pad(g.select(x, np.s_[:, ::2, ::2]),
                               (0, 0, 0, 0, extra // 2, extra - extra // 2))
            x = g.relu(g.add(x, h), slope)
    if conv:
        if arch.head == "adaptive":
            x = g.adaptive_avgpool(x, 1).reshape(-1)
        elif arch.head == "mean":
            x = g.mean(x, (1, 2))
        else:
            x = x.reshape(-1)
    g.output(g.linear(x, model, "body.out"))
    return g


def build(arch: Arch, seed: int) -> SpecNet:
    """A float64 :class:`SpecNet` with seeded random weights and BatchNorm statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SpecNet(arch).double()
    randomize_parameters(model, gen)
    randomize_batchnorm(model, gen)
    return model


@st.composite
def archs(draw, *, tiny: bool = False, allow_batchnorm: bool = True,
          upsampling: bool = False) -> Arch:
    """Random small architectures; ``tiny`` keeps the number of paths enumerable;
    ``upsampling`` draws transposed convolutions and nearest or bilinear upsamplings too
    (not followed by the skeleton methods)."""
    kind = draw(st.sampled_from(["mlp", "conv"]))
    if kind == "mlp":
        depth = draw(st.integers(1, 3))
        max_w = 4 if tiny else 7
        in_shape: tuple[int, ...] = (draw(st.integers(1, max_w)),)
    else:
        depth = draw(st.integers(1, 2))
        max_w = 2 if tiny else 4
        side = draw(st.integers(2, 4 if tiny else 6))
        in_shape = (draw(st.integers(1, max_w)), side, draw(st.integers(2, side)))
    widths = tuple(draw(st.integers(1, max_w)) for _ in range(depth))
    bias = tuple(draw(st.booleans()) for _ in range(depth + 1))
    bn = tuple(draw(st.booleans()) if allow_batchnorm else False for _ in range(depth))
    residual = tuple(draw(st.booleans()) for _ in range(depth))
    if tiny and kind == "conv":  # a conv residual block multiplies paths by ~(9 w)^2
        residual = tuple(r and widths[i] == 1 for i, r in enumerate(residual))
    pool = stride = widen = ()
    head = "flatten"
    if kind == "conv":
        pool = tuple(draw(st.sampled_from(["none", "max", "avg"])) for _ in range(depth))
        stride = tuple(draw(st.sampled_from([1, 2])) for _ in range(depth))
        head = draw(st.sampled_from(["flatten", "mean", "adaptive"]))
        # option-A blocks (tiny: at most one added channel, to keep paths enumerable)
        widen = tuple(draw(st.integers(0, 1 if tiny else 2)) if r else 0 for r in residual)
    leaky, out = draw(st.booleans()), draw(st.integers(1, 3))
    up: tuple[str, ...] = ()
    if upsampling and kind == "conv":  # drawn last: the other draws stay as they were
        up = tuple(draw(st.sampled_from(["none", "transpose", "nearest", "bilinear"]))
                   for _ in range(depth))
    return Arch(kind=kind, in_shape=in_shape, widths=widths, bias=bias, batchnorm=bn,
                residual=residual, pool=pool, stride=stride, head=head, leaky=leaky, out=out,
                widen=widen, up=up)


__all__ = [
    "ONE", "Arch", "BruteForce", "SpecNet", "UnitDAG", "archs", "brute_force", "build",
    "check_dag_matches_model", "fold", "linear_weights", "pool_output_size", "randomize_batchnorm",
    "randomize_parameters", "single_thread", "spec_dag",
]


def single_thread():
    """Generator for an autouse fixture: the tests use tiny tensors, for which intra-op
    threads only cost synchronisation (badly so on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
