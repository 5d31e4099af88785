"""ResNets with torchvision's exact layout and parameter names (SPEC section 6, Table 1).

``resnet18`` / ``resnet34`` / ``resnet50`` reproduce torchvision's ImageNet definitions
(11,689,512 / 21,797,672 / 25,557,032 parameters); ``tiny_resnet`` is a few-channel variant
with a CIFAR stem for fast tests. Residual additions are out of place and every ``forward``
is traceable by ``torch.fx.symbolic_trace``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from pathcond.errors import ConfigError
from pathcond.models.init import init_kaiming_conv_bn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (torchvision's ``conv3x3``)."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias (torchvision's ``conv1x1``)."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: two 3x3 convs with BatchNorm and a residual add."""

    expansion: ClassVar[int] = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = out + identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck block (v1.5: stride on the 3x3 conv), expansion 4."""

    expansion: ClassVar[int] = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = out + identity
        return self.relu(out)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """ResNet with torchvision's module names: conv1, bn1, relu, maxpool, layer1.., avgpool, fc.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: number of blocks per stage; stage ``i`` is the attribute ``layer{i+1}``.
        num_classes: outputs of ``fc``.
        in_channels: input image channels.
        widths: base channels of each stage (torchvision: 64, 128, 256, 512); the stem has
            ``widths[0]`` channels.
        stem: ``"imagenet"`` (7x7 stride-2 conv + 3x3 stride-2 max-pool, as torchvision) or
            ``"cifar"`` (3x3 stride-1 conv, no max-pool: ``self.maxpool`` is ``None``).
        zero_init_residual: zero the last BatchNorm weight of each block (torchvision option).
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: str = "imagenet",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != len(widths) or not layers:
            raise ConfigError(
                f"ResNet needs one width per stage; got layers={list(layers)}, "
                f"widths={list(widths)}"
            )
        if any(n < 1 for n in layers) or any(w < 1 for w in widths):
            raise ConfigError(
                f"ResNet layers and widths must be positive; got {list(layers)}, {list(widths)}"
            )
        self.inplanes = widths[0]
        self.maxpool: nn.MaxPool2d | None
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(
                in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False
            )
            self.bn1 = nn.BatchNorm2d(self.inplanes)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        elif stem == "cifar":
            self.conv1 = conv3x3(in_channels, self.inplanes)
            self.bn1 = nn.BatchNorm2d(self.inplanes)
            self.relu = nn.ReLU()
            self.maxpool = None
        else:
            raise ConfigError(f"ResNet stem must be 'imagenet' or 'cifar'; got {stem!r}")
        self.stage_names: tuple[str, ...] = tuple(f"layer{i + 1}" for i in range(len(layers)))
        for i, (name, planes, blocks) in enumerate(
            zip(self.stage_names, widths, layers, strict=True)
        ):
            setattr(self, name, self._make_layer(block, planes, blocks, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        init_kaiming_conv_bn(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        modules: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        modules.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        out: torch.Tensor = self.fc(x)
        return out


def resnet18(num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """torchvision's ResNet-18 (11,689,512 parameters with 1000 classes; SPEC Table 1)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels)


def resnet34(num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """torchvision's ResNet-34 (21,797,672 parameters with 1000 classes; SPEC Table 1)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels)


def resnet50(num_classes: int = 1000, in_channels: int = 3) -> ResNet:
    """torchvision's ResNet-50 (25,557,032 parameters with 1000 classes; SPEC Table 1)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels)


def tiny_resnet(
    num_classes: int = 10,
    in_channels: int = 3,
    *,
    widths: Sequence[int] = (8, 16, 32),
    blocks: Sequence[int] = (1, 1, 1),
    bottleneck: bool = False,
) -> ResNet:
    """A few-channel ResNet with a CIFAR stem (3x3 conv, no max-pool) for fast tests.

    Same module layout and names as torchvision's ResNet; every stage after the first
    halves the resolution and has a ``downsample`` branch, so residual groups are exercised.
    Works on inputs of 8x8 and up (32x32 by default in the registry).
    """
    block: Block = Bottleneck if bottleneck else BasicBlock
    return ResNet(block, blocks, num_classes, in_channels, widths=widths, stem="cifar")
