"""Trace an ``nn.Module`` with torch.fx and record per-sample tensor shapes."""

from __future__ import annotations

import contextlib
import operator
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import UnsupportedModelError
from .catalog import NOT_HOMOGENEOUS_MODULES


def torch_base(m: nn.Module) -> type[nn.Module] | None:
    """The first class of ``type(m)``'s hierarchy defined by torch (not ``nn.Module``)."""
    for c in type(m).__mro__:
        if c not in (nn.Module, object) and c.__module__.startswith("torch.") and issubclass(
                c, nn.Module):
            return c
    return None


def overrides_torch_forward(m: nn.Module) -> bool:
    """Whether ``m`` is a user's subclass of a torch module with a ``forward`` of its own
    (weight standardisation, a shifted ReLU, ...): it is not that torch module."""
    base = torch_base(m)
    return base is not None and base is not type(m) and type(m).forward is not base.forward


class _LeafTracer(fx.Tracer):
    """Keeps as a single call every module known to break the symmetry, every torch module
    without children (and a user's subclass of one), and every module holding its own
    parameters or buffers; containers (an empty ``nn.Sequential`` is an identity) and a
    user's parameter-free modules (a shortcut written as a module, a ``LambdaLayer``) are
    traced through, so that the operations they do are seen. ``inside`` is the stack of
    modules being traced through, for error messages."""

    def __init__(self) -> None:
        super().__init__()
        self.inside: list[tuple[str, str]] = []

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, NOT_HOMOGENEOUS_MODULES):
            return True
        if isinstance(m, nn.Sequential | nn.ModuleList | nn.ModuleDict):
            return False
        if any(True for _ in m.children()):
            return False
        holds_state = any(True for _ in m.parameters()) or any(True for _ in m.buffers())
        if overrides_torch_forward(m):  # its own forward: followed, or refused by name
            return holds_state
        return torch_base(m) is not None or holds_state

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        if self.is_leaf_module(m, ""):
            return super().call_module(m, forward, args, kwargs)
        self.inside.append((self.path_of_module(m), type(m).__name__))
        result = super().call_module(m, forward, args, kwargs)
        self.inside.pop()
        return result


def _signature(graph: fx.Graph, root: nn.Module) -> list[tuple[str, str, str]]:
    """The operations of ``graph`` with nodes named by position (tensor constants are
    named anew at every trace), to compare two traces."""
    skip = {n: n.args[0] for n in graph.nodes if _is_dropout(n, root) and n.args
            and isinstance(n.args[0], fx.Node)}

    def resolve(n: fx.Node) -> fx.Node:
        while n in skip:
            n = skip[n]
        return n

    position = {n: i for i, n in enumerate(n for n in graph.nodes if n not in skip)}

    def arg(a: Any) -> Any:
        if isinstance(a, fx.Node):
            return f"%{position[resolve(a)]}"
        if isinstance(a, list | tuple):
            return type(a)(arg(v) for v in a)
        if isinstance(a, dict):
            return {k: arg(v) for k, v in a.items()}
        return a

    return [(n.op, "constant" if n.op == "get_attr" else str(n.target),
             repr((arg(n.args), arg(n.kwargs)))) for n in graph.nodes if n not in skip]


DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, torch.dropout}


def _is_dropout(node: fx.Node, root: nn.Module) -> bool:
    """Dropout is the identity in eval mode: ``F.dropout(x, training=self.training)`` or a
    dropout only applied in training gives the same graph in both modes otherwise."""
    if node.op == "call_function":
        return node.target in DROPOUT_FUNCTIONS
    if node.op == "call_module":
        module = root.get_submodule(str(node.target))
        return isinstance(module, nn.Dropout | nn.Dropout1d | nn.Dropout2d | nn.Dropout3d)
    return False


def _trace_graph(model: nn.Module, training: bool) -> tuple[fx.Graph, list[Any]]:
    """fx graph of ``model`` traced with every module's flag set to ``training`` (flags
    restored), and its signature (to compare two modes)."""
    flags = {m: m.training for m in model.modules()}
    tracer = _LeafTracer()
    try:
        for m in flags:  # the flags alone: a user's train() override may do more
            m.training = training
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many types; all mean "cannot follow this model"
        where = ""
        if tracer.inside:
            name, kind = tracer.inside[-1]
            where = f" (inside module '{name}' ({kind}))" if name else ""
        raise UnsupportedModelError(
            f"torch.fx could not trace {type(model).__name__}{where}: {_first_line(exc)}. "
            "Data-dependent control flow is not supported."
        ) from exc
    finally:
        for m, flag in flags.items():
            m.training = flag
    return graph, _signature(graph, model)


