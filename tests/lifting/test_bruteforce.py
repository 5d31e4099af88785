"""Path-lifting quantities of pathcond against brute-force path enumeration (SPEC 1, 3).

Every network below is written twice: as an ``nn.Module`` and, by hand, as a unit-level DAG
(``tests.bruteforce``). The DAG is first checked to compute the module's function; then its
paths are enumerated one by one and the L1/L2 path-norms, the number of paths and the path
magnitudes are compared with pathcond's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import pathcond
from tests.bruteforce import (
    UnitDAG,
    archs,
    brute_force,
    build,
    check_dag_matches_model,
    linear_weights,
    randomize_batchnorm,
    randomize_parameters,
    spec_dag,
)

RTOL = 1e-10


# ------------------------------------------------------------------------------ networks
class MLP(nn.Module):
    def __init__(self, widths: tuple[int, ...], bias: bool):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias)
                                    for a, b in zip(widths[:-1], widths[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def mlp_dag(model: MLP) -> UnitDAG:
    g = UnitDAG()
    x = g.input((model.layers[0].in_features,))
    n = len(model.layers)
    for i in range(n):
        x = g.linear(x, model, f"layers.{i}")
        if i < n - 1:
            x = g.relu(x)
    g.output(x)
    return g


class ConvPoolNet(nn.Module):
    """Conv2d (stride, padding) -> ReLU -> MaxPool2d (padding) -> Conv2d -> ReLU ->
    AvgPool2d (padding, count_include_pad=False) -> flatten -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, stride=2, padding=1)
        self.pool1 = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(2, 2, (2, 1), padding=(1, 0), bias=False)
        self.pool2 = nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False)
        self.fc = nn.Linear(2 * 5 * 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(torch.relu(self.conv1(x)))
        x = self.pool2(torch.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def conv_pool_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((2, 9, 7))
    x = g.maxpool(g.relu(g.conv(x, model, "conv1")), 3, 2, 1)
    x = g.avgpool(g.relu(g.conv(x, model, "conv2")), 2, 1, 1, count_include_pad=False)
    g.output(g.linear(x.reshape(-1), model, "fc"))
    return g


class Conv1dNet(nn.Module):
    """Conv1d (stride, padding, dilation) -> ReLU -> AvgPool1d (ceil_mode, padding,
    count_include_pad) -> Conv1d -> ReLU -> AdaptiveAvgPool1d -> flatten -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(2, 3, 3, stride=2, padding=2, dilation=2)
        self.pool1 = nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True)
        self.conv2 = nn.Conv1d(3, 2, 2)
        self.pool2 = nn.AdaptiveAvgPool1d(2)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


def conv1d_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((2, 12))
    x = g.avgpool(g.relu(g.conv(x, model, "conv1")), 3, 2, 1, ceil_mode=True)
    x = g.adaptive_avgpool(g.relu(g.conv(x, model, "conv2")), 2)
    g.output(g.linear(x.reshape(-1), model, "fc"))
    return g


class AdaptiveNet(nn.Module):
    """AdaptiveAvgPool2d to a size that does not divide the input (overlapping windows)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2)
        self.pool = nn.AdaptiveAvgPool2d((2, 3))
        self.fc = nn.Linear(12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


def adaptive_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((1, 6, 5))
    x = g.adaptive_avgpool(g.relu(g.conv(x, model, "conv")), (2, 3))
    g.output(g.linear(x.reshape(-1), model, "fc"))
    return g


class Residual(nn.Module):
    """stem -> ReLU -> x + conv2(relu(conv1(x))) -> ReLU -> flatten -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 2)
        self.conv1 = nn.Conv2d(2, 1, 3, padding=1)
        self.conv2 = nn.Conv2d(1, 2, 1)
        self.fc = nn.Linear(2 * 2 * 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(x + self.conv2(F.relu(self.conv1(x))))
        return self.fc(torch.flatten(x, 1))


def residual_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((1, 3, 3))
    x = g.relu(g.conv(x, model, "stem"))
    h = g.conv(g.relu(g.conv(x, model, "conv1")), model, "conv2")
    x = g.relu(g.add(x, h))
    g.output(g.linear(x.reshape(-1), model, "fc"))
    return g


class InputResidual(nn.Module):
    """The residual adds the network's input itself, and a subtraction: y = x - f(x)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 3)
        self.fc3 = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x - self.fc2(F.relu(self.fc1(x)))
        return self.fc3(F.relu(h))


def input_residual_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((3,))
    h = g.add(x, g.linear(g.relu(g.linear(x, model, "fc1")), model, "fc2"), sign=-1.0)
    g.output(g.linear(g.relu(h), model, "fc3"))
    return g


class Concat(nn.Module):
    """torch.cat of two conv branches on the channel axis, and of features on dim 1."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 2)
        self.b = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.c = nn.Conv2d(3, 2, 2)
        self.d = nn.Linear(2, 2)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([F.relu(self.a(x)), self.pool(F.relu(self.b(x)))], dim=1)
        z = torch.flatten(F.relu(self.c(h)), 1)
        return self.fc(torch.cat((z, F.relu(self.d(z))), dim=1))


def concat_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((1, 3, 3))
    a = g.relu(g.conv(x, model, "a"))
    b = g.maxpool(g.relu(g.conv(x, model, "b")), 2, ceil_mode=True)
    h = g.cat([a, b], 0)
    z = g.relu(g.conv(h, model, "c")).reshape(-1)
    g.output(g.linear(g.cat([z, g.relu(g.linear(z, model, "d"))], 0), model, "fc"))
    return g


class ResidualMixedBatchNorm(nn.Module):
    """A residual addition of a Conv -> BatchNorm branch and a plain Conv (with bias) branch:
    the tied channels are rescaled through gamma/beta on one side, rows/bias on the other."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 2, bias=False)
        self.bn_a = nn.BatchNorm2d(2)
        self.b = nn.Conv2d(1, 2, 2)
        self.c = nn.Conv2d(2, 2, 1, bias=False)
        self.bn_c = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2 * 2 * 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn_a(self.a(x)) + self.b(x))
        h = F.relu(self.bn_c(self.c(h)) + h)
        return self.fc(torch.flatten(h, 1))


def residual_mixed_bn_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((1, 3, 3))
    h = g.relu(g.add(g.conv(x, model, "a", "bn_a"), g.conv(x, model, "b")))
    h = g.relu(g.add(g.conv(h, model, "c", "bn_c"), h))
    g.output(g.linear(h.reshape(-1), model, "fc"))
    return g


class SpatialCat(nn.Module):
    """Branches concatenated along the width, then pooled and convolved: channel k of both
    branches meets the same kernel (the two channels form one rescaling group)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 2)
        self.b = nn.Conv2d(1, 2, (2, 1), bias=False)
        self.pool = nn.MaxPool2d((1, 2), ceil_mode=True)
        self.c = nn.Conv2d(2, 1, 2)
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=3))
        return self.fc(torch.flatten(F.relu(self.c(h)), 1))


def spatial_cat_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((1, 3, 3))
    h = g.cat([g.relu(g.conv(x, model, "a")), g.relu(g.conv(x, model, "b"))], 2)
    h = g.maxpool(h, (1, 2), ceil_mode=True)
    g.output(g.linear(g.relu(g.conv(h, model, "c")).reshape(-1), model, "fc"))
    return g


class ReshapeIntoChannels(nn.Module):
    """Linear features reshaped into (channels, length) and convolved; a mean across the
    features of a Linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 6)
        self.conv = nn.Conv1d(2, 2, 2)
        self.fc2 = nn.Linear(4, 3)
        self.out = nn.Linear(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(x)).view(-1, 2, 3)
        h = torch.flatten(F.relu(self.conv(h)), 1)
        return self.out(F.relu(self.fc2(h)).mean(1, keepdim=True))


