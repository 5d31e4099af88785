"""Weight initialisation schemes shared by the model zoo (torchvision's conventions)."""

from __future__ import annotations

from torch import nn


def init_kaiming_conv_bn(model: nn.Module, *, linear_std: float | None = None) -> None:
    """Initialise ``model`` in place the way torchvision's ResNet and VGG do.

    Convolutions get ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` and zero bias;
    BatchNorm / GroupNorm get weight 1 and bias 0. Linear layers keep PyTorch's default
    initialisation unless ``linear_std`` is given, in which case they get
    ``normal_(0, linear_std)`` and zero bias (VGG uses ``linear_std=0.01``).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d | nn.GroupNorm):
            if module.weight is not None:
                nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0.0, linear_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