_PLAIN_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class TensorShape:
    """``node.meta["tensor_meta"]``: the shape of the tensor a node computes (batch first)."""

    shape: torch.Size


class _NodeFailure(Exception):
    """A node of the traced graph raised: ``node`` and the original exception."""

    def __init__(self, node: fx.Node, error: BaseException) -> None:
        super().__init__(str(error))
        self.node, self.error = node, error


class _ShapeRecorder(fx.Interpreter):
    """Runs the traced graph and records the shape of every tensor a node computes. Plain
    convolutions are not computed: their output shape comes from the same call on meta
    tensors, and zeros of that shape go on (values are not used, only shapes; the
    convolutions were most of the time of tracing a ResNet at 224x224)."""

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except _NodeFailure:
            raise
        except Exception as exc:
            raise _NodeFailure(n, exc) from exc
        if isinstance(result, torch.Tensor):
            n.meta["tensor_meta"] = TensorShape(result.shape)
        return result

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        module = self.fetch_attr(target)
        if (type(module) in _PLAIN_CONVS and len(args) == 1 and not kwargs
                and isinstance(args[0], torch.Tensor)):
            x = args[0]
            shape = module._conv_forward(x.to("meta"), module.weight.to("meta"), None).shape
            return torch.zeros(shape, dtype=x.dtype, device=x.device)
        return super().call_module(target, args, kwargs)


def _drop_new_attributes(model: nn.Module, before: set[str]) -> None:
    """Remove the tensor constants fx stores on the traced model (``_tensor_constant0``)."""
    for name in set(vars(model)) - before:
        if name.startswith("_tensor_constant"):
            delattr(model, name)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _refuse_wrapper(model: nn.Module) -> None:
    """torch.compile and data-parallel wrappers cannot be traced, and the names of their
    parameters carry a prefix; the module they wrap shares their parameters."""
    if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        inner, how = "module", "data-parallel"
    elif type(model).__name__ == "OptimizedModule" and isinstance(
            getattr(model, "_orig_mod", None), nn.Module):
        inner, how = "_orig_mod", "torch.compile"
    else:
        return
    raise UnsupportedModelError(
        f"{type(model).__name__} is a {how} wrapper: pass the module it wraps (model.{inner}), "
        "which shares its parameters, so rescaling it changes the wrapped model too")


def trace(model: nn.Module, input_shape: Sequence[int]) -> fx.GraphModule:
    """Symbolically trace ``model`` and annotate every node with its tensor shape.

    Shapes are propagated with a batch of two zero samples (so that batch mixing shows) in
    eval mode under ``no_grad``; the model's training flags are restored afterwards, so
    running statistics never change.
    """
    _refuse_wrapper(model)
    if not any(True for _ in model.children()) and any(True for _ in model.parameters()):
        raise UnsupportedModelError(
            f"{type(model).__name__} has no submodules: pathcond follows the layers a model "
            "calls as submodules (nn.Linear, nn.Conv2d, ...); wrap a single layer as "
            "nn.Sequential(layer)")
    attributes = set(vars(model))
    try:
        graph, signature = _trace_graph(model, training=False)
        if _trace_graph(model, training=True)[1] != signature:
            raise UnsupportedModelError(
                f"{type(model).__name__}.forward does different operations in train and eval "
                "mode (a branch on self.training in a module pathcond traces through): the "
                "rescaling must hold in both; move that operation into a module of its own "
                "or drop the branch")
        gm = fx.GraphModule(model, graph)  # copies the tensor constants fx set on the model
    finally:
        _drop_new_attributes(model, attributes)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedModelError(
            f"{type(model).__name__}.forward takes {len(placeholders)} tensor inputs; "
            "pathcond supports models with exactly one input tensor"
        )
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    flags = {m: m.training for m in model.modules()}
    try:
        for m in flags:
            m.training = False
        with torch.no_grad(), torch.random.fork_rng(  # a lazy module's init draws numbers
                devices=[device] if device.type == "cuda" else []):
            _ShapeRecorder(gm).run(torch.zeros((2, *input_shape), device=device, dtype=dtype))
    except _NodeFailure as failure:
        node = failure.node
        where = f"{node.target} ({type(gm.get_submodule(str(node.target))).__name__})" \
            if node.op == "call_module" else str(node.target)
        raise UnsupportedModelError(
            f"{type(model).__name__} does not run on an input of shape {tuple(input_shape)} "
            f"(per sample): {where}: {_first_line(failure.error)}") from failure.error
    finally:
        for m, flag in flags.items():
            m.training = flag
    if device.type != "meta" and _needs_value_check(model, gm.graph):
        _check_faithful(model, gm, tuple(input_shape), device, dtype)
    return gm