def reshape_into_channels_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((3,))
    h = g.relu(g.linear(x, model, "fc")).reshape(2, 3)
    h = g.relu(g.conv(h, model, "conv")).reshape(-1)
    h = g.mean(g.relu(g.linear(h, model, "fc2")), (0,), keepdim=True)
    g.output(g.linear(h, model, "out"))
    return g


class BatchNormNet(nn.Module):
    """Conv2d(no bias) -> BatchNorm2d -> ReLU -> Conv2d(bias) -> BatchNorm2d -> ReLU ->
    flatten -> Linear -> BatchNorm1d -> ReLU -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 2, 2)
        self.bn2 = nn.BatchNorm2d(2)
        self.fc1 = nn.Linear(4, 3)
        self.bn3 = nn.BatchNorm1d(3)
        self.fc2 = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


def batchnorm_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((1, 4, 3))
    x = g.relu(g.conv(x, model, "conv1", "bn1"))
    x = g.relu(g.conv(x, model, "conv2", "bn2"))
    x = g.relu(g.linear(x.reshape(-1), model, "fc1", "bn3"))
    g.output(g.linear(x, model, "fc2"))
    return g


class BatchNormConv1d(nn.Module):
    """Conv1d -> BatchNorm1d on (N, C, L) inputs; a BatchNorm without affine parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 2)
        self.bn = nn.BatchNorm1d(3)
        self.fc1 = nn.Linear(3 * 4, 3, bias=False)
        self.bn_plain = nn.BatchNorm1d(3, affine=False)
        self.fc2 = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.flatten(F.relu(self.bn(self.conv(x))), 1)
        return self.fc2(F.relu(self.bn_plain(self.fc1(h))))


def batchnorm_conv1d_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((2, 5))
    h = g.relu(g.conv(x, model, "conv", "bn")).reshape(-1)
    h = g.relu(g.linear(h, model, "fc1", "bn_plain"))
    g.output(g.linear(h, model, "fc2"))
    return g


