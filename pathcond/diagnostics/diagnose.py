"""``pathcond diagnose``: how far a model is from its PathCond rescaling.

Reports the AM/GM ratio of the path magnitudes before and after PathCond, the largest
log-scales of each layer, optionally PathCond seen as per-parameter learning-rate factors
``exp(-2 B u)`` (:mod:`pathcond.rescale.preconditioning`), and for layered fully connected
networks the Appendix J
prediction of the mean path magnitude of each layer (SPEC section 3)::

    E m[W_l] = E c_l * E a_{l-1},   E a_l = n_{l-1} E[W_l^2] E a_{l-1} + E[b_l^2],
    E c_{l-1} = n_l E[W_l^2] E c_l,  a_0 = 1, c_L = 1,

which with Kaiming's ``E[W_l^2] = 2 / n_{l-1}`` and no biases is ``2^{L-1} n_L / n_l``.
The prediction assumes independent weights; "measured" is the mean of the exact path
magnitudes of the layer's weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..graph import rescaling_graph
from ..lifting import path_magnitudes
from ..rescale import RescaleReport, geometric_mean, learning_rate_factors, rescale

__all__ = ["AppendixJRow", "Diagnosis", "LayerScales", "ParameterLrFactors", "appendix_j",
           "diagnose", "load_model_source"]


@dataclass(frozen=True)
class LayerScales:
    """The PathCond log-scales of one layer's output units."""

    layer: str
    units: int
    rescaled_units: int
    mean: float
    max_abs: float
    top: tuple[tuple[int, float], ...]  # (unit, log-scale), largest |u| first


@dataclass(frozen=True)
class ParameterLrFactors:
    """PathCond's learning-rate factors ``exp(-2 B u)`` on the entries of one parameter: SGD
    on the rescaled network is SGD on the original with each entry's learning rate times its
    factor (docs/batchnorm.md)."""

    name: str
    entries: int
    geometric_mean: float
    min: float
    max: float


@dataclass(frozen=True)
class AppendixJRow:
    """Predicted and measured mean path magnitude of the weights of layer ``l``."""

    layer: str
    index: int
    n_in: int
    n_out: int
    second_moment_ratio: float  # E[W_l^2] * n_{l-1} / 2 (1 for Kaiming)
    predicted_kaiming: float    # 2^{L-1} n_L / n_l
    predicted: float            # with the layer's measured E[W^2] and E[b^2]
    measured: float
    measured_after: float       # after PathCond


@dataclass(frozen=True)
class Diagnosis:
    """Everything ``pathcond diagnose`` prints."""

    report: RescaleReport
    layers: tuple[LayerScales, ...]
    appendix_j: tuple[AppendixJRow, ...] | None
    appendix_j_note: str
    #: per rescaled parameter, in the model's order; ``None`` unless asked for
    lr_factors: tuple[ParameterLrFactors, ...] | None = None

    def lines(self) -> list[str]:
        r = self.report
        status = "converged" if r.converged else "NOT converged"
        out = [
            f"AM/GM of the path magnitudes: {r.am_gm_before:.6g} before PathCond, "
            f"{r.am_gm_after:.6g} after ({r.solver}, {r.sweeps} sweeps, {status}, "
            f"{r.seconds:.2f} s)",
            f"{r.num_groups:,} rescaling groups, G = {r.num_parameters:,} parameters"
            + (f"; {len(r.dead_groups)} dead group(s) left at 0" if r.dead_groups else ""),
            "largest PathCond log-scales u per layer (incoming weights x e^u, outgoing x e^-u):",
        ]
        width = max((len(s.layer) for s in self.layers), default=5)
        for s in self.layers:
            if s.rescaled_units == 0:
                out.append(f"  {s.layer:<{width}}  {s.units:>6} units  (not rescaled: output)")
                continue
            tops = ", ".join(f"[{unit}] {u:+.3f}" for unit, u in s.top)
            out.append(f"  {s.layer:<{width}}  {s.units:>6} units  mean {s.mean:+.3f}  "
                       f"max|u| {s.max_abs:.3f}" + (f"  largest: {tops}" if tops else ""))
        if self.lr_factors is not None:
            out.append("PathCond as learning rates: SGD on the rescaled network is SGD on this "
                       "one with each entry's lr times exp(-2 B u):")
            name_width = max((len(f.name) for f in self.lr_factors), default=9)
            out.append(f"  {'parameter':<{name_width}}  {'entries':>9} {'geo. mean':>10} "
                       f"{'min':>10} {'max':>10}")
            for f in self.lr_factors:
                out.append(f"  {f.name:<{name_width}}  {f.entries:>9,} {f.geometric_mean:>10.4g} "
                           f"{f.min:>10.4g} {f.max:>10.4g}")
        out.append(self.appendix_j_note)
        if self.appendix_j:
            out.append(f"  {'layer':<{width}}  {'n_in':>6} {'n_out':>6} {'nE[W²]/2':>9} "
                       f"{'Kaiming':>11} {'predicted':>11} {'measured':>11} {'meas/pred':>9} "
                       f"{'after PC':>11}")
            for row in self.appendix_j:
                ratio = row.measured / row.predicted if row.predicted > 0 else math.nan
                out.append(f"  {row.layer:<{width}}  {row.n_in:>6} {row.n_out:>6} "
                           f"{row.second_moment_ratio:>9.3f} {row.predicted_kaiming:>11.4g} "
                           f"{row.predicted:>11.4g} {row.measured:>11.4g} {ratio:>9.3f} "
                           f"{row.measured_after:>11.4g}")
        return out


