"""Turn a traced ``nn.Module`` into its :class:`RescalingGraph`.

Every tensor of the traced graph carries, per element, the *unit* it belongs to: the output
unit or channel of the layer that produced it, ``FIXED`` (input units) or ``ZERO`` (a
constant zero written by zero-padding: no unit, no path). Shape operations (flatten,
reshape, concatenation, pooling, static indexing and slicing, zero-padding) move these
labels like the data; an addition ties the units of both summands into one rescaling group
(union-find; a ``ZERO`` summand ties nothing); units reaching the network's output are tied
to ``FIXED`` and never rescaled, and so are units that reach nothing (sliced away): nothing
depends on their scale.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import UnsupportedModelError
from .catalog import NOT_HOMOGENEOUS_MODULES as _NOT_HOMOGENEOUS_MODULES
from .ops import Layer, Op, OpKind
from .rescaling_graph import RescalingGraph
from .tracing import (
    DROPOUT_FUNCTIONS,
    VIEW_FUNCTIONS,
    VIEW_METHODS,
    overrides_torch_forward,
    trace,
)

FIXED = 0
ZERO = -1

_NOT_HOMOGENEOUS_FUNCTIONS: dict[Any, str] = {
    F.gelu: "gelu", F.silu: "silu", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
    torch.tanh: "tanh", F.tanh: "tanh", F.softmax: "softmax", torch.softmax: "softmax",
    F.log_softmax: "log_softmax", F.layer_norm: "layer_norm", F.elu: "elu",
    F.softplus: "softplus", F.relu6: "relu6", F.hardtanh: "hardtanh",
    F.scaled_dot_product_attention: "attention", torch.matmul: "matmul", torch.bmm: "bmm",
    torch.exp: "exp", torch.log: "log",
}
_IDENTITY_MODULES = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                     nn.Dropout3d)
_PAD_MODULES = (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d,
                nn.ConstantPad3d)
_CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TRANSPOSE_MODULES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCHNORM_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_MAX_POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_AVG_POOL_MODULES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_POOL_MODULES = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_ADAPTIVE_MAX_POOL_MODULES = (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_LAYER_MODULES = (nn.Linear, *_CONV_MODULES, *_CONV_TRANSPOSE_MODULES, *_BATCHNORM_MODULES)
#: spatial dimensions of the convolutions and poolings, by class
_SPATIAL_DIMS = {cls: i + 1 for group in (_CONV_MODULES, _CONV_TRANSPOSE_MODULES,
                                          _MAX_POOL_MODULES, _AVG_POOL_MODULES,
                                          _ADAPTIVE_POOL_MODULES, _ADAPTIVE_MAX_POOL_MODULES)
                 for i, cls in enumerate(group)}
# operations that only copy entries (each output entry is one input entry): nearest
# upsampling, pixel and channel shuffles, flips, rolls, repeats
_COPY_MODULES = (nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle)
_COPY_FUNCTIONS = {f for f in (
    F.interpolate, F.upsample, F.upsample_nearest, F.pixel_shuffle, F.pixel_unshuffle,
    getattr(F, "channel_shuffle", None), torch.pixel_shuffle, torch.pixel_unshuffle,
    torch.channel_shuffle, torch.flip, torch.fliplr, torch.flipud, torch.roll, torch.rot90,
    torch.repeat_interleave, torch.tile) if f is not None}
_COPY_METHODS = {"repeat", "repeat_interleave", "tile", "flip", "fliplr", "flipud", "roll",
                 "rot90"}
_NEAREST_MODES = ("nearest", "nearest-exact")
# interpolations that are, per channel, a fixed linear map separable along the axes
_SEPARABLE_MODES = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
_SUPPORTED_MODULES = (
    *_IDENTITY_MODULES, *_LAYER_MODULES, *_COPY_MODULES,
    *_MAX_POOL_MODULES, *_AVG_POOL_MODULES, *_ADAPTIVE_POOL_MODULES,
    *_ADAPTIVE_MAX_POOL_MODULES, nn.Flatten,
    nn.Unflatten, *_PAD_MODULES,
)
# |x| = max(x, -x) is a leaky ReLU of slope -1: positively homogeneous like the others
_ACTIVATION_FUNCTIONS = {F.relu, torch.relu, F.leaky_relu, *DROPOUT_FUNCTIONS, torch.abs}
_ACTIVATION_METHODS = {"relu", "relu_", "abs", "abs_", "contiguous", "clone", "detach"}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze"}
_STATIC_METHODS = {"size", "dim", "numel"}
_PERMUTE_METHODS = {"transpose", "permute", "swapaxes", "swapdims"}
_PERMUTE_FUNCTIONS = {torch.transpose: "transpose", torch.permute: "permute",
                      torch.swapaxes: "transpose"}
_SPLIT_METHODS = {"chunk": "chunk", "split": "split"}
_SPLIT_FUNCTIONS = {torch.chunk: "chunk", torch.split: "split"}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub}
_ADD_METHODS = {"add", "add_", "sub", "sub_"}
_MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul}
# operations that write into their first argument and change its values
_IN_PLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}
_IN_PLACE_METHODS = {"add_", "sub_", "mul_", "div_"}
# operations whose result may share its first argument's memory (views, in-place ops)
_ALIAS_METHODS = {*VIEW_METHODS, "relu_", "abs_", *_IN_PLACE_METHODS}
_ALIAS_FUNCTIONS = {*VIEW_FUNCTIONS, *DROPOUT_FUNCTIONS, *_IN_PLACE_FUNCTIONS}
_ALIAS_MODULES = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d,
                  nn.Dropout2d, nn.Dropout3d)
_DIV_FUNCTIONS = {operator.truediv, operator.itruediv, torch.div}
# integer arithmetic on sizes read in forward (skip.shape[2] - h.shape[2], h.size(1) // 2)
_SIZE_ARITHMETIC = {operator.add, operator.sub, operator.mul, operator.floordiv,
                    operator.truediv, operator.mod, operator.neg, operator.pos,
                    operator.getitem}

_POOL_ARGS = {
    "max": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "avg": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
            "divisor_override"),
    "adaptive": ("input", "output_size"),
    "adaptive_max": ("input", "output_size", "return_indices"),
}
_POOL_FUNCTIONS: dict[Any, tuple[str, int]] = {
    F.max_pool1d: ("max", 1), F.max_pool2d: ("max", 2), F.max_pool3d: ("max", 3),
    F.avg_pool1d: ("avg", 1), F.avg_pool2d: ("avg", 2), F.avg_pool3d: ("avg", 3),
    F.adaptive_avg_pool1d: ("adaptive", 1), F.adaptive_avg_pool2d: ("adaptive", 2),
    F.adaptive_avg_pool3d: ("adaptive", 3),
    F.adaptive_max_pool1d: ("adaptive_max", 1), F.adaptive_max_pool2d: ("adaptive_max", 2),
    F.adaptive_max_pool3d: ("adaptive_max", 3),
}


class _UnionFind:
    """Union-find over unit ids; the smallest id is the root, so ``FIXED`` (0) stays a root."""

    def __init__(self) -> None:
        self.parent: list[int] = [FIXED]

    def new(self, count: int) -> torch.Tensor:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return torch.arange(start, start + count, dtype=torch.int64)

    def find(self, u: int) -> int:
        root = u
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[u] != root:
            self.parent[u], u = root, self.parent[u]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self) -> torch.Tensor:
        """The root of every unit id, as one tensor (pointer jumping until stable)."""
        parent = torch.tensor(self.parent, dtype=torch.int64)
        while True:
            grand = parent[parent]
            if torch.equal(grand, parent):
                return parent
            parent = grand


@dataclass
class _LayerDraft:
    name: str
    kind: str
    module: nn.Module
    row_units: torch.Tensor
    col_units: torch.Tensor
    op_index: int
    batchnorm: str | None = None
    batchnorm_affine: bool = True
    conv_dims: int = 0
    conv_args: dict[str, Any] = field(default_factory=dict)


class _Builder:
    def __init__(self, model: nn.Module, gm: fx.GraphModule, input_shape: tuple[int, ...]):
        self.model = model
        self.gm = gm
        self.input_shape = input_shape
        self.modules = dict(model.named_modules())
        self.ops: list[Op] = []
        self.labels: list[torch.Tensor] = []
        self.node_op: dict[fx.Node, int] = {}
        self.uf = _UnionFind()
        self.layers: list[_LayerDraft] = []
        self.layer_of_op: dict[int, int] = {}
        self.problems: list[str] = []
        self.bad: set[fx.Node] = set()
        self.module_calls: dict[str, int] = {}
        self.output_ops: list[int] = []
        self.order = {n: i for i, n in enumerate(gm.graph.nodes)}
        self.storage: dict[fx.Node, fx.Node] = {}

    # ----------------------------------------------------------------- helpers
    def problem(self, node: fx.Node, message: str) -> None:
        self.problems.append(message)
        self.bad.add(node)

    @staticmethod
    def shape_of(node: fx.Node) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta")
        shape = getattr(meta, "shape", None)
        return None if shape is None else tuple(int(s) for s in shape)

    def tensor_args(self, node: fx.Node) -> list[fx.Node]:
        out: list[fx.Node] = []
        for a in _flatten_args((node.args, node.kwargs)):
            if isinstance(a, fx.Node) and self.shape_of(a) is not None:
                out.append(a)
        return out

    def add_op(self, node: fx.Node, kind: OpKind, inputs: Sequence[fx.Node], labels: torch.Tensor,
               **attrs: Any) -> int:
        shape = self.shape_of(node)
        assert shape is not None
        index = len(self.ops)
        self.ops.append(Op(kind, tuple(self.node_op[i] for i in inputs), shape[1:],
                           _describe(node), dict(attrs)))
        self.labels.append(labels)
        self.node_op[node] = index
        return index

    def channel_labels(self, node: fx.Node, labels: torch.Tensor, what: str) -> torch.Tensor | None:
        """Per-channel labels of a ``(C, *spatial)`` tensor. Units sharing a channel meet the
        same kernel weights (or pooling window), so they are tied into one group."""
        if labels.dim() == 0:
            self.problem(node, f"{_describe(node)}: {what} needs a channel dimension")
            return None
        flat = labels.reshape(labels.shape[0], -1)
        first = flat.amax(dim=1, keepdim=True)  # a unit of the channel: ZERO (-1) is lowest
        mixed = (flat != first) & (flat != ZERO)
        if bool(mixed.any()):
            self.tie(first.expand_as(flat)[mixed], flat[mixed])
        return first[:, 0].clone()

    def tie(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Union the units ``a[i]`` and ``b[i]`` for every ``i`` (each distinct pair once;
        labels repeat along spatial runs, so consecutive duplicates go first, cheaply)."""
        a, b = a.reshape(-1), b.reshape(-1)
        real = (a != ZERO) & (b != ZERO)
        if not bool(real.all()):
            a, b = a[real], b[real]
        base = len(self.uf.parent)
        keys = torch.unique_consecutive(a * base + b)
        for key in torch.unique(keys).tolist():
            self.uf.union(key // base, key % base)

    # ---------------------------------------------------------------- dispatch
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            if any(a in self.bad for a in _flatten_args((node.args, node.kwargs))
                   if isinstance(a, fx.Node)):
                self.bad.add(node)
                self.report_intrinsic_problem(node)
                continue
            if node.op == "placeholder":
                shape = self.shape_of(node)
                assert shape is not None
                self.add_op(node, "input", [], torch.full(shape[1:], FIXED, dtype=torch.int64))
            elif node.op == "get_attr":
                if str(node.target).startswith("_tensor_constant"):
                    self.problem(node, f"{_describe(node)}: a tensor made in forward "
                                       "(torch.tensor(...)) is used directly as an operand; "
                                       "pathcond follows Python numbers and lists of ints "
                                       "there, not tensors")
                else:
                    self.problem(node, f"{_describe(node)}: parameter or buffer "
                                       f"'{node.target}' is used directly in forward; use it "
                                       "through nn.Linear, nn.Conv or nn.BatchNorm modules")
            elif node.op == "output":
                for a in self.tensor_args(node):
                    self.output_ops.append(self.node_op[a])
                    labels = self.labels[self.node_op[a]]
                    self.tie(torch.full_like(labels, FIXED), labels)
            elif node.op == "call_module" and self.shape_of(node) is None:
                self.visit_module(node)  # e.g. attention returning a tuple: refused by type
            elif self.shape_of(node) is None:
                continue  # sizes, shapes and other static values
            elif not self.shape_of(node) or self.shape_of(node)[0] != 2:  # type: ignore[index]
                self.problem(node, f"{_describe(node)}: mixes samples of the batch "
                                   "(the batch dimension must stay first and unchanged)")
            elif node.op == "call_module":
                self.visit_module(node)
            elif node.op == "call_function":
                self.visit_function(node)
            elif node.op == "call_method":
                self.visit_method(node)

    def report_intrinsic_problem(self, node: fx.Node) -> None:
        """For a node downstream of a problem: report what is wrong with the node itself."""
        message = None
        if node.op == "call_module":
            module = self.modules[str(node.target)]
            self.module_calls[str(node.target)] = self.module_calls.get(str(node.target), 0) + 1
            if isinstance(module, _NOT_HOMOGENEOUS_MODULES):
                message = (f"module '{node.target}' ({type(module).__name__}) is not positively "
                           "homogeneous: it breaks the rescaling symmetry")
            elif not isinstance(module, _SUPPORTED_MODULES):
                message = (f"module '{node.target}' ({type(module).__name__}) is not supported "
                           "by pathcond's rescaling graph")
        elif node.op == "call_function" and node.target in _NOT_HOMOGENEOUS_FUNCTIONS:
            message = (f"{_describe(node)}: {_NOT_HOMOGENEOUS_FUNCTIONS[node.target]} is not "
                       "positively homogeneous: it breaks the rescaling symmetry")
        if message is not None:
            self.problems.append(message)

    def single_input(self, node: fx.Node) -> fx.Node:
        args = self.tensor_args(node)
        if len(args) != 1:
            raise _Skip(f"{_describe(node)}: expected one tensor input, got {len(args)}")
        return args[0]

    def visit_module(self, node: fx.Node) -> None:
        name = str(node.target)
        module = self.modules[name]
        if overrides_torch_forward(module):
            base = next(c for c in type(module).__mro__ if c.__module__.startswith("torch."))
            self.problem(node, f"module '{name}' ({type(module).__name__}) has a forward of "
                               f"its own, not that of {base.__name__}: pathcond cannot follow "
                               "it (use the torch module, or a module without parameters)")
            return
        if isinstance(module, _LAYER_MODULES) and (
                not isinstance(getattr(module, "weight", None), nn.Parameter | None)
                or module._forward_pre_hooks):
            self.problem(node, f"module '{name}' ({type(module).__name__}) computes its weight "
                               "in forward (weight_norm, spectral_norm, a parametrization or "
                               "a pre-hook): its parameters are not the weight pathcond "
                               "rescales; remove it (torch.nn.utils.remove_weight_norm)")
            return
        if any(True for _ in module.parameters(recurse=False)):
            self.module_calls[name] = self.module_calls.get(name, 0) + 1
            if self.module_calls[name] > 1:
                self.problem(node, f"module '{name}' ({type(module).__name__}) is called more "
                                   "than once: shared parameters are not supported")
                return
        try:
            if isinstance(module, nn.Linear):
                self.visit_linear(node, name, module)
            elif isinstance(module, (*_CONV_MODULES, *_CONV_TRANSPOSE_MODULES)):
                self.visit_conv(node, name, module)
            elif isinstance(module, nn.Upsample) and module.mode not in _NEAREST_MODES:
                self.visit_interpolate(node, module, module.mode)
            elif isinstance(module, _COPY_MODULES):
                self.visit_copy(node, module)
            elif isinstance(module, _BATCHNORM_MODULES):
                self.visit_batchnorm(node, name, module)
            elif isinstance(module, _IDENTITY_MODULES):
                src = self.single_input(node)
                self.add_op(node, "activation", [src], self.labels[self.node_op[src]])
            elif isinstance(module, _MAX_POOL_MODULES):
                if module.return_indices:
                    raise _Skip(f"module '{name}' (MaxPool): return_indices is not supported")
                dims = _spatial_dims(module)
                self.visit_pool(node, "maxpool", dims, kernel_size=module.kernel_size,
                                stride=module.stride, padding=module.padding,
                                dilation=module.dilation, ceil_mode=module.ceil_mode)
            elif isinstance(module, _AVG_POOL_MODULES):
                dims = _spatial_dims(module)
                self.visit_pool(node, "avgpool", dims, kernel_size=module.kernel_size,
                                stride=module.stride, padding=module.padding,
                                ceil_mode=module.ceil_mode,
                                count_include_pad=module.count_include_pad,
                                divisor_override=getattr(module, "divisor_override", None))
            elif isinstance(module, _ADAPTIVE_POOL_MODULES):
                dims = _spatial_dims(module)
                self.visit_pool(node, "adaptive_avgpool", dims)
            elif isinstance(module, _ADAPTIVE_MAX_POOL_MODULES):
                if module.return_indices:
                    raise _Skip(f"module '{name}' (AdaptiveMaxPool): return_indices is not "
                                "supported")
                self.visit_pool(node, "adaptive_maxpool", _spatial_dims(module))
            elif isinstance(module, nn.Flatten | nn.Unflatten):
                self.visit_reshape(node)
            elif isinstance(module, _PAD_MODULES):
                self.visit_pad(node, tuple(module.padding), "constant",
                               float(getattr(module, "value", 0.0)))
            elif isinstance(module, _NOT_HOMOGENEOUS_MODULES):
                raise _Skip(f"module '{name}' ({type(module).__name__}) is not positively "
                            "homogeneous: it breaks the rescaling symmetry")
            else:
                raise _Skip(f"module '{name}' ({type(module).__name__}) is not supported by "
                            "pathcond's rescaling graph")
        except _Skip as skip:
            self.problem(node, str(skip))

    def visit_function(self, node: fx.Node) -> None:
        target = node.target
        try:
            if target in _NOT_HOMOGENEOUS_FUNCTIONS:
                raise _Skip(f"{_describe(node)}: {_NOT_HOMOGENEOUS_FUNCTIONS[target]} is not "
                            "positively homogeneous: it breaks the rescaling symmetry")
            if target in _ACTIVATION_FUNCTIONS:
                src = self.single_input(node)
                self.add_op(node, "activation", [src], self.labels[self.node_op[src]])
            elif target in _ADD_FUNCTIONS:
                self.visit_add(node)
            elif target in _MUL_FUNCTIONS or target in _DIV_FUNCTIONS:
                self.visit_scale(node, divide=target in _DIV_FUNCTIONS)
            elif target is operator.neg or target is torch.neg:
                src = self.single_input(node)
                self.add_op(node, "scale", [src], self.labels[self.node_op[src]], factor=-1.0)
            elif target in (torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze):
                self.visit_reshape(node)
            elif target in (torch.cat, torch.concat):
                self.visit_cat(node)
            elif target in _PERMUTE_FUNCTIONS:
                self.visit_permute(node, _PERMUTE_FUNCTIONS[target])
            elif target is torch.mean:
                self.visit_mean(node)
            elif target in _POOL_FUNCTIONS:
                family, dims = _POOL_FUNCTIONS[target]
                bound = _bind(node, _POOL_ARGS[family])
                sizes = {k: v for k, v in bound.items() if k != "input"}
                if any(isinstance(v, fx.Node) for v in _flatten_args(sizes)):
                    bound.update(self.resolve_static(node, sizes, "pooling sizes"))
                if family == "max":
                    if bound.get("return_indices"):
                        raise _Skip(f"{_describe(node)}: return_indices is not supported")
                    ks = bound["kernel_size"]
                    self.visit_pool(node, "maxpool", dims, kernel_size=ks,
                                    stride=bound.get("stride") or ks,
                                    padding=bound.get("padding", 0),
                                    dilation=bound.get("dilation", 1),
                                    ceil_mode=bool(bound.get("ceil_mode", False)))
                elif family == "avg":
                    ks = bound["kernel_size"]
                    self.visit_pool(node, "avgpool", dims, kernel_size=ks,
                                    stride=bound.get("stride") or ks,
                                    padding=bound.get("padding", 0),
                                    ceil_mode=bool(bound.get("ceil_mode", False)),
                                    count_include_pad=bool(bound.get("count_include_pad", True)),
                                    divisor_override=bound.get("divisor_override"))
                elif family == "adaptive_max":
                    if bound.get("return_indices"):
                        raise _Skip(f"{_describe(node)}: return_indices is not supported")
                    self.visit_pool(node, "adaptive_maxpool", dims)
                else:
                    self.visit_pool(node, "adaptive_avgpool", dims)
            elif target in (F.linear, F.conv1d, F.conv2d, F.batch_norm):
                raise _Skip(f"{_describe(node)}: functional layers are not supported; "
                            "use nn.Linear / nn.Conv / nn.BatchNorm modules")
            elif target is operator.getitem:
                self.visit_select(node)
            elif target in _COPY_FUNCTIONS:
                mode = _bind(node, ("input", "size", "scale_factor", "mode")).get(
                    "mode", "nearest") if target in (F.interpolate, F.upsample) else "nearest"
                if mode in _NEAREST_MODES:
                    self.visit_copy(node, target)
                else:
                    self.visit_interpolate(node, target, mode)
            elif target is F.pad:
                bound = _bind(node, ("input", "pad", "mode", "value"))
                self.visit_pad(node, bound.get("pad"), bound.get("mode", "constant"),
                               bound.get("value"))
            else:
                raise _Skip(f"{_describe(node)}: operation {_callable_name(target)} is not "
                            "supported by pathcond's rescaling graph")
        except _Skip as skip:
            self.problem(node, str(skip))

    def visit_method(self, node: fx.Node) -> None:
        method = str(node.target)
        try:
            if method in _ACTIVATION_METHODS:
                src = self.single_input(node)
                self.add_op(node, "activation", [src], self.labels[self.node_op[src]])
            elif method in _RESHAPE_METHODS:
                self.visit_reshape(node)
            elif method in _PERMUTE_METHODS:
                self.visit_permute(node, "permute" if method == "permute" else "transpose")
            elif method in _COPY_METHODS:
                self.visit_copy(node, lambda t, *a, **k: getattr(t, method)(*a, **k))
            elif method in _ADD_METHODS:
                self.visit_add(node)
            elif method in ("mul", "mul_", "div", "div_"):
                self.visit_scale(node, divide=method.startswith("div"))
            elif method == "mean":
                self.visit_mean(node)
            elif method in ("sigmoid", "tanh", "softmax", "exp", "log", "matmul"):
                raise _Skip(f"{_describe(node)}: {method} is not positively homogeneous: it "
                            "breaks the rescaling symmetry")
            else:
                raise _Skip(f"{_describe(node)}: tensor method .{method}() is not supported by "
                            "pathcond's rescaling graph")
        except _Skip as skip:
            self.problem(node, str(skip))

    # ------------------------------------------------------------------ visits
    def visit_linear(self, node: fx.Node, name: str, module: nn.Linear) -> None:
        src = self.single_input(node)
        labels = self.labels[self.node_op[src]]
        if labels.dim() != 1:
            raise _Skip(f"module '{name}' (Linear) gets inputs of per-sample shape "
                        f"{tuple(labels.shape)}; only (batch, features) inputs are supported "
                        "(flatten first)")
        rows = self.uf.new(module.out_features)
        op = self.add_op(node, "layer", [src], rows.clone())
        self.new_layer(name, "linear", module, rows, labels.clone().unsqueeze(0), op)

    def visit_conv(self, node: fx.Node, name: str, module: nn.modules.conv._ConvNd) -> None:
        """A convolution, or a transposed one (weight ``(in, out_per_group, *kernel)``):
        either way input channel ``g * in_per_group + i`` meets output channel
        ``g * out_per_group + j`` of the same group ``g``."""
        transposed = isinstance(module, _CONV_TRANSPOSE_MODULES)
        if module.padding_mode != "zeros":
            raise _Skip(f"module '{name}' ({type(module).__name__}): padding_mode="
                        f"'{module.padding_mode}' is not supported (use 'zeros')")
        src = self.single_input(node)
        labels = self.labels[self.node_op[src]]
        channels = self.channel_labels(
            node, labels, "a transposed convolution" if transposed else "a convolution")
        if channels is None:
            return
        groups = module.groups
        out_c, in_per_group = module.out_channels, module.in_channels // groups
        if groups == 1:
            cols = channels.unsqueeze(0)
        else:
            per_out = out_c // groups
            k = torch.arange(out_c).unsqueeze(1)
            j = torch.arange(in_per_group).unsqueeze(0)
            cols = channels[(k // per_out) * in_per_group + j]
        rows = self.uf.new(out_c)
        shape = self.shape_of(node)
        assert shape is not None
        dims = _spatial_dims(module)
        out_labels = rows.reshape(-1, *([1] * dims)).expand(shape[1:]).clone()
        op = self.add_op(node, "layer", [src], out_labels)
        args: dict[str, Any] = {"stride": module.stride, "padding": module.padding,
                                "dilation": module.dilation, "groups": groups}
        if transposed:  # the output size the call produced (forward's output_size sets it)
            padding = _tuple(module.padding, dims)
            args["output_padding"] = tuple(
                shape[2 + a] - ((labels.shape[1 + a] - 1) * module.stride[a] - 2 * padding[a]
                                + module.dilation[a] * (module.kernel_size[a] - 1) + 1)
                for a in range(dims))
        self.new_layer(name, "conv_transpose" if transposed else "conv", module, rows, cols,
                       op, conv_dims=dims, conv_args=args)

    def static_value(self, value: Any) -> Any:
        """``value`` (an argument of a node) with every size read from a tensor in forward
        (``x.shape``, ``x.size(d)``, ``x.dim()``, ``x.ndim`` and integer arithmetic on them)
        computed from the traced shapes. The batch size stands as ``_BATCH``: arithmetic on
        it raises ``_BatchDependent``; ``_NotStatic`` where something else is computed in
        forward."""
        if isinstance(value, list | tuple):
            return type(value)(self.static_value(v) for v in value)
        if isinstance(value, slice):
            return slice(*(self.static_value(v) for v in (value.start, value.stop,
                                                          value.step)))
        if isinstance(value, dict):
            return {k: self.static_value(v) for k, v in value.items()}
        if not isinstance(value, fx.Node):
            return value
        node = value
        first = node.args[0] if node.args else None
        shape = self.shape_of(first) if isinstance(first, fx.Node) else None
        full = None if shape is None else (_BATCH, *shape[1:])
        if (node.op == "call_function" and node.target is getattr and full is not None
                and len(node.args) == 2 and node.args[1] in ("shape", "ndim")):
            return full if node.args[1] == "shape" else len(full)
        if node.op == "call_method" and full is not None and node.target in ("size", "dim"):
            if node.target == "dim":
                return len(full)
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            if dim is None:
                return full
            dim = self.static_value(dim)
            if _depends_on_batch(dim) or not isinstance(dim, int):
                raise _BatchDependent if _depends_on_batch(dim) else _NotStatic
            return full[dim]
        if node.op == "call_function" and node.target in _SIZE_ARITHMETIC:
            args = self.static_value(node.args)
            if node.target is operator.getitem and isinstance(args[0], tuple) and not \
                    _depends_on_batch(args[1]):
                try:
                    return args[0][args[1]]  # a size or sizes out of a shape
                except (IndexError, TypeError) as exc:
                    raise _NotStatic from exc
            if _depends_on_batch(args):
                raise _BatchDependent
            try:
                return node.target(*args)
            except Exception as exc:  # noqa: BLE001 - a size the model itself computes
                raise _NotStatic from exc
        raise _NotStatic

    def resolve_static(self, node: fx.Node, value: Any, what: str) -> Any:
        """``value`` with the sizes read in forward computed (:meth:`static_value`); a
        ``_Skip`` where it is computed from values, or depends on the batch size."""
        try:
            out = self.static_value(value)
            if _depends_on_batch(out):
                raise _BatchDependent
        except _NotStatic:
            raise _Skip(f"{_describe(node)}: {what} computed in forward from a tensor's "
                        "values are not supported; write them as Python ints") from None
        except _BatchDependent:
            raise _Skip(f"{_describe(node)}: {what} depend on the batch size (read from "
                        "x.size(0) or x.shape[0]); use per-sample dimensions only") from None
        return out

    def static_call(self, node: fx.Node, apply: Any
                    ) -> tuple[fx.Node, Any]:
        """The tensor input of ``node`` and ``node``'s operation as a function of that input
        alone (its other arguments static), raising ``_Skip`` where it cannot be."""
        positional = bool(node.args)
        src = node.args[0] if positional else node.kwargs.get("input")
        args = node.args[1:]
        kwargs = node.kwargs if positional else {
            k: v for k, v in node.kwargs.items() if k != "input"}
        if not isinstance(src, fx.Node) or self.shape_of(src) is None or (
                node.op == "call_module" and (args or kwargs)):
            raise _Skip(f"{_describe(node)}: expected one tensor input")
        if any(isinstance(a, fx.Node) for a in _flatten_args((args, kwargs))):
            args, kwargs = self.resolve_static(node, (args, kwargs), "arguments")
        if _is_roll(node):  # a batch of 2 cannot see a roll of the batch by an even shift
            rolled: Any = args[1] if len(args) > 1 else kwargs.get("dims")
            ndim = len(self.shape_of(src) or ())
            dims: Any = [rolled] if isinstance(rolled, int) else rolled
            if not dims or any(int(d) % ndim == 0 for d in dims):
                raise _Skip(f"{_describe(node)}: rolling the batch dimension (or the flattened "
                            "tensor, without dims) mixes samples; roll per-sample dimensions")

        def call(x: torch.Tensor) -> torch.Tensor:
            try:
                with torch.no_grad():
                    if node.op == "call_module" or positional:
                        out = apply(x, *args, **kwargs)
                    else:
                        out = apply(input=x, **kwargs)
            except Exception as exc:  # noqa: BLE001 - reported as the node's problem
                raise _Skip(f"{_describe(node)}: could not follow it ({exc})") from None
            if not isinstance(out, torch.Tensor):
                raise _Skip(f"{_describe(node)}: could not follow it (no tensor result)")
            return out

        return src, call

    def visit_interpolate(self, node: fx.Node, apply: Any, mode: Any) -> None:
        """A linear, bilinear or bicubic interpolation: per channel, a fixed linear map
        ``R_1 (x) R_2`` separable along the spatial axes. Its matrices are read by applying
        it to slabs of ones, then checked on random inputs; every unit of a channel is tied
        (as for average pooling: an output entry mixes them through fixed coefficients)."""
        dims = _SEPARABLE_MODES.get(str(mode))
        if dims is None:
            raise _Skip(f"{_describe(node)}: interpolation mode {mode!r} is not supported "
                        "(nearest, nearest-exact, linear, bilinear, bicubic and trilinear are)")
        src, call = self.static_call(node, apply)
        labels = self.labels[self.node_op[src]]
        shape = self.shape_of(node)
        assert shape is not None
        if labels.dim() != dims + 1 or len(shape) != dims + 2:
            raise _Skip(f"{_describe(node)}: {mode} interpolation expects {dims} spatial "
                        "dimension(s)")
        channels = self.channel_labels(node, labels, "an interpolation")
        if channels is None:
            return
        spatial, out_spatial = tuple(labels.shape[1:]), tuple(shape[2:])
        matrices = []
        # slabs of ones, a few at a time: each probe holds one input and one output image
        chunk = max(1, 2**20 // (math.prod(spatial) + math.prod(out_spatial)))
        for axis, n in enumerate(spatial):
            profiles = []
            for start in range(0, n, chunk):
                count = min(chunk, n - start)
                slabs = torch.zeros((count, 1, *spatial), dtype=torch.float64)
                line = slabs.movedim(2 + axis, 1)[:, start:start + count]
                line.diagonal(dim1=0, dim2=1).fill_(1.0)
                profiles.append(call(slabs)[(slice(None), 0, *(  # a copy: not a view
                    slice(None) if a == axis else 0 for a in range(dims)))].clone())
            matrices.append(torch.cat(profiles).T.contiguous())  # (out_n, in_n)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((2, *labels.shape), generator=gen, dtype=torch.float64)
        want = call(x)
        got = x
        for axis, r in enumerate(matrices):
            got = torch.movedim(torch.tensordot(got, r, dims=([2 + axis], [1])), -1, 2 + axis)
        if tuple(want.shape) != (2, *labels.shape[:1], *out_spatial) or not torch.allclose(
                got, want, rtol=1e-9, atol=1e-9):
            raise _Skip(f"{_describe(node)}: could not follow it (not a separable "
                        "per-channel linear map)")
        out_labels = channels.reshape(-1, *([1] * dims)).expand(shape[1:]).clone()
        self.add_op(node, "interpolate", [src], out_labels, matrices=matrices)

    def visit_copy(self, node: fx.Node, apply: Any) -> None:
        """An operation each of whose output entries is one input entry (nearest upsampling,
        pixel and channel shuffles, flips, rolls, repeats): found by applying it to the
        entries' positions, on two samples to see that it moves them within each sample
        alike."""
        src, call = self.static_call(node, apply)
        labels = self.labels[self.node_op[src]]
        n = labels.numel()
        moved = call(torch.arange(2 * n, dtype=torch.float64).reshape(2, *labels.shape))
        shape = self.shape_of(node)
        assert shape is not None
        if tuple(moved.shape) != shape:
            raise _Skip(f"{_describe(node)}: could not follow it (its result on one sample's "
                        "positions has another shape than in the model)")
        first = moved[0]
        if not (bool(((first >= 0) & (first < n) & (first == first.round())).all())
                and torch.equal(moved[1], first + n)):
            raise _Skip(f"{_describe(node)}: mixes samples of the batch or does not copy "
                        "entries (move or copy per-sample entries only)")
        index = first.to(torch.int64).reshape(-1)
        out = labels.reshape(-1)[index].reshape(shape[1:])
        self.add_op(node, "gather", [src], out, index=index)

    def new_layer(self, name: str, kind: str, module: nn.Module, rows: torch.Tensor,
                  cols: torch.Tensor, op: int, **kw: Any) -> None:
        self.layer_of_op[op] = len(self.layers)
        self.layers.append(_LayerDraft(name, kind, module, rows, cols, op, **kw))

    def visit_batchnorm(self, node: fx.Node, name: str,
                        module: nn.modules.batchnorm._BatchNorm) -> None:
        src = self.single_input(node)
        src_op = self.node_op[src]
        layer_index = self.layer_of_op.get(src_op)
        if layer_index is None or len(src.users) != 1:
            raise _Skip(f"module '{name}' ({type(module).__name__}) does not directly follow a "
                        "Linear/Conv layer used only by it; a BatchNorm elsewhere is not "
                        "rescaling-symmetric (its eps term), so it is not supported")
        if not module.track_running_stats:
            raise _Skip(f"module '{name}' ({type(module).__name__}) has "
                        "track_running_stats=False: its eval-mode affine form is undefined")
        draft = self.layers[layer_index]
        if draft.batchnorm is not None:
            raise _Skip(f"module '{name}' follows another BatchNorm")
        draft.batchnorm = name
        draft.batchnorm_affine = bool(module.affine)
        if not module.affine:  # nothing to carry the unit's scale: never rescale it
            for u in draft.row_units.tolist():
                self.uf.union(FIXED, u)
        self.node_op[node] = src_op

    def visit_pool(self, node: fx.Node, kind: OpKind, dims: int, **attrs: Any) -> None:
        src = self.single_input(node)
        channels = self.channel_labels(node, self.labels[self.node_op[src]], "a pooling")
        if channels is None:
            return
        shape = self.shape_of(node)
        assert shape is not None
        if len(shape) - 2 != dims:
            raise _Skip(f"{_describe(node)}: expected {dims} spatial dimension(s)")
        out_labels = channels.reshape(-1, *([1] * dims)).expand(shape[1:]).clone()
        if kind not in ("adaptive_avgpool", "adaptive_maxpool"):
            attrs = {k: (_tuple(v, dims) if k in ("kernel_size", "stride", "padding", "dilation")
                         else v) for k, v in attrs.items()}
        self.add_op(node, kind, [src], out_labels, dims=dims, **attrs)

    def visit_reshape(self, node: fx.Node) -> None:
        if (node.op == "call_method" and str(node.target) in ("view", "reshape")) or (
                node.op == "call_function" and node.target is torch.reshape):
            sizes: Any = node.args[1:]
            if len(sizes) == 1 and isinstance(sizes[0], list | tuple):
                sizes = sizes[0]
            if sizes and isinstance(sizes[0], int) and sizes[0] != -1:
                raise _Skip(f"{_describe(node)}: the new shape fixes the batch size to "
                            f"{sizes[0]}; write x.size(0) or -1 there")
            if sizes and isinstance(sizes[0], fx.Node):
                try:
                    first = self.static_value(sizes[0])
                except (_NotStatic, _BatchDependent):
                    first = None
                if first is not _BATCH:
                    raise _Skip(f"{_describe(node)}: the new shape's first size is not the "
                                "batch size; write x.size(0) or -1 there")
            if any(isinstance(v, fx.Node) for v in _flatten_args(list(sizes[1:]))):
                self.resolve_static(node, list(sizes[1:]), "sizes after the batch one")
        src = self.single_input(node)
        shape = self.shape_of(node)
        assert shape is not None
        self.add_op(node, "reshape", [src], self.labels[self.node_op[src]].reshape(shape[1:]))

    def visit_cat(self, node: fx.Node) -> None:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if isinstance(dim, fx.Node):
            dim = self.resolve_static(node, dim, "the dimension")
        if not isinstance(tensors, list | tuple) or not all(
                isinstance(t, fx.Node) for t in tensors):
            raise _Skip(f"{_describe(node)}: concatenation of non-tensor values")
        shape = self.shape_of(node)
        assert shape is not None
        if not isinstance(dim, int):
            raise _Skip(f"{_describe(node)}: concatenation along a dimension that is not an int")
        dim = dim % len(shape)
        if dim == 0:
            raise _Skip(f"{_describe(node)}: concatenation along the batch dimension")
        labels = torch.cat([self.labels[self.node_op[t]] for t in tensors], dim=dim - 1)
        self.add_op(node, "cat", [t for t in tensors if isinstance(t, fx.Node)], labels,
                    dim=dim - 1)

    def storage_of(self, node: fx.Node) -> fx.Node:
        """The node whose result owns the memory ``node``'s result may share (itself unless
        ``node`` is a view or an in-place result of it)."""
        if node not in self.storage:
            base = node
            first = node.args[0] if node.args else None
            if isinstance(first, fx.Node):
                alias = (
                    (node.op == "call_function" and (
                        node.target in _ALIAS_FUNCTIONS or bool(node.kwargs.get("inplace"))))
                    or (node.op == "call_method" and str(node.target) in _ALIAS_METHODS)
                    or (node.op == "call_module" and (
                        isinstance(self.modules[str(node.target)], _ALIAS_MODULES)
                        or bool(getattr(self.modules[str(node.target)], "inplace", False)))))
                if alias:
                    base = self.storage_of(first)
            self.storage[node] = base
        return self.storage[node]

    def is_version(self, node: fx.Node) -> bool:
        """Whether ``node`` is the result of an in-place operation (the tensor it changed,
        in its new state, not a view of it)."""
        if node.op == "call_function":
            return node.target in _IN_PLACE_FUNCTIONS or bool(node.kwargs.get("inplace"))
        if node.op == "call_method":
            return str(node.target) in (*_IN_PLACE_METHODS, "relu_", "abs_")
        if node.op == "call_module":
            return bool(getattr(self.modules[str(node.target)], "inplace", False))
        return False

    def check_in_place(self, node: fx.Node) -> None:
        """An in-place ``add_``, ``sub_``, ``mul_``, ``div_`` changes the memory of its first
        argument: later reads of that tensor read the result (fx's graph is rewired so), and
        it is refused when a view sharing the memory, made before, is read afterwards (the
        graph would read the old values). torch.fx records ``h += y`` as ``h = h + y``: an
        arithmetic result nobody reads is refused as the trace of such an update of a view;
        one into a view of a tensor read again later is caught by the faithfulness check of
        the trace (docs/SPEC.md section 1)."""
        target = node.args[0] if node.args else None
        in_place = (node.op == "call_function" and node.target in _IN_PLACE_FUNCTIONS) or (
            node.op == "call_method" and str(node.target) in _IN_PLACE_METHODS)
        here = self.order[node]
        if in_place and isinstance(target, fx.Node) and (
                self.storage_of(target) is target or self.is_version(target)):
            target.replace_all_uses_with(node, delete_user_cb=lambda u: self.order[u] > here)
        if not node.users:  # fx records `v += y` as `v + y`: unused, it wrote into a view
            raise _Skip(f"{_describe(node)}: its result is never used, which is what an "
                        "in-place update of a view (h[:, :2] += y, h.add_(y)) looks like to "
                        "torch.fx; write it out of place (h = h + y)")
        if not in_place or not isinstance(target, fx.Node):
            return
        root = self.storage_of(target)
        for other in self.gm.graph.nodes:
            if self.order[other] >= here:
                break
            if self.storage_of(other) is not root:
                continue
            late = [u for u in other.users if self.order[u] > here and not _reads_shape(u)]
            if late:
                raise _Skip(f"{_describe(node)} changes '{target.name}' in place, and "
                            f"'{other.name}', which shares its memory, is read again "
                            f"afterwards (by '{late[0].name}'): write it out of place "
                            "(h = h + y)")

    def visit_add(self, node: fx.Node) -> None:
        self.check_in_place(node)
        args = [a for a in node.args if isinstance(a, fx.Node)]
        if len(node.args) != 2 or len(args) != 2 or any(self.shape_of(a) is None for a in args):
            raise _Skip(f"{_describe(node)}: adding a constant is not positively homogeneous; "
                        "only the sum of two tensors (a residual connection) is supported")
        if node.kwargs.get("alpha", 1) != 1:
            raise _Skip(f"{_describe(node)}: add with alpha != 1 is not supported")
        la, lb = (self.labels[self.node_op[a]] for a in args)
        if la.shape != lb.shape:
            raise _Skip(f"{_describe(node)}: residual addition of shapes {tuple(la.shape)} and "
                        f"{tuple(lb.shape)}; broadcasting is not supported")
        self.tie(la, lb)
        self.add_op(node, "add", args, torch.where(la == ZERO, lb, la))

    def visit_scale(self, node: fx.Node, *, divide: bool) -> None:
        self.check_in_place(node)
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        numbers = [a for a in node.args if isinstance(a, int | float)]
        if len(tensors) != 1 or len(numbers) != 1 or (divide and node.args[0] is not tensors[0]):
            raise _Skip(f"{_describe(node)}: only multiplying or dividing a tensor by a constant "
                        "number is positively homogeneous")
        factor = float(numbers[0])
        factor = 1.0 / factor if divide else factor
        self.add_op(node, "scale", tensors, self.labels[self.node_op[tensors[0]]], factor=factor)

    def visit_select(self, node: fx.Node) -> None:
        """``x[index]`` with a static index (ints, slices, ``None``, ``...``, lists of ints)
        that leaves the batch dimension whole: the selected units, moved (the others drop
        out of this branch)."""
        src = node.args[0]
        index: Any = node.args[1]
        if isinstance(src, fx.Node) and self.shape_of(src) is None and _split_kind(src):
            self.visit_split_piece(node, src, index)
            return
        if not isinstance(src, fx.Node) or self.shape_of(src) is None:
            raise _Skip(f"{_describe(node)}: indexing a value that is not a tensor")
        if any(isinstance(i, fx.Node) and self.shape_of(i) is None
               for i in _flatten_args(index)):
            index = self.resolve_static(node, index, "indices")
        if any(isinstance(i, fx.Node | torch.Tensor) for i in _flatten_args(index)):
            raise _Skip(f"{_describe(node)}: indexing with a tensor is not supported; only "
                        "static indices (ints, slices, None, ..., lists of ints)")
        if not _keeps_batch(index, self.labels[self.node_op[src]].dim() + 1):
            raise _Skip(f"{_describe(node)}: indexing the batch dimension mixes or drops "
                        "samples; index the per-sample dimensions only (x[:, ...])")
        labels = self.labels[self.node_op[src]]
        batch = torch.arange(2).reshape(2, *([1] * labels.dim())).expand(2, *labels.shape)
        try:
            picked = batch[index]
            out = labels.unsqueeze(0).expand(2, *labels.shape)[index]
        except (IndexError, TypeError, ValueError) as exc:
            raise _Skip(f"{_describe(node)}: index {index!r} is not supported: {exc}") from None
        whole = picked.dim() > 0 and picked.shape[0] == 2 and bool(
            (picked[0] == 0).all()) and bool((picked[1] == 1).all())
        if not whole:
            raise _Skip(f"{_describe(node)}: indexing the batch dimension mixes or drops "
                        "samples; index the per-sample dimensions only (x[:, ...])")
        self.add_op(node, "select", [src], out[0].clone(), index=index)

    def visit_split_piece(self, node: fx.Node, split: fx.Node, index: Any) -> None:
        """Piece ``index`` of ``torch.chunk`` / ``torch.split`` (or the methods) along a
        per-sample dimension: a slice of the split tensor."""
        kind = _split_kind(split)
        base = split.args[0] if split.args else None
        if not isinstance(base, fx.Node) or self.shape_of(base) is None:
            raise _Skip(f"{_describe(split)}: splitting a value that is not a tensor")
        how: Any = split.args[1] if len(split.args) > 1 else split.kwargs.get(
            "chunks" if kind == "chunk" else "split_size_or_sections",
            split.kwargs.get("split_size"))
        dim: Any = split.args[2] if len(split.args) > 2 else split.kwargs.get("dim", 0)
        labels = self.labels[self.node_op[base]]
        ndim = labels.dim() + 1
        if any(isinstance(a, fx.Node) for a in _flatten_args((how, dim))):
            how, dim = self.resolve_static(split, (how, dim), "split sizes")
        if not isinstance(index, int) or not isinstance(dim, int):
            raise _Skip(f"{_describe(split)}: only static splits and pieces are supported")
        dim %= ndim
        if dim == 0:
            raise _Skip(f"{_describe(split)}: splitting the batch dimension")
        positions = torch.arange(labels.shape[dim - 1])
        pieces = torch.chunk(positions, how) if kind == "chunk" else torch.split(positions, how)
        piece = pieces[index]
        cut: tuple[Any, ...] = (*([slice(None)] * dim),
                                slice(int(piece[0]), int(piece[-1]) + 1) if piece.numel()
                                else slice(0, 0))
        out = labels.unsqueeze(0)[cut][0]
        self.add_op(node, "select", [base], out.clone(), index=cut)

    def visit_permute(self, node: fx.Node, kind: str) -> None:
        """``transpose`` / ``permute`` of per-sample dimensions: the units, moved."""
        src = self.single_input(node)
        labels = self.labels[self.node_op[src]]
        ndim = labels.dim() + 1
        args: list[Any] = list(node.args[1:])
        dims: Any
        if kind == "permute":
            dims = node.kwargs.get("dims", args[0] if len(args) == 1 and isinstance(
                args[0], list | tuple) else args)
        else:
            dims = [node.kwargs.get("dim0", args[0] if args else None),
                    node.kwargs.get("dim1", args[1] if len(args) > 1 else None)]
        if not all(isinstance(d, int) for d in dims):
            raise _Skip(f"{_describe(node)}: only static dimensions are supported")
        if kind == "permute":
            perm = [int(d) % ndim for d in dims]
        else:
            perm = list(range(ndim))
            a, b = (int(d) % ndim for d in dims)
            perm[a], perm[b] = perm[b], perm[a]
        if sorted(perm) != list(range(ndim)) or perm[0] != 0:
            raise _Skip(f"{_describe(node)}: moving the batch dimension mixes samples; "
                        "permute the per-sample dimensions only")
        out = labels.permute([p - 1 for p in perm[1:]])
        self.add_op(node, "permute", [src], out.clone(), perm=tuple(perm))

    def visit_pad(self, node: fx.Node, pad: Any, mode: Any, value: Any) -> None:
        """Constant zero padding (``F.pad``, ``nn.ZeroPad*``, ``nn.ConstantPad*`` with value
        0): new entries hold no unit; negative amounts crop."""
        src = self.single_input(node)
        if mode != "constant" or value not in (None, 0, 0.0):
            raise _Skip(f"{_describe(node)}: only zero padding (mode 'constant', value 0) is "
                        f"positively homogeneous; got mode {mode!r}, value {value!r}")
        labels = self.labels[self.node_op[src]]
        if isinstance(pad, list | tuple) and any(isinstance(p, fx.Node) for p in pad):
            pad = self.resolve_static(node, tuple(pad), "padding amounts")
        if (not isinstance(pad, list | tuple) or not all(
                isinstance(p, int) and not isinstance(p, bool) for p in pad)
                or len(pad) % 2 or len(pad) // 2 > labels.dim()):
            raise _Skip(f"{_describe(node)}: padding {pad!r} must be an even number of ints, "
                        "at most two per per-sample dimension")
        out = F.pad(labels, tuple(pad), value=ZERO)
        self.add_op(node, "pad", [src], out, pad=tuple(pad))

    def visit_mean(self, node: fx.Node) -> None:
        src = self.single_input(node)
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keepdim = bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
        labels = self.labels[self.node_op[src]]
        full = labels.dim() + 1
        if dim is None:
            raise _Skip(f"{_describe(node)}: mean over the batch dimension")
        raw = list(dim) if isinstance(dim, list | tuple) else [dim]
        if not all(isinstance(d, int) for d in raw):
            raise _Skip(f"{_describe(node)}: mean over non-constant dimensions")
        dims = sorted({int(d) % full for d in raw})  # type: ignore[arg-type]
        if 0 in dims:
            raise _Skip(f"{_describe(node)}: mean over the batch dimension")
        sample_dims = [d - 1 for d in dims]
        reduced = labels.amax(dim=sample_dims, keepdim=True)
        differ = labels != reduced
        if bool(differ.any()):  # averaged units share the output unit's edges: tie them
            self.tie(reduced.expand_as(labels)[differ], labels[differ])
        out = reduced if keepdim else reduced.reshape(self.shape_of(node)[1:])  # type: ignore[index]
        self.add_op(node, "mean", [src], out, dims=tuple(sample_dims), keepdim=keepdim)

    # -------------------------------------------------------------- finishing
    def _tie_unused_units(self) -> None:
        """Units on no path to an output (sliced away, or read only by such units) carry
        nothing: nothing depends on their scale, so they are not rescaled (tied to
        ``FIXED``). A group is live when the output reads it, or a live row of a later layer
        does; found by sweeping the layers backwards until nothing changes."""
        if not self.layers:
            return
        roots = self.uf.roots()
        live = torch.zeros(len(roots), dtype=torch.bool)
        live[roots[FIXED]] = True  # output units (and the inputs)
        changed = True
        while changed:
            changed = False
            for d in reversed(self.layers):
                rows = live[roots[d.row_units]]
                if not bool(rows.any()):
                    continue
                cols = d.col_units if d.col_units.shape[0] == 1 else d.col_units[rows]
                cols = cols.reshape(-1)
                reached = roots[cols[cols != ZERO]]
                if not bool(live[reached].all()):
                    live[reached] = True
                    changed = True
        for d in self.layers:
            for u in d.row_units[~live[roots[d.row_units]]].tolist():
                self.uf.union(FIXED, u)

    def finish(self) -> RescalingGraph:
        self._tie_unused_units()
        roots = self.uf.roots()
        fixed_root = int(roots[FIXED])
        row_roots = [roots[d.row_units] for d in self.layers]
        every = torch.cat(row_roots) if row_roots else torch.zeros(0, dtype=torch.int64)
        owner = torch.cat([torch.full((r.numel(),), li, dtype=torch.int64)
                           for li, r in enumerate(row_roots)]) if row_roots else every
        unit = torch.cat([torch.arange(r.numel()) for r in row_roots]) if row_roots else every
        live = every != fixed_root
        # groups numbered in order of first appearance over the layers' output units
        distinct, inverse = torch.unique(every[live], return_inverse=True)
        first = torch.full((distinct.numel(),), every.numel(), dtype=torch.int64)
        first.scatter_reduce_(0, inverse, torch.nonzero(live).flatten(), reduce="amin")
        rank = torch.empty_like(first)
        rank[torch.argsort(first)] = torch.arange(first.numel())
        group_of_root = torch.full((len(roots),), -1, dtype=torch.int64)
        group_of_root[distinct] = rank
        members: list[list[tuple[int, int]]] = [[] for _ in range(distinct.numel())]
        groups = group_of_root[every]
        for g, li, k in zip(groups[live].tolist(), owner[live].tolist(), unit[live].tolist(),
                            strict=True):
            members[g].append((li, k))
        final = []
        for d, r in zip(self.layers, row_roots, strict=True):
            layer = self._layer(d, group_of_root[r])
            # columns refer to units of earlier layers, all resolved above
            cols = torch.where(d.col_units == ZERO, FIXED, d.col_units)  # a zero feeds
            final.append(Layer(**{**layer.__dict__,                       # no path
                                  "col_groups": group_of_root[roots[cols]]}))
        return RescalingGraph(
            ops=tuple(self.ops), layers=tuple(final), layer_of_op=dict(self.layer_of_op),
            output_ops=tuple(self.output_ops), input_shape=self.input_shape,
            num_groups=len(members), group_members=tuple(tuple(m) for m in members))

    def _layer(self, d: _LayerDraft, rows: torch.Tensor) -> Layer:
        weight = d.module.weight
        assert isinstance(weight, torch.Tensor)
        bias = getattr(d.module, "bias", None)
        return Layer(name=d.name, kind=d.kind,  # type: ignore[arg-type]
                     weight_name=f"{d.name}.weight",
                     bias_name=f"{d.name}.bias" if bias is not None else None,
                     batchnorm=d.batchnorm, weight_shape=tuple(weight.shape),
                     row_groups=rows, col_groups=d.col_units, conv_dims=d.conv_dims,
                     conv_args=dict(d.conv_args), batchnorm_affine=d.batchnorm_affine)


class _Skip(Exception):
    """A problem with one node; recorded, and tracing goes on to find the others."""


class _NotStatic(Exception):
    """A value computed in forward from something other than tensor sizes."""


class _BatchDependent(Exception):
    """A size computed in forward from the batch size."""


class _BatchSize:
    """The batch dimension's size in a shape read in forward: not a number, so that any
    value computed from it is seen to depend on the batch."""

    def __repr__(self) -> str:
        return "<batch size>"


_BATCH = _BatchSize()


def _depends_on_batch(value: Any) -> bool:
    """Whether ``value`` (nested lists, tuples, slices, dicts) holds the batch size."""
    return any(v is _BATCH for v in _flatten_args(value))


def _flatten_args(value: Any) -> Iterator[Any]:
    """The leaves of nested lists, tuples, dicts and slices (a slice's start, stop, step)."""
    if isinstance(value, list | tuple):
        for v in value:
            yield from _flatten_args(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _flatten_args(v)
    elif isinstance(value, slice):
        yield from _flatten_args((value.start, value.stop, value.step))
    else:
        yield value


def _callable_name(target: Any) -> str:
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", repr(target))
    return f"{module}.{name}" if module else name


def _inside(node: fx.Node) -> str:
    """`` in module 'path' (Type)`` for an operation done inside a module the tracer went
    through (fx records the stack of modules), else empty."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    entry = list(stack.values())[-1]
    if not isinstance(entry, tuple) or len(entry) != 2 or not entry[0]:
        return ""
    path, kind = entry
    return f" in module '{path}' ({getattr(kind, '__name__', kind)})"


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module '{node.target}'"
    if node.op == "call_method":
        return f"operation '.{node.target}()' (node '{node.name}'{_inside(node)})"
    if node.op == "call_function":
        return f"operation '{_callable_name(node.target)}' (node '{node.name}'{_inside(node)})"
    return f"node '{node.name}'"


def _split_kind(node: fx.Node) -> str | None:
    """``"chunk"`` or ``"split"`` for a node splitting a tensor into a tuple of pieces."""
    if node.op == "call_function":
        target: Any = node.target
        return _SPLIT_FUNCTIONS.get(target)
    if node.op == "call_method":
        return _SPLIT_METHODS.get(str(node.target))
    return None


def _is_roll(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target is torch.roll) or (
        node.op == "call_method" and node.target == "roll")


def _reads_shape(node: fx.Node) -> bool:
    """``x.size()``, ``x.dim()``, ``x.numel()``, ``x.shape``: reads no values."""
    return (node.op == "call_method" and str(node.target) in _STATIC_METHODS) or (
        node.op == "call_function" and node.target is getattr
        and len(node.args) > 1 and node.args[1] in ("shape", "ndim", "dtype", "device"))


def _keeps_batch(index: Any, ndim: int) -> bool:
    """Whether ``x[index]``, ``x`` of ``ndim`` dimensions batch included, leaves the batch
    dimension (the first) whole and first: the index component landing on it is ``:``
    (step 1) or part of a ``...`` covering at least it, and no ``None`` comes before."""
    parts = index if isinstance(index, tuple) else (index,)
    consuming = sum(1 for p in parts if p is not None and p is not Ellipsis
                    and not isinstance(p, bool))
    for p in parts:
        if p is Ellipsis:
            if ndim - consuming >= 1:
                return True  # the ellipsis stands for the batch dimension (and maybe more)
            continue
        if p is None or isinstance(p, bool):
            return False  # a new dimension before the batch
        return isinstance(p, slice) and p.start in (None, 0) and p.stop is None \
            and p.step in (None, 1)
    return True


def _spatial_dims(module: nn.Module) -> int:
    """Spatial dimensions of a convolution or pooling module (a subclass of one included)."""
    return next(_SPATIAL_DIMS[c] for c in type(module).__mro__ if c in _SPATIAL_DIMS)


def _tuple(value: Any, dims: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    return tuple(int(v) for v in value)


def _bind(node: fx.Node, names: Sequence[str]) -> dict[str, Any]:
    bound = dict(zip(names, node.args, strict=False))
    bound.update(node.kwargs)
    return bound


def sample_shape(input_shape: Any) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints, or a :class:`TypeError` saying what it
    must be."""
    if isinstance(input_shape, Sequence) and not isinstance(input_shape, str):
        try:
            shape = tuple(operator.index(s) for s in input_shape
                          if not isinstance(s, bool))
        except TypeError:
            shape = ()
        if shape and len(shape) == len(input_shape) and min(shape) > 0:
            return shape
    raise TypeError("input_shape must be one sample's shape, without the batch dimension, "
                    f"as a sequence of positive ints, e.g. (784,) or (3, 32, 32); got "
                    f"{input_shape!r}")


def _build(model: nn.Module, input_shape: Sequence[int]) -> tuple[_Builder | None, list[str]]:
    shape = sample_shape(input_shape)
    try:
        gm = trace(model, shape)
    except UnsupportedModelError as exc:
        return None, [str(exc)]
    builder = _Builder(model, gm, shape)
    builder.run()
    for name, module in model.named_modules():
        has_params = any(True for _ in module.parameters(recurse=False))
        inside_called = any(name.startswith(f"{called}.") for called in builder.module_calls)
        if has_params and name not in builder.module_calls and not inside_called:
            builder.problems.append(f"module '{name}' ({type(module).__name__}) has parameters "
                                    "but is never called by forward")
    builder.problems.extend(_tied_parameter_problems(model))
    for draft in builder.layers:
        weight = getattr(draft.module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.numel() == 0:
            builder.problems.append(
                f"module '{draft.name}' ({type(draft.module).__name__}) has a weight of shape "
                f"{tuple(weight.shape)} without entries: give every layer at least one input "
                "and one output unit")
    if not builder.problems and not builder.layers:
        builder.problems.append(
            f"{type(model).__name__} calls no nn.Linear or nn.Conv layer: it has no "
            "parameterised layer, hence no path-lifting to compute")
    return builder, builder.problems


def _tied_parameter_problems(model: nn.Module) -> list[str]:
    """One reason per tensor held by two different modules (tied weights, e.g.
    ``b.weight = a.weight``): each use would need its own rescaling factor. A module merely
    registered under two names is one module and is not reported."""
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():  # each module once, under its first name
        for pname, p in module.named_parameters(recurse=False):
            owners.setdefault(id(p), []).append(f"{name}.{pname}" if name else pname)
    return [f"parameters {', '.join(repr(n) for n in names)} are the same tensor: shared "
            "(tied) parameters are not supported; give each layer its own parameters"
            for names in owners.values() if len(names) > 1]


def resolve_graph(model: nn.Module, input_shape: Sequence[int] | None,
                  graph: RescalingGraph | None) -> RescalingGraph:
    """``graph`` if given, else the rescaling graph of ``model`` traced at ``input_shape``;
    the shared argument convention of every function taking ``input_shape`` or ``graph=``."""
    if graph is not None:
        return graph
    if input_shape is None:
        raise TypeError("give input_shape (one sample's shape, no batch dimension) or graph=")
    return rescaling_graph(model, input_shape)


def rescaling_graph(model: nn.Module, input_shape: Sequence[int]) -> RescalingGraph:
    """Trace ``model`` into its rescaling graph (SPEC sections 1-2).

    ``input_shape`` is one sample's shape, without the batch dimension. Raises
    :class:`~pathcond.UnsupportedModelError` naming the module and operation at fault.
    """
    builder, problems = _build(model, input_shape)
    if problems or builder is None:
        more = f" (and {len(problems) - 1} more problem(s); see pathcond.check_support)" \
            if len(problems) > 1 else ""
        raise UnsupportedModelError(problems[0] + more)
    return builder.finish()

