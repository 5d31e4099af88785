"""The CIFAR-10 ResNets of He et al. (2016, section 4.2): ResNet-20/32/44/56/110.

Three stages of ``n`` basic blocks with 16, 32 and 64 channels on 32x32 inputs (depth
``6n + 2``), a 3x3 stem, global average pooling and one Linear layer. Downsampling
shortcuts are "option A" (the paper's choice on CIFAR): the input subsampled by a strided
slice and zero-padded with new channels, so shortcuts have no parameters
(269,722 parameters for ResNet-20). Slicing and zero-padding are positively homogeneous:
the channels a shortcut carries are tied to the block's output channels they are added to,
and the padded ones add no unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pathcond.errors import ConfigError
from pathcond.models.init import init_kaiming_conv_bn
from pathcond.models.resnet import conv3x3


class OptionAShortcut(nn.Module):
    """``x[:, :, ::stride, ::stride]`` with ``extra`` zero channels, split between both
    sides (He et al. 2016's option A: no parameters)."""

    def __init__(self, stride: int, extra: int) -> None:
        super().__init__()
        self.stride = stride
        self.before = extra // 2
        self.after = extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        return F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, self.before, self.after))


class CifarBasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual addition; an option-A shortcut
    where the block changes the stride or the width."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if planes < in_planes:
                raise ConfigError(f"an option-A shortcut cannot narrow {in_planes} channels "
                                  f"to {planes}; give non-decreasing widths")
            self.shortcut = OptionAShortcut(stride, planes - in_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet of depth ``6n + 2``: module names conv1, bn1, relu, layer1-3,
    avgpool, fc.

    Args:
        depth: 8, 14, 20, 32, 44, 56, 110, ... (``6n + 2``, ``n >= 1`` blocks per stage).
        num_classes: outputs of ``fc``.
        in_channels: input image channels.
        widths: the channels of the three stages (16, 32, 64 in the paper), non-decreasing.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, *,
                 widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, "
                              f"110, ...); got {depth}")
        if len(widths) != 3 or any(w < 1 for w in widths):
            raise ConfigError(f"CIFAR ResNet needs three positive stage widths; got "
                              f"{list(widths)}")
        blocks = (depth - 2) // 6
        self.conv1 = conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.layer1 = self._stage(widths[0], widths[0], blocks, stride=1)
        self.layer2 = self._stage(widths[0], widths[1], blocks, stride=2)
        self.layer3 = self._stage(widths[1], widths[2], blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1], num_classes)
        init_kaiming_conv_bn(self)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        return nn.Sequential(CifarBasicBlock(in_planes, planes, stride),
                             *(CifarBasicBlock(planes, planes) for _ in range(blocks - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        out: torch.Tensor = self.fc(torch.flatten(self.avgpool(x), 1))
        return out


def cifar_resnet(depth: int = 20, num_classes: int = 10, in_channels: int = 3, *,
                 widths: Sequence[int] = (16, 32, 64)) -> CifarResNet:
    """He et al.'s CIFAR ResNet-``depth`` with option-A shortcuts (ResNet-20: 269,722
    parameters with 10 classes)."""
    return CifarResNet(depth, num_classes, in_channels, widths=widths)
