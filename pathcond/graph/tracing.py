"""Trace an ``nn.Module`` with torch.fx and record per-sample tensor shapes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from ..errors import UnsupportedModelError
from .catalog import NOT_HOMOGENEOUS_MODULES


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
        from_torch = any(c.__module__.startswith("torch.") for c in type(m).__mro__
                         if c not in (nn.Module, object))
        holds_state = any(True for _ in m.parameters()) or any(True for _ in m.buffers())
        return from_torch or holds_state

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        if self.is_leaf_module(m, ""):
            return super().call_module(m, forward, args, kwargs)
        self.inside.append((self.path_of_module(m), type(m).__name__))
        result = super().call_module(m, forward, args, kwargs)
        self.inside.pop()
        return result


def _signature(graph: fx.Graph) -> list[tuple[str, str, str]]:
    """The operations of ``graph`` with nodes named by position (tensor constants are
    named anew at every trace), to compare two traces."""
    position = {n: i for i, n in enumerate(graph.nodes)}

    def arg(a: Any) -> Any:
        if isinstance(a, fx.Node):
            return f"%{position[a]}"
        if isinstance(a, list | tuple):
            return type(a)(arg(v) for v in a)
        if isinstance(a, dict):
            return {k: arg(v) for k, v in a.items()}
        return a

    return [(n.op, "constant" if n.op == "get_attr" else str(n.target),
             repr((arg(n.args), arg(n.kwargs)))) for n in graph.nodes]


def _trace_graph(model: nn.Module, training: bool) -> tuple[fx.Graph, list[Any]]:
    """fx graph of ``model`` traced with every module's flag set to ``training`` (flags
    restored), and its signature (to compare two modes)."""
    flags = {m: m.training for m in model.modules()}
    tracer = _LeafTracer()
    try:
        model.train(training)
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
    return graph, _signature(graph)


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
    graph, signature = _trace_graph(model, training=False)
    if _trace_graph(model, training=True)[1] != signature:
        _drop_new_attributes(model, attributes)
        raise UnsupportedModelError(
            f"{type(model).__name__}.forward does different operations in train and eval "
            "mode (a branch on self.training in a module pathcond traces through): the "
            "rescaling must hold in both; move that operation into a module of its own or "
            "drop the branch")
    gm = fx.GraphModule(model, graph)  # copies the tensor constants fx set on the model
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
        model.eval()
        with torch.no_grad():
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
    return gm