class MeanNet(nn.Module):
    """Global average by ``x.mean((2, 3))`` and constant scalings."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x)).mean((2, 3))
        return self.fc(h * 3.0) / 2.0


def mean_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((2, 3, 4))
    h = g.mean(g.relu(g.conv(x, model, "conv")), (1, 2))
    g.output(g.scale(g.linear(g.scale(h, 3.0), model, "fc"), 0.5))
    return g


class GroupedConv(nn.Module):
    """A grouped convolution (groups=2) and LeakyReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 2)
        self.conv2 = nn.Conv2d(4, 2, 2, groups=2)
        self.fc = nn.Linear(2 * 2 * 2, 2)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv2(self.act(self.conv1(x))))
        return self.fc(x.flatten(1))


def grouped_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((2, 4, 4))
    x = g.relu(g.conv(x, model, "conv1"), 0.2)
    x = g.relu(g.conv(x, model, "conv2"), 0.2)
    g.output(g.linear(x.reshape(-1), model, "fc"))
    return g


class TwoOutputs(nn.Module):
    """A model returning two tensors: paths end at the units of either."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 3)
        self.fc2 = nn.Linear(3, 2)
        self.fc3 = nn.Linear(3, 1, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x))
        return self.fc2(h), self.fc3(h)


def two_outputs_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((3,))
    h = g.relu(g.linear(x, model, "fc1"))
    g.output(g.linear(h, model, "fc2"), g.linear(h, model, "fc3"))
    return g


class DilatedMaxPool(nn.Module):
    """MaxPool1d with dilation and ceil_mode (a window may run past the input)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 2)
        self.pool = nn.MaxPool1d(2, stride=2, dilation=2, ceil_mode=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(F.relu(self.conv(x))), 1))


def dilated_maxpool_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((1, 9))
    x = g.maxpool(g.relu(g.conv(x, model, "conv")), 2, 2, 0, 2, ceil_mode=True)
    g.output(g.linear(x.reshape(-1), model, "fc"))
    return g


class PointwiseStrided(nn.Module):
    """Strided 1x1 convolutions (the matrix-product path of the magnitude network): a
    ResNet-style downsample beside a 3x3 branch, then a strided pointwise Conv1d."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.branch = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)
        self.down = nn.Conv2d(2, 3, 1, stride=2)
        self.point = nn.Conv1d(3, 2, 1, stride=2)
        self.fc = nn.Linear(2 * 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.branch(x) + self.down(x))  # (3, 2, 2)
        x = F.relu(self.point(x.flatten(2)))  # (2, 2)
        return self.fc(x.flatten(1))


def pointwise_strided_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.relu(g.conv(g.input((1, 3, 4)), model, "stem"))
    x = g.relu(g.add(g.conv(x, model, "branch"), g.conv(x, model, "down")))
    x = g.relu(g.conv(x.reshape(3, -1), model, "point"))
    g.output(g.linear(x.reshape(-1), model, "fc"))
    return g


class SliceAndPad(nn.Module):
    """Static indexing and zero-padding of hidden features: a slice (units 0 and 4 of fc1
    reach nothing), a list index repeating a unit, zero padding on both sides."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 5)
        self.fc2 = nn.Linear(6, 3, bias=False)
        self.fc3 = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(x))[:, 1:4]
        h = torch.cat([h, h[:, [2, 0, 2]]], dim=1)
        h = F.relu(self.fc2(h))
        return self.fc3(F.pad(h, (1, 1)))


def slice_and_pad_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.input((3,))
    h = g.select(g.relu(g.linear(x, model, "fc1")), np.s_[1:4])
    h = g.cat([h, g.select(h, [2, 0, 2])], 0)
    h = g.relu(g.linear(h, model, "fc2"))
    g.output(g.linear(g.zero_pad(h, (1, 1)), model, "fc3"))
    return g


