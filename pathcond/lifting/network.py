"""The magnitude network (SPEC section 3).

Same DAG as the model, every parameter replaced by ``|theta|^q``, ReLU by the identity,
max-pool by sum-pool over the same window, pooling coefficients raised to the power ``q``,
indexing, transposes, copies (nearest upsampling, shuffles) and zero-padding as they are,
input all ones. The sum of its outputs is ``N = sum_p |Phi_p|^q``: the squared L2
path-norm for ``q = 2`` (whose gradient in ``s = theta^2`` is the path magnitude
diagonal), the L1 path-norm for ``q = 1``, the number of paths for ``q = 0``.

Activations are renormalised after every operation and the scale kept as a log, so ``log N``
is exact even where ``N`` itself overflows float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..graph import Layer, Op, RescalingGraph

#: Activations are rescaled by a power of two only when their largest entry leaves
#: ``[2**-RANGE, 2**RANGE]``: the headroom given up is negligible next to float64's 2**1023,
#: and most operations need no extra pass over their output.
RANGE = 16


class _Scaled:
    """A tensor ``value * 2**exponent`` with an integer ``exponent`` (a constant, no
    gradient). Scaling by powers of two is exact, so path counts stay exact integers."""

    __slots__ = ("value", "exponent")

    def __init__(self, value: torch.Tensor, exponent: int):
        self.value = value
        self.exponent = exponent

    def normalised(self) -> _Scaled:
        top = float(self.value.detach().abs().amax()) if self.value.numel() else 0.0
        if top == 0.0 or not math.isfinite(top):
            return self
        _, shift = math.frexp(top)
        if -RANGE <= shift <= RANGE:
            return self
        return _Scaled(_times_power_of_two(self.value, -shift), self.exponent + shift)


def _times_power_of_two(value: torch.Tensor, exponent: int) -> torch.Tensor:
    """``value * 2**exponent``, exact; two factors, since ``2**|e|`` alone may overflow."""
    if exponent == 0:
        return value
    half = exponent // 2
    return value * math.ldexp(1.0, half) * math.ldexp(1.0, exponent - half)


def _aligned(parts: Sequence[_Scaled]) -> tuple[list[torch.Tensor], int]:
    top = max(p.exponent for p in parts)
    return [_times_power_of_two(p.value, p.exponent - top) for p in parts], top


def _window_coefficients(op: Op, like: torch.Tensor) -> torch.Tensor:
    """Per output position, the average-pool edge weight ``1 / divisor``."""
    ones = torch.ones_like(like[:1, :1])
    return _avg_pool(op, ones) / _sum_pool(op, ones)


_AVG_POOL = {2: F.avg_pool2d, 3: F.avg_pool3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_ADAPTIVE_AVG_POOL = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d,
                      3: F.adaptive_avg_pool3d}


def _lifted(op: Op, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, tuple[int, ...]]]:
    """``x`` and the pooling arguments of ``op``, a 1-D pooling seen as a 2-D one (torch's
    1-D average pooling has no ``divisor_override``)."""
    keys = ("kernel_size", "stride", "padding", "dilation")
    args = {k: tuple(op.attrs[k]) for k in keys if k in op.attrs}
    if op.attrs["dims"] == 1:
        return x.unsqueeze(-2), {k: (1, *v) if k != "padding" else (0, *v)
                                 for k, v in args.items()}
    return x, args


def _unlifted(op: Op, y: torch.Tensor) -> torch.Tensor:
    """The result of a pooling on the output of :func:`_lifted`, cropped to ``op``'s shape."""
    if op.attrs["dims"] == 1:
        return y[..., : op.shape[-1]].squeeze(-2)
    return y[(slice(None), slice(None), *(slice(0, n) for n in op.shape[1:]))]


def _sum_pool(op: Op, x: torch.Tensor) -> torch.Tensor:
    """Sum over the pooling windows of ``op``: padding positions and, with ``ceil_mode``,
    positions past the end hold no unit and contribute nothing. A depthwise convolution with
    a kernel of ones over the zero-padded input, cropped to the op's output shape."""
    y, a = _lifted(op, x)
    nd = y.dim() - 2
    out_spatial = (1, *op.shape[1:]) if op.attrs["dims"] == 1 else tuple(op.shape[1:])
    kernel_size, stride = a["kernel_size"], a["stride"]
    padding, dilation = a["padding"], a.get("dilation", (1,) * nd)
    if tuple(dilation) == (1,) * nd:  # the same sums by the (much faster) pooling kernel
        return _unlifted(op, _AVG_POOL[nd](y, kernel_size, stride, padding, ceil_mode=True,
                                           count_include_pad=True, divisor_override=1))
    pads: list[int] = []
    for axis in reversed(range(nd)):  # F.pad lists the last dimension first
        size = y.shape[2 + axis]
        span = (out_spatial[axis] - 1) * stride[axis] + dilation[axis] * (kernel_size[axis] - 1)
        pads += [padding[axis], max(0, span + 1 - size - padding[axis])]
    channels = y.shape[1]
    ones = torch.ones((channels, 1, *kernel_size), dtype=y.dtype, device=y.device)
    return _unlifted(op, _CONV[nd](F.pad(y, pads), ones, stride=stride, dilation=dilation,
                                   groups=channels))