_ARITHMETIC = {operator.add, operator.sub, operator.mul, operator.truediv}
#: Operations whose result may be a view of their first argument (shared with the
#: builder's alias analysis).
VIEW_FUNCTIONS = {operator.getitem, torch.flatten, torch.reshape, torch.squeeze,
                  torch.unsqueeze, torch.narrow, torch.transpose, torch.permute,
                  torch.swapaxes, torch.chunk, torch.split}
VIEW_METHODS = {"view", "view_as", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze",
                "contiguous", "detach", "expand", "expand_as", "t", "transpose", "permute",
                "swapaxes", "swapdims", "narrow", "chunk", "split"}
_VIEWS = VIEW_FUNCTIONS | VIEW_METHODS


def _needs_value_check(model: nn.Module, graph: fx.Graph) -> bool:
    """Whether what fx recorded may differ from what the model computes: a module with
    forward hooks, or an arithmetic node that may be the trace of an in-place ``v += y``
    (its first operand is a view, or is read again afterwards). Otherwise the check's two
    forward passes are skipped."""
    if any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        return True
    order = {n: i for i, n in enumerate(graph.nodes)}
    for n in graph.nodes:
        first = n.args[0] if n.args else None
        if n.op != "call_function" or n.target not in _ARITHMETIC or not isinstance(
                first, fx.Node):
            continue
        is_view = first.target in _VIEWS if first.op in ("call_function", "call_method") \
            else False
        if is_view or any(order[u] > order[n] for u in first.users):
            return True
    return False


@contextlib.contextmanager
def _without_hooks(model: nn.Module) -> Iterator[None]:
    """The model's modules without their forward hooks and pre-hooks (what fx recorded)."""
    saved = [(m, m._forward_hooks, m._forward_pre_hooks) for m in model.modules()]
    try:
        for m, _, _ in saved:
            m._forward_hooks, m._forward_pre_hooks = OrderedDict(), OrderedDict()
        yield
    finally:
        for m, hooks, pre_hooks in saved:
            m._forward_hooks, m._forward_pre_hooks = hooks, pre_hooks


def _check_faithful(model: nn.Module, gm: fx.GraphModule, input_shape: tuple[int, ...],
                    device: torch.device, dtype: torch.dtype) -> None:
    """The traced graph computes what the model computes (eval mode, a batch of three
    random samples, where shapes were recorded with two): torch.fx does not see forward
    hooks, and records ``v += y`` as ``v = v + y`` even where ``v`` shares its memory with a
    tensor read again later."""
    flags = {m: m.training for m in model.modules()}
    try:
        for m in flags:
            m.training = False
        with torch.no_grad(), torch.random.fork_rng(
                devices=[device] if device.type == "cuda" else []):
            gen = torch.Generator(device=device).manual_seed(0)
            x = torch.randn((3, *input_shape), generator=gen, device=device, dtype=dtype)
            try:
                want = model(x)
                with _without_hooks(model):
                    got = gm(x)
            except Exception as exc:  # the model's own error, on another batch size
                raise UnsupportedModelError(
                    f"{type(model).__name__} runs on a batch of 2 samples but not on a batch "
                    f"of 3: {_first_line(exc)}; the batch dimension must be free") from exc
    finally:
        for m, flag in flags.items():
            m.training = flag
    wants = want if isinstance(want, tuple | list) else (want,)
    gots = got if isinstance(got, tuple | list) else (got,)
    for w, g in zip(wants, gots, strict=False):
        if not (isinstance(w, torch.Tensor) and isinstance(g, torch.Tensor)):
            continue
        scale = float(w.detach().abs().nan_to_num(0.0, 0.0, 0.0).max()) if w.numel() else 0.0
        if w.shape != g.shape or not torch.allclose(
                g.float(), w.float(), rtol=1e-4, atol=1e-5 * max(scale, 1e-30),
                equal_nan=True):
            raise UnsupportedModelError(
                f"{type(model).__name__}: torch.fx's trace does not compute what the model "
                "computes (a forward hook that changes outputs, or an in-place update such "
                "as v += y of a tensor that shares its memory with one read again later); "
                "remove the hook or write the update out of place (v = v + y)")