class OptionAShortcut(nn.Module):
    """The CIFAR ResNet's "option A" downsampling block (He et al. 2016): the shortcut is the
    input subsampled by a strided slice and zero-padded with new channels; then a spatial
    ZeroPad2d, a crop by negative padding and an Ellipsis slice before the head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 2, bias=False)
        self.bn = nn.BatchNorm2d(2)
        self.conv1 = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)
        self.conv2 = nn.Conv2d(3, 4, 1)
        self.pad = nn.ZeroPad2d((1, 0, 0, 1))
        self.fc = nn.Linear(4 * 3 * 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))                       # (2, 3, 3)
        h = self.conv2(F.relu(self.conv1(x)))                   # (4, 2, 2)
        short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 1, 1))    # (4, 2, 2)
        h = self.pad(F.relu(h + short))                         # (4, 3, 3)
        h = F.pad(h, (-1, 0))[..., ::2]                         # (4, 3, 1)
        return self.fc(h.flatten(1))


def option_a_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.relu(g.conv(g.input((1, 4, 4)), model, "stem", "bn"))
    h = g.conv(g.relu(g.conv(x, model, "conv1")), model, "conv2")
    short = g.zero_pad(g.select(x, np.s_[:, ::2, ::2]), (0, 0, 0, 0, 1, 1))
    h = g.zero_pad(g.relu(g.add(h, short)), (1, 0, 0, 1))
    h = g.select(g.zero_pad(h, (-1, 0)), np.s_[..., ::2])
    g.output(g.linear(h.reshape(-1), model, "fc"))
    return g


class ShuffleUnit(nn.Module):
    """A ShuffleNetV2 unit: channel split (chunk), a 1x1 - depthwise 3x3 - 1x1 branch with
    BatchNorm, concatenation, channel shuffle by view / transpose / reshape; then a split
    by sizes and a permute of the spatial dimensions before the head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 2)
        self.a = nn.Conv2d(2, 2, 1, bias=False)
        self.bn_a = nn.BatchNorm2d(2)
        self.b = nn.Conv2d(2, 2, 3, padding=1, groups=2, bias=False)
        self.bn_b = nn.BatchNorm2d(2)
        self.c = nn.Conv2d(2, 2, 1)
        self.fc = nn.Linear(3 * 2 * 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))                                     # (4, 2, 2)
        x1, x2 = x.chunk(2, dim=1)
        x2 = F.relu(self.bn_a(self.a(x2)))
        x2 = F.relu(self.c(self.bn_b(self.b(x2))))
        h = torch.cat([x1, x2], 1)
        n, c, hh, ww = h.size()
        h = h.view(n, 2, c // 2, hh, ww).transpose(1, 2).reshape(n, c, hh, ww)
        first, _ = torch.split(h, [3, 1], dim=1)                     # channel 3 dropped
        return self.fc(first.permute(0, 1, 3, 2).flatten(1))


def shuffle_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    x = g.relu(g.conv(g.input((1, 3, 3)), model, "stem"))
    x1, x2 = x[:2], x[2:]
    x2 = g.relu(g.conv(x2, model, "a", "bn_a"))
    x2 = g.relu(g.conv(g.conv(x2, model, "b", "bn_b"), model, "c"))
    h = g.cat([x1, x2], 0)
    h = g.permute(h.reshape(2, 2, 2, 2), (1, 0, 2, 3)).reshape(4, 2, 2)
    first = g.select(h, np.s_[:3])
    g.output(g.linear(g.permute(first, (0, 2, 1)).reshape(-1), model, "fc"))
    return g


class ConvTransposeNet(nn.Module):
    """A small convolutional decoder: a strided convolution with BatchNorm, a grouped strided
    transposed convolution with output padding and BatchNorm, a dilated one with a bias."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(1, 4, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.up1 = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                      groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.up2 = nn.ConvTranspose2d(6, 1, 2, dilation=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.enc(x)))                            # (4, 2, 2)
        h = F.relu(self.bn2(self.up1(h)))                            # (6, 4, 4)
        return self.up2(h)                                           # (1, 4, 4)


def conv_transpose_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    h = g.relu(g.conv(g.input((1, 4, 4)), model, "enc", "bn1"))
    h = g.relu(g.conv_transpose(h, model, "up1", "bn2"))
    g.output(g.conv_transpose(h, model, "up2"))
    return g


class ConvTranspose1dOutputSize(nn.Module):
    """``nn.ConvTranspose1d`` called with ``output_size`` (which sets the output padding in
    forward), then a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose1d(2, 3, 3, stride=3)
        self.fc = nn.Linear(3 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.up(x, output_size=[8])).flatten(1))


def conv_transpose1d_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    h = g.relu(g.conv_transpose(g.input((2, 2)), model, "up", output_size=(8,)))
    g.output(g.linear(h.reshape(-1), model, "fc"))
    return g


