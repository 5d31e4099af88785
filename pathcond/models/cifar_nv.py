"""CIFAR-NV, the fully convolutional net of Gitman & Ginsburg 2017 (paper Fig 3, Table 1)."""

from __future__ import annotations

import torch
from torch import nn

from pathcond.models.init import init_kaiming_conv_bn


def _conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False)


class CifarNV(nn.Module):
    """CIFAR-NV exactly as SPEC section 6: nine bias-free convolutions, 2,616,576 parameters.

    ``conv1-3`` (3x3, 128 ch) -> BN -> ReLU -> MaxPool(3, 2, 1); ``conv4-6`` (3x3, 256 ch) ->
    BN -> ReLU -> MaxPool(3, 2, 1); ``conv7`` 3x3 256->320, ``conv8`` 1x1 320->320, ``conv9``
    1x1 320->num_classes; ReLU after every conv (after the BatchNorm for conv3 and conv6);
    AvgPool2d(8) and flatten. All 3x3 convolutions use padding 1, so a 32x32 input is 8x8
    before the average pool. ``final_batchnorm=True`` adds ``bn9`` (BatchNorm2d(num_classes))
    right after conv9 and before its ReLU, as in the paper's Fig 3 runs.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, final_batchnorm: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, 128, 3)
        self.conv2 = _conv(128, 128, 3)
        self.conv3 = _conv(128, 128, 3)
        self.bn3 = nn.BatchNorm2d(128)
        self.pool1 = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv4 = _conv(128, 256, 3)
        self.conv5 = _conv(256, 256, 3)
        self.conv6 = _conv(256, 256, 3)
        self.bn6 = nn.BatchNorm2d(256)
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv7 = _conv(256, 320, 3)
        self.conv8 = _conv(320, 320, 1)
        self.conv9 = _conv(320, num_classes, 1)
        self.bn9: nn.BatchNorm2d | None = nn.BatchNorm2d(num_classes) if final_batchnorm else None
        self.relu = nn.ReLU()
        self.avgpool = nn.AvgPool2d(8)
        self.final_batchnorm = final_batchnorm
        init_kaiming_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.pool1(x)
        x = self.relu(self.conv4(x))
        x = self.relu(self.conv5(x))
        x = self.relu(self.bn6(self.conv6(x)))
        x = self.pool2(x)
        x = self.relu(self.conv7(x))
        x = self.relu(self.conv8(x))
        x = self.conv9(x)
        if self.bn9 is not None:
            x = self.bn9(x)
        x = self.relu(x)
        x = self.avgpool(x)
        return torch.flatten(x, 1)
