"""The model zoo: the architectures of the paper's experiments (SPEC section 6)."""

from pathcond.models.alexnet import AlexNet, alexnet
from pathcond.models.autoencoder import MnistAutoencoder, autoencoder_widths
from pathcond.models.cifar_nv import CifarNV
from pathcond.models.cifar_resnet import CifarResNet, cifar_resnet
from pathcond.models.conv_autoencoder import ConvAutoencoder
from pathcond.models.counting import (
    count_hidden_units,
    count_parameters,
    unit_layers_in_forward_order,
)
from pathcond.models.mlp import MLP, mlp_bn
from pathcond.models.registry import (
    MODELS,
    ModelSpec,
    available_models,
    get_model,
    is_user_model,
    load_model_builder,
    model_input_shape,
)
from pathcond.models.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    tiny_resnet,
)
from pathcond.models.toy import OneNeuron
from pathcond.models.vgg import VGG, vgg16

__all__ = [
    "MLP",
    "MODELS",
    "VGG",
    "AlexNet",
    "BasicBlock",
    "Bottleneck",
    "CifarNV",
    "CifarResNet",
    "ConvAutoencoder",
    "MnistAutoencoder",
    "ModelSpec",
    "OneNeuron",
    "ResNet",
    "alexnet",
    "autoencoder_widths",
    "available_models",
    "cifar_resnet",
    "count_hidden_units",
    "count_parameters",
    "get_model",
    "is_user_model",
    "load_model_builder",
    "mlp_bn",
    "model_input_shape",
    "resnet18",
    "resnet34",
    "resnet50",
    "tiny_resnet",
    "unit_layers_in_forward_order",
    "vgg16",
]