def _avg_pool(op: Op, x: torch.Tensor) -> torch.Tensor:
    y, a = _lifted(op, x)
    out = _AVG_POOL[y.dim() - 2](
        y, a["kernel_size"], a["stride"], a["padding"],
        ceil_mode=bool(op.attrs.get("ceil_mode", False)),
        count_include_pad=bool(op.attrs.get("count_include_pad", True)),
        divisor_override=op.attrs.get("divisor_override"))
    return _unlifted(op, out)


def _adaptive_window_sizes(in_shape: Sequence[int], out_shape: Sequence[int],
                           like: torch.Tensor) -> torch.Tensor:
    sizes = like.new_ones(())
    for axis, (n_in, n_out) in enumerate(zip(in_shape, out_shape, strict=True)):
        i = torch.arange(n_out)
        start = torch.div(i * n_in, n_out, rounding_mode="floor")
        end = torch.div((i + 1) * n_in + n_out - 1, n_out, rounding_mode="floor")
        shape = [1] * len(out_shape)
        shape[axis] = n_out
        sizes = sizes * (end - start).to(like).reshape(shape)
    return sizes


def _layer(layer: Layer, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The layer's linear map (no bias) applied to ``x``; ``weight`` in the lifting layout."""
    if layer.kind == "linear":
        return F.linear(x, weight)
    conv_args, conv_dims = layer.conv_args, layer.conv_dims
    if layer.kind == "conv_transpose":
        return _CONV_TRANSPOSE[conv_dims](x, layer.to_native(weight), None, **conv_args)
    padding = conv_args.get("padding", 0)  # module attributes: tuples, or a string
    pointwise = (all(k == 1 for k in weight.shape[2:]) and conv_args.get("groups", 1) == 1
                 and not isinstance(padding, str) and not any(padding))
    if pointwise and x.shape[0] == 1:  # a 1x1 convolution is a matrix product (faster)
        stride = conv_args.get("stride", (1,) * conv_dims)
        x = x[(slice(None), slice(None), *(slice(None, None, st) for st in stride))]
        y = weight.reshape(weight.shape[0], -1) @ x.reshape(x.shape[1], -1)
        return y.reshape(1, weight.shape[0], *x.shape[2:])
    return _CONV[conv_dims](x, weight, None, **conv_args)


def _outputs(graph: RescalingGraph, weights: Sequence[torch.Tensor],
             biases: Sequence[torch.Tensor | None], power: float) -> list[_Scaled]:
    dtype, device = weights[0].dtype, weights[0].device
    values: list[_Scaled] = []
    for index, op in enumerate(graph.ops):
        ins = [values[i] for i in op.inputs]
        if op.kind == "input":
            out = _Scaled(torch.ones((1, *op.shape), dtype=dtype, device=device), 0)
        elif op.kind == "layer":
            li = graph.layer_of_op[index]
            layer = graph.layers[li]
            src = ins[0]
            y = _layer(layer, src.value, weights[li])
            bias = biases[li]
            if bias is None:
                out = _Scaled(y, src.exponent).normalised()
            else:
                # y * 2**e + bias, written at the larger of the two scales so that neither
                # term overflows: 2**E with E = max(e, exponent of the largest bias)
                _, bias_exp = math.frexp(float(bias.detach().abs().amax()))
                top = max(src.exponent, bias_exp)
                shape = (1, -1, *([1] * (y.dim() - 2)))
                y = (_times_power_of_two(y, src.exponent - top)
                     + _times_power_of_two(bias.reshape(shape), -top))
                out = _Scaled(y, top).normalised()
        elif op.kind in ("activation", "reshape"):
            out = _Scaled(ins[0].value.reshape((1, *op.shape)), ins[0].exponent)
        elif op.kind == "maxpool":
            out = _Scaled(_sum_pool(op, ins[0].value), ins[0].exponent).normalised()
        elif op.kind == "avgpool":
            x = ins[0].value
            coef = _window_coefficients(op, x) ** power
            out = _Scaled(_sum_pool(op, x) * coef, ins[0].exponent).normalised()
        elif op.kind in ("adaptive_avgpool", "adaptive_maxpool"):
            # window sums: edges of coefficient 1 / size (average) or 1 (max)
            x = ins[0].value
            spatial_in = x.shape[2:]
            sizes = _adaptive_window_sizes(spatial_in, op.shape[1:], x)
            y = _ADAPTIVE_AVG_POOL[op.attrs["dims"]](x, op.shape[1:])  # type: ignore[arg-type]
            keep = 1.0 - power if op.kind == "adaptive_avgpool" else 1.0
            out = _Scaled(y * sizes ** keep, ins[0].exponent).normalised()
        elif op.kind == "mean":
            dims = [d + 1 for d in op.attrs["dims"]]
            x = ins[0].value
            count = math.prod(x.shape[d] for d in dims)
            y = x.mean(dim=dims, keepdim=op.attrs["keepdim"]) * count ** (1.0 - power)
            out = _Scaled(y, ins[0].exponent).normalised()
        elif op.kind == "scale":
            factor = abs(op.attrs["factor"]) ** power
            out = _Scaled(ins[0].value * factor, ins[0].exponent)
        elif op.kind == "select":  # the same entries, moved: edges of coefficient 1
            x = ins[0].value
            out = _Scaled(x[op.attrs["index"]], ins[0].exponent)
        elif op.kind == "permute":  # the same entries, moved
            out = _Scaled(ins[0].value.permute(op.attrs["perm"]), ins[0].exponent)
        elif op.kind == "gather":  # each entry a copy of one input entry: coefficient 1
            x = ins[0].value
            moved = x.reshape(1, -1)[:, op.attrs["index"].to(x.device)]
            out = _Scaled(moved.reshape(1, *op.shape), ins[0].exponent)
        elif op.kind == "interpolate":  # per axis, edges of coefficient R[i, a]
            y = ins[0].value
            for axis, r in enumerate(op.attrs["matrices"]):
                r = r.to(device=y.device, dtype=y.dtype)
                coef = torch.where(r != 0, r.abs() ** power, torch.zeros_like(r))
                y = torch.movedim(torch.tensordot(y, coef, dims=([2 + axis], [1])), -1, 2 + axis)
            out = _Scaled(y, ins[0].exponent).normalised()
        elif op.kind == "pad":  # the new entries are zeros, on no path
            out = _Scaled(F.pad(ins[0].value, op.attrs["pad"]), ins[0].exponent)
        elif op.kind == "add":
            parts, top = _aligned(ins)
            out = _Scaled(parts[0] + parts[1], top).normalised()
        elif op.kind == "cat":
            parts, top = _aligned(ins)
            out = _Scaled(torch.cat(parts, dim=op.attrs["dim"] + 1), top).normalised()
        else:  # pragma: no cover - the builder only emits the kinds above
            raise AssertionError(op.kind)
        values.append(out)
    return [values[i] for i in graph.output_ops]


def log_total(graph: RescalingGraph, weights: Sequence[torch.Tensor],
              biases: Sequence[torch.Tensor | None], *, power: float) -> torch.Tensor:
    """``log N``: log of the summed outputs of the magnitude network whose layer parameters
    are ``weights``/``biases`` (already raised to ``power``) and whose pooling and constant
    coefficients are raised to ``power``. Differentiable in ``weights`` and ``biases``."""
    outs = _outputs(graph, weights, biases, power)
    terms = torch.stack([o.exponent * math.log(2.0) + torch.log(o.value.sum()) for o in outs])
    return torch.logsumexp(terms, dim=0)


def total(graph: RescalingGraph, weights: Sequence[torch.Tensor],
          biases: Sequence[torch.Tensor | None], *, power: float) -> float:
    """``N`` itself, rounded once (exact for integer path counts below 2**53); ``inf`` if it
    exceeds float64."""
    value = 0.0
    try:
        for o in _outputs(graph, weights, biases, power):
            value += math.ldexp(float(o.value.sum()), o.exponent)
    except OverflowError:
        return math.inf
    return value


def total_differentiable(graph: RescalingGraph, weights: Sequence[torch.Tensor],
                         biases: Sequence[torch.Tensor | None], *, power: float) -> torch.Tensor:
    """``N`` as a differentiable tensor (may overflow: for the case ``N = 0`` only)."""
    outs = _outputs(graph, weights, biases, power)
    return torch.stack([_times_power_of_two(o.value.sum(), o.exponent) for o in outs]).sum()