class Copies(nn.Module):
    """Operations that copy entries: nearest upsampling (a module, and F.interpolate to a
    size with 'nearest-exact'), a pixel shuffle, a flip, a roll and a repeat."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 2)
        self.up = nn.Upsample(scale_factor=2)
        self.shuffle = nn.PixelShuffle(2)
        self.head = nn.Conv2d(2, 1, 3, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))                                     # (4, 2, 2)
        h = self.shuffle(self.up(h))                                 # (1, 8, 8)
        h = torch.flip(h, dims=[2]).roll(1, -1)
        h = F.interpolate(h, size=(5, 3), mode="nearest-exact")      # (1, 5, 3)
        return self.head(h.repeat(1, 2, 1, 1))                       # (1, 2, 1)


def copies_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    h = g.relu(g.conv(g.input((1, 3, 3)), model, "conv"))
    h = h.repeat(2, axis=1).repeat(2, axis=2)                        # nearest, factor 2
    c, hh, ww = h.shape
    h = h.reshape(c // 4, 2, 2, hh, ww).transpose(0, 3, 1, 4, 2).reshape(c // 4, 2 * hh, 2 * ww)
    h = np.roll(np.flip(h, axis=1), 1, axis=2)

    def exact(n_in: int, n_out: int) -> list[int]:  # 'nearest-exact': centres of the cells
        return [min(int((i + 0.5) * n_in / n_out), n_in - 1) for i in range(n_out)]

    h = h[:, exact(h.shape[1], 5)][:, :, exact(h.shape[2], 3)]
    g.output(g.conv(np.concatenate([h, h], axis=0), model, "head"))
    return g


class Interpolations(nn.Module):
    """A bilinear upsampling to a size (pixel centres) and a linear one with aligned
    corners, between a convolution and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2)
        self.up = nn.Upsample(size=(3, 5), mode="bilinear")
        self.fc = nn.Linear(2 * 7, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(F.relu(self.conv(x)))                             # (2, 3, 5)
        h = F.interpolate(h.flatten(2), size=7, mode="linear", align_corners=True)
        return self.fc(F.relu(h).flatten(1))                          # (2, 7) -> 2


def interpolations_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    h = g.relu(g.conv(g.input((1, 3, 4)), model, "conv"))            # (2, 2, 3)
    h = g.interpolate(h, [linear_weights(2, 3, False), linear_weights(3, 5, False)])
    h = g.interpolate(h.reshape(2, 15), [linear_weights(15, 7, True)])
    g.output(g.linear(g.relu(h).reshape(-1), model, "fc"))
    return g


class Volumetric(nn.Module):
    """3-D layers: a convolution with BatchNorm, max-pooling with padding, a transposed
    convolution, a trilinear upsampling, average and adaptive average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 2, bias=False)
        self.bn = nn.BatchNorm3d(2)
        self.pool = nn.MaxPool3d(2, stride=1, padding=1)
        self.up = nn.ConvTranspose3d(2, 2, 2, stride=2, groups=2)
        self.smooth = nn.Upsample(size=(3, 2, 3), mode="trilinear")
        self.avg = nn.AvgPool3d(2, stride=1)
        self.head = nn.Conv3d(2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(F.relu(self.bn(self.conv(x))))                 # (2, 3, 3, 3)
        h = self.smooth(F.relu(self.up(h[:, :, :1, :1])))            # (2, 3, 2, 3)
        h = F.adaptive_avg_pool3d(self.avg(h), (1, 1, 2))            # (2, 1, 1, 2)
        return self.head(h)


def volumetric_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    h = g.relu(g.conv(g.input((1, 3, 3, 3)), model, "conv", "bn"))
    h = g.maxpool(h, 2, stride=1, padding=1)
    h = g.relu(g.conv_transpose(h[:, :1, :1], model, "up"))          # (2, 2, 2, 6)
    h = g.interpolate(h, [linear_weights(2, 3, False), linear_weights(2, 2, False),
                          linear_weights(6, 3, False)])
    h = g.adaptive_avgpool(g.avgpool(h, 2, stride=1), (1, 1, 2))
    g.output(g.conv(h, model, "head"))
    return g


class AdaptiveMax(nn.Module):
    """Adaptive max-pooling to sizes that do not divide the input (overlapping windows),
    as a module in 2-D and as a function in 1-D."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2)
        self.pool = nn.AdaptiveMaxPool2d((2, 3))
        self.fc = nn.Linear(2 * 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(F.relu(self.conv(x))).flatten(2)                # (2, 6)
        return self.fc(F.adaptive_max_pool1d(h, 2).flatten(1))


def adaptive_max_dag(model: nn.Module) -> UnitDAG:
    g = UnitDAG()
    h = g.relu(g.conv(g.input((1, 4, 5)), model, "conv"))            # (2, 3, 4)
    h = g.adaptive_maxpool(h, (2, 3)).reshape(2, 6)
    g.output(g.linear(g.adaptive_maxpool(h, 2).reshape(-1), model, "fc"))
    return g


@dataclass(frozen=True)
class Case:
    make: Callable[[], nn.Module]
    dag: Callable[[nn.Module], UnitDAG]
    input_shape: tuple[int, ...]


CASES: dict[str, Case] = {
    "mlp_bias": Case(lambda: MLP((3, 4, 3, 2), True), mlp_dag, (3,)),
    "mlp_nobias": Case(lambda: MLP((4, 5, 3, 4, 2), False), mlp_dag, (4,)),
    "conv2d_pools": Case(ConvPoolNet, conv_pool_dag, (2, 9, 7)),
    "conv1d_avgpool": Case(Conv1dNet, conv1d_dag, (2, 12)),
    "adaptive_avgpool2d": Case(AdaptiveNet, adaptive_dag, (1, 6, 5)),
    "residual": Case(Residual, residual_dag, (1, 3, 3)),
    "input_residual_sub": Case(InputResidual, input_residual_dag, (3,)),
    "concat": Case(Concat, concat_dag, (1, 3, 3)),
    "residual_mixed_bn": Case(ResidualMixedBatchNorm, residual_mixed_bn_dag, (1, 3, 3)),
    "spatial_concat": Case(SpatialCat, spatial_cat_dag, (1, 3, 3)),
    "reshape_into_channels": Case(ReshapeIntoChannels, reshape_into_channels_dag, (3,)),
    "batchnorm": Case(BatchNormNet, batchnorm_dag, (1, 4, 3)),
    "batchnorm_conv1d": Case(BatchNormConv1d, batchnorm_conv1d_dag, (2, 5)),
    "mean": Case(MeanNet, mean_dag, (2, 3, 4)),
    "grouped_conv": Case(GroupedConv, grouped_dag, (2, 4, 4)),
    "two_outputs": Case(TwoOutputs, two_outputs_dag, (3,)),
    "dilated_maxpool_ceil": Case(DilatedMaxPool, dilated_maxpool_dag, (1, 9)),
    "pointwise_strided": Case(PointwiseStrided, pointwise_strided_dag, (1, 3, 4)),
    "slice_and_pad": Case(SliceAndPad, slice_and_pad_dag, (3,)),
    "option_a_shortcut": Case(OptionAShortcut, option_a_dag, (1, 4, 4)),
    "shuffle_unit": Case(ShuffleUnit, shuffle_dag, (1, 3, 3)),
    "conv_transpose": Case(ConvTransposeNet, conv_transpose_dag, (1, 4, 4)),
    "conv_transpose1d_output_size": Case(ConvTranspose1dOutputSize, conv_transpose1d_dag,
                                         (2, 2)),
    "copies": Case(Copies, copies_dag, (1, 3, 3)),
    "interpolations": Case(Interpolations, interpolations_dag, (1, 3, 4)),
    "volumetric": Case(Volumetric, volumetric_dag, (1, 3, 3, 3)),
    "adaptive_max": Case(AdaptiveMax, adaptive_max_dag, (1, 4, 5)),
}


def make(name: str, seed: int = 0) -> tuple[nn.Module, UnitDAG]:
    case = CASES[name]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = case.make().double()
    gen = torch.Generator().manual_seed(seed + 1)
    randomize_parameters(model, gen)
    randomize_batchnorm(model, gen)
    model.eval()
    dag = case.dag(model)
    check_dag_matches_model(dag, model, case.input_shape)
    return model, dag


_CACHE: dict[str, tuple[nn.Module, UnitDAG, object]] = {}


def reference(name: str):
    if name not in _CACHE:
        model, dag = make(name)
        _CACHE[name] = (model, dag, brute_force(dag))
    return _CACHE[name]


def assert_magnitudes(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor],
                      *, normalise: bool = False) -> None:
    assert set(got) == set(want)
    g_scale = max(float(v.abs().max()) for v in got.values()) if normalise else 1.0
    w_scale = max(float(v.abs().max()) for v in want.values()) if normalise else 1.0
    for key, w in want.items():
        g = got[key]
        assert g.shape == w.shape, key
        assert g.dtype == torch.float64, key
        torch.testing.assert_close(g / g_scale, w / w_scale, rtol=RTOL,
                                   atol=RTOL * float(w.abs().max()) / w_scale, msg=key)


# ------------------------------------------------------------------------------- tests
NAMES = sorted(CASES)


@pytest.mark.parametrize("name", NAMES)
def test_dag_counts_match_dynamic_programming(name: str) -> None:
    _, dag, bf = reference(name)
    assert bf.num_paths == dag.count_paths()
    assert 10 <= bf.num_paths <= 60_000


@pytest.mark.parametrize("name", NAMES)
def test_num_paths_exact(name: str) -> None:
    model, _, bf = reference(name)
    count = pathcond.num_paths(model, CASES[name].input_shape)
    assert isinstance(count, float | int)
    assert count == bf.num_paths


@pytest.mark.parametrize("name", NAMES)
def test_num_paths_log(name: str) -> None:
    model, _, bf = reference(name)
    assert pathcond.num_paths(model, CASES[name].input_shape, log=True) == pytest.approx(
        math.log(bf.num_paths), rel=RTOL)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("q", [1, 2])
def test_path_norm(name: str, q: int) -> None:
    model, _, bf = reference(name)
    want = bf.norm1 if q == 1 else bf.norm2
    assert pathcond.path_norm(model, CASES[name].input_shape, p=q) == pytest.approx(
        want, rel=RTOL)
    assert pathcond.path_norm(model, CASES[name].input_shape, p=q, log=True) == pytest.approx(
        math.log(want), rel=RTOL, abs=RTOL)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("q", [1, 2])
def test_path_norm_coarse(name: str, q: int) -> None:
    """The same at 1e-6: tells gross errors (wrong paths) from a loss of precision."""
    model, _, bf = reference(name)
    want = bf.norm1 if q == 1 else bf.norm2
    assert pathcond.path_norm(model, CASES[name].input_shape, p=q) == pytest.approx(
        want, rel=1e-6)


@pytest.mark.parametrize("name", ["mlp_bias", "conv2d_pools", "batchnorm"])
def test_path_norm_other_q(name: str) -> None:
    model, _, bf = reference(name)
    assert pathcond.path_norm(model, CASES[name].input_shape, p=3) == pytest.approx(
        bf.norm(3.0), rel=RTOL)


@pytest.mark.parametrize("name", NAMES)
def test_path_magnitudes(name: str) -> None:
    model, _, bf = reference(name)
    assert_magnitudes(pathcond.path_magnitudes(model, CASES[name].input_shape), bf.magnitudes)


@pytest.mark.parametrize("name", NAMES)
def test_path_magnitudes_up_to_scale(name: str) -> None:
    """The relative pattern of the magnitudes alone (separates structural errors from
    errors in the overall scale)."""
    model, _, bf = reference(name)
    assert_magnitudes(pathcond.path_magnitudes(model, CASES[name].input_shape), bf.magnitudes,
                      normalise=True)


@pytest.mark.parametrize("name", NAMES)
def test_magnitudes_sum_identity(name: str) -> None:
    """sum_i theta_i^2 m_i = (path length) * ||Phi||_2^2 summed path by path: a check of the
    brute force itself (each path contributes |Phi_p|^2 once per parameter on it)."""
    _, dag, bf = reference(name)
    lhs = sum(float((torch.from_numpy(dag.params[k]) ** 2 * m).sum())
              for k, m in bf.magnitudes.items())
    rhs = math.fsum(len(keys) * (const * math.prod(float(dag.params[n][i]) for n, i in keys)) ** 2
                    for keys, const in dag.paths())
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_magnitudes_closed_form_layered_mlp() -> None:
    """SPEC section 3's closed form for a layered fully connected net, against the brute
    force (so the brute force itself is checked against an independent formula)."""
    model, _, bf = reference("mlp_bias")
    ws = [layer.weight.detach() for layer in model.layers]
    bs = [layer.bias.detach() for layer in model.layers]
    a = [torch.ones(ws[0].shape[1], dtype=torch.float64)]
    for w, b in zip(ws, bs, strict=True):
        a.append(w.square() @ a[-1] + b.square())
    c = [torch.ones(ws[-1].shape[0], dtype=torch.float64)]
    for w in reversed(ws[1:]):
        c.insert(0, w.square().T @ c[0])
    for i in range(len(ws)):
        torch.testing.assert_close(bf.magnitudes[f"layers.{i}.weight"],
                                   torch.outer(c[i], a[i]), rtol=1e-12, atol=0)
        torch.testing.assert_close(bf.magnitudes[f"layers.{i}.bias"], c[i], rtol=1e-12, atol=0)
    assert bf.norm2 ** 2 == pytest.approx(float(a[-1].sum()), rel=1e-12)


# --------------------------------------------------------------------- random architectures
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time on failure
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(arch=archs(tiny=True, upsampling=True), seed=st.integers(0, 2**31 - 1))
def test_random_architectures(arch, seed: int) -> None:
    model = build(arch, seed).eval()
    dag = spec_dag(model)
    assume(dag.count_paths() <= 20_000)
    check_dag_matches_model(dag, model, arch.in_shape)
    bf = brute_force(dag)
    shape = arch.in_shape
    assert pathcond.num_paths(model, shape) == bf.num_paths
    graph = pathcond.rescaling_graph(model, shape)
    assert pathcond.path_norm(model, graph=graph, p=1) == pytest.approx(bf.norm1, rel=RTOL)
    assert pathcond.path_norm(model, graph=graph, p=2) == pytest.approx(bf.norm2, rel=RTOL)
    assert_magnitudes(pathcond.path_magnitudes(model, graph=graph), bf.magnitudes)


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time on failure
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(arch=archs(tiny=True, upsampling=True), seed=st.integers(0, 2**31 - 1))
def test_random_architectures_structure(arch, seed: int) -> None:
    """Exact path counts and the magnitude pattern up to scale on random architectures."""
    model = build(arch, seed).eval()
    dag = spec_dag(model)
    assume(dag.count_paths() <= 20_000)
    bf = brute_force(dag)
    assert pathcond.num_paths(model, arch.in_shape) == bf.num_paths
    assert_magnitudes(pathcond.path_magnitudes(model, arch.in_shape), bf.magnitudes,
                      normalise=True)


class PoolNet(nn.Module):
    def __init__(self, pool: nn.Module, features: int, dims: int):
        super().__init__()
        self.conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(1, 2, 2)
        self.pool = pool
        self.fc = nn.Linear(features, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(F.relu(self.conv(x))), 1))