def _layer_scales(graph: Any, log_scales: torch.Tensor, top: int) -> tuple[LayerScales, ...]:
    out = []
    u_all = log_scales.detach().to(torch.float64).cpu()
    for layer in graph.layers:
        groups = layer.row_groups.detach().cpu().reshape(-1)
        mask = groups >= 0
        units = int(groups.numel())
        if not bool(mask.any()):
            out.append(LayerScales(layer.name, units, 0, 0.0, 0.0, ()))
            continue
        idx = torch.nonzero(mask).reshape(-1)
        u = u_all[groups[idx]]
        order = torch.argsort(u.abs(), descending=True)[:top]
        out.append(LayerScales(
            layer.name, units, int(idx.numel()), float(u.mean()), float(u.abs().max()),
            tuple((int(idx[i]), float(u[i])) for i in order.tolist())))
    return tuple(out)


def _linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]] | None:
    """The Linear layers of a layered MLP without BatchNorm, else ``None``."""
    from ..models import MLP

    if not isinstance(model, MLP):
        return None
    if any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in model.modules()):
        return None
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def appendix_j(model: nn.Module, input_shape: Sequence[int], *,
               after: nn.Module | None = None) -> tuple[tuple[AppendixJRow, ...] | None, str]:
    """Predicted against measured mean path magnitude per layer of a layered MLP.

    Returns ``(rows, note)``; ``rows`` is ``None`` (and ``note`` says why) for other models.
    """
    layers = _linear_layers(model)
    if layers is None:
        return None, ("Appendix J prediction: only for layered MLPs (pathcond.models.MLP "
                      "without BatchNorm); not applicable here")
    widths = [layers[0][1].in_features] + [m.out_features for _, m in layers]
    depth = len(layers)
    with torch.no_grad():
        s = [float(m.weight.detach().double().square().mean()) for _, m in layers]
        beta = [float(m.bias.detach().double().square().mean()) if m.bias is not None else 0.0
                for _, m in layers]
    a = [1.0]
    for li in range(depth):
        a.append(widths[li] * s[li] * a[-1] + beta[li])
    c = [1.0] * (depth + 1)
    for li in range(depth, 0, -1):
        c[li - 1] = widths[li] * s[li - 1] * c[li]
    measured = path_magnitudes(model, input_shape)
    measured_after = path_magnitudes(after, input_shape) if after is not None else None
    rows = []
    for li, (name, _) in enumerate(layers, start=1):
        key = f"{name}.weight"
        m_mean = float(measured[key].mean())
        m_after = float(measured_after[key].mean()) if measured_after is not None else math.nan
        rows.append(AppendixJRow(
            layer=name, index=li, n_in=widths[li - 1], n_out=widths[li],
            second_moment_ratio=s[li - 1] * widths[li - 1] / 2.0,
            predicted_kaiming=2.0 ** (depth - 1) * widths[-1] / widths[li],
            predicted=c[li] * a[li - 1], measured=m_mean, measured_after=m_after))
    has_bias = any(b > 0 for b in beta)
    note = ("Appendix J (layered MLP): mean path magnitude per layer; Kaiming column "
            "2^(L-1) n_L/n_l assumes E[W_l²] = 2/n_(l-1) and no biases, 'predicted' uses the "
            "layer's own E[W²]" + (" and E[b²]" if has_bias else "") + ":")
    return tuple(rows), note