@st.composite
def pool_configs(draw):
    dims = draw(st.sampled_from([1, 2]))
    kind = draw(st.sampled_from(["max", "avg", "adaptive"]))
    size = tuple(draw(st.integers(3, 9 if dims == 1 else 6)) for _ in range(dims))
    if kind == "adaptive":
        out = tuple(draw(st.integers(1, 5)) for _ in range(dims))
        return dims, kind, size, {"output_size": out if dims == 2 else out[0]}
    k = draw(st.integers(1, 3))
    cfg = {"kernel_size": k, "stride": draw(st.integers(1, 3)),
           "padding": draw(st.integers(0, k // 2)), "ceil_mode": draw(st.booleans())}
    if kind == "max":
        cfg["dilation"] = draw(st.integers(1, 2))
    else:
        cfg["count_include_pad"] = draw(st.booleans())
        if dims == 2:
            cfg["divisor_override"] = draw(st.sampled_from([None, 5]))
    return dims, kind, size, cfg


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(config=pool_configs(), seed=st.integers(0, 2**31 - 1))
def test_random_pooling(config, seed: int) -> None:
    """Max / average / adaptive pooling with random kernel, stride, padding, dilation,
    ceil_mode, count_include_pad and divisor_override."""
    dims, kind, size, cfg = config
    cls = {("max", 1): nn.MaxPool1d, ("max", 2): nn.MaxPool2d, ("avg", 1): nn.AvgPool1d,
           ("avg", 2): nn.AvgPool2d, ("adaptive", 1): nn.AdaptiveAvgPool1d,
           ("adaptive", 2): nn.AdaptiveAvgPool2d}[(kind, dims)]
    pool = cls(**cfg)
    shape = (1, *size)
    try:
        with torch.no_grad():
            probe = pool(torch.zeros((1, 2, *(s - 1 for s in size))))
    except RuntimeError:
        assume(False)  # a configuration PyTorch itself rejects
    assume(probe.numel() > 0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = PoolNet(pool, probe[0].numel(), dims).double()
    randomize_parameters(model, torch.Generator().manual_seed(seed))
    g = UnitDAG()
    x = g.relu(g.conv(g.input(shape), model, "conv"))
    if kind == "max":
        x = g.maxpool(x, **cfg)
    elif kind == "avg":
        x = g.avgpool(x, **cfg)
    else:
        x = g.adaptive_avgpool(x, cfg["output_size"])
    g.output(g.linear(x.reshape(-1), model, "fc"))
    check_dag_matches_model(g, model, shape)
    bf = brute_force(g)
    assert pathcond.num_paths(model, shape) == bf.num_paths
    assert pathcond.path_norm(model, shape, p=1) == pytest.approx(bf.norm1, rel=RTOL)
    assert pathcond.path_norm(model, shape, p=2) == pytest.approx(bf.norm2, rel=RTOL)
    assert_magnitudes(pathcond.path_magnitudes(model, shape), bf.magnitudes)


@pytest.mark.parametrize("name", ["mlp_bias", "conv2d_pools", "batchnorm"])
def test_path_magnitudes_when_every_path_is_zero(name: str) -> None:
    """A zero output layer (a common initialisation) makes every path zero, so the path-norm
    is 0; the magnitudes of the output layer's own parameters are not: m_i multiplies the
    *other* factors of its paths (SPEC section 3)."""
    model, _ = make(name)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    dag = CASES[name].dag(model)
    bf = brute_force(dag)
    assert bf.norm2 == 0.0
    assert max(float(m.max()) for m in bf.magnitudes.values()) > 0
    shape = CASES[name].input_shape
    assert pathcond.path_norm(model, shape) == 0.0
    assert_magnitudes(pathcond.path_magnitudes(model, shape), bf.magnitudes)


@pytest.mark.parametrize("p", [0.0, -1.0, math.inf, math.nan])
def test_path_norm_rejects_bad_p(p: float) -> None:
    model, _, _ = reference("mlp_bias")
    with pytest.raises(ValueError):
        pathcond.path_norm(model, CASES["mlp_bias"].input_shape, p=p)


def test_large_path_norm_log_is_exact() -> None:
    """A deep narrow net whose path count is known in closed form: 2-wide, 1030 layers,
    no biases: 2**1031 paths overflow float64; log=True still gives the exact log."""
    depth = 1030
    model = MLP((2,) * (depth + 1), False).double()
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.fill_(1.0)
    want = math.log(2.0) * (depth + 1)  # 2 inputs, then 2 choices per layer
    assert pathcond.num_paths(model, (2,), log=True) == pytest.approx(want, rel=RTOL)
    # every path has value 1: ||Phi||_2 = sqrt(#paths)
    assert pathcond.path_norm(model, (2,), log=True) == pytest.approx(want / 2, rel=RTOL)
    with pytest.warns(RuntimeWarning):
        assert pathcond.num_paths(model, (2,)) == math.inf


def test_a_graph_of_another_model_is_refused_by_name() -> None:
    """``graph=`` traced from a model of other widths failed with "shape '[1, 5]' is invalid
    for input of size 6" from deep in the magnitude network."""
    graph = pathcond.rescaling_graph(MLP((4, 5, 2), True), (4,))
    for other in (MLP((4, 6, 2), True), nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))):
        for call in (pathcond.path_norm, pathcond.path_magnitudes, pathcond.rescale):
            with pytest.raises(ValueError, match="graph built from another model"):
                call(other, graph=graph)


@pytest.mark.parametrize("variance", [0.0, -1.0])
def test_batchnorm_without_positive_variance_is_named(variance: float) -> None:
    """running_var + eps <= 0 (eps=0 and a dead channel, or a corrupted statistic) was
    reported as "the parameters span more than float64's range"."""
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5, eps=0.0), nn.ReLU(),
                          nn.Linear(5, 2))
    with torch.no_grad():
        model[1].running_var[2] = variance
    for call in (pathcond.path_magnitudes, pathcond.path_norm, pathcond.rescale):
        with pytest.raises(pathcond.NonFiniteParameterError,
                           match=r"'1.running_var' \+ eps is not positive for 1 channel"):
            call(model, (4,))