def _lr_factors(model: nn.Module, graph: Any, log_scales: torch.Tensor
                ) -> tuple[ParameterLrFactors, ...]:
    factors = learning_rate_factors(model, graph, log_scales)
    out = []
    for name, _ in model.named_parameters():
        if name not in factors:
            continue
        f = factors[name].reshape(-1)
        out.append(ParameterLrFactors(name, int(f.numel()), geometric_mean([f], digits=None),
                                      float(f.min()), float(f.max())))
    return tuple(out)


def diagnose(model: nn.Module, input_shape: Sequence[int], *, top: int = 3,
             solver: str = "newton", lr_factors: bool = False) -> Diagnosis:
    """Diagnose ``model`` (left unchanged: PathCond runs on a copy); with ``lr_factors``,
    also PathCond's per-parameter learning-rate factors."""
    graph = rescaling_graph(model, input_shape)
    rescaled = copy.deepcopy(model)
    report = rescale(rescaled, input_shape, solver=solver)  # type: ignore[arg-type]
    layers = _layer_scales(graph, report.log_scales, top)
    rows, note = appendix_j(model, input_shape, after=rescaled)
    factors = _lr_factors(model, graph, report.log_scales) if lr_factors else None
    return Diagnosis(report, layers, rows, note, factors)


def kaiming_init(model: nn.Module) -> None:
    """Kaiming normal weights (``E[W^2] = 2 / fan_in``) and zero biases, for Appendix J. A
    transposed convolution's output entry reads ``in_per_group * kernel / stride`` weights
    on average: that is its fan-in."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d):
                fan_in = m.in_channels // m.groups * math.prod(m.kernel_size) / math.prod(
                    m.stride)
                nn.init.normal_(m.weight, std=math.sqrt(2.0 / fan_in))
            else:
                continue
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def load_model_source(source: str, args: Mapping[str, Any], *, seed: int = 0,
                      init: str = "default", input_shape: Sequence[int] | None = None
                      ) -> tuple[nn.Module, tuple[int, ...], str]:
    """A zoo model name or a model of the user's (``package.module:callable``; built with
    ``args``, seeded; ``input_shape`` is needed for the latter) or a checkpoint / run
    directory.

    Returns the model, one sample's shape, and a title line.
    """
    from ..models import (
        available_models,
        get_model,
        is_user_model,
        load_model_builder,
        model_input_shape,
    )

    if init not in ("default", "kaiming"):
        raise ConfigError(f"init must be default or kaiming, got {init!r}")
    if source in available_models() or (is_user_model(source) and not Path(source).exists()):
        shape = tuple(input_shape) if input_shape is not None else tuple(
            model_input_shape(source, **dict(args)))
        load_model_builder(source)  # a model of yours is imported before seeding
        torch.manual_seed(seed)
        model = get_model(source, **dict(args))
        if init == "kaiming":
            kaiming_init(model)
        what = "Kaiming normal, zero biases" if init == "kaiming" else "default"
        return model, shape, f"{source} (input {shape}, {what} init, seed {seed})"
    p = Path(source)
    if p.exists():
        if args or input_shape is not None:
            raise ConfigError("--arg and --input-shape apply to models built here, not to "
                              "checkpoints")
        from .checkpoints import model_from_checkpoint, read_checkpoint

        state, path = read_checkpoint(p)
        model, shape, cfg = model_from_checkpoint(state, path)
        if init == "kaiming":
            raise ConfigError("--init kaiming applies to zoo models, not to checkpoints")
        return model, shape, (f"{cfg.model.name} from {path} (epoch {state['epoch']}, "
                              f"method {cfg.method.name})")
    raise ConfigError(f"{source!r} is neither a zoo model ({', '.join(available_models())}) "
                      "nor an existing checkpoint or run directory")
