"""Registry of the model zoo: names -> constructors and per-sample input shapes (SPEC sec. 6)."""

from __future__ import annotations

import functools
import importlib
import inspect
import numbers
import os
import sys
import types
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from pathcond.errors import ConfigError
from pathcond.models.alexnet import alexnet
from pathcond.models.autoencoder import MNIST_PIXELS, MnistAutoencoder
from pathcond.models.cifar_nv import CifarNV
from pathcond.models.cifar_resnet import cifar_resnet
from pathcond.models.conv_autoencoder import ConvAutoencoder
from pathcond.models.mlp import MLP, mlp_bn
from pathcond.models.resnet import resnet18, resnet34, resnet50, tiny_resnet
from pathcond.models.toy import OneNeuron
from pathcond.models.vgg import vgg16

#: Default widths of the "mlp" entry: the thesis's MNIST network 784-64x4-10.
DEFAULT_MLP_WIDTHS: tuple[int, ...] = (784, 64, 64, 64, 64, 10)


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: how to build the model and the shape of one input sample."""

    builder: Callable[..., nn.Module]
    input_shape: Callable[[Mapping[str, Any]], tuple[int, ...]]
    description: str


def _mlp_bn(
    depth: int = 3, *, width: int = 500, in_features: int = 3072, num_classes: int = 10
) -> MLP:
    return mlp_bn(depth, width=width, in_features=in_features, num_classes=num_classes)


def _autoencoder(k: int = 1, *, bias: bool = True, in_features: int = MNIST_PIXELS) -> nn.Module:
    return MnistAutoencoder(k, bias=bias, in_features=in_features)


def _image(size: int) -> Callable[[Mapping[str, Any]], tuple[int, ...]]:
    def shape(kwargs: Mapping[str, Any]) -> tuple[int, ...]:
        return (int(kwargs.get("in_channels", 3)), size, size)

    return shape


MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec(
        functools.partial(MLP, widths=DEFAULT_MLP_WIDTHS),  # MLP's options, default widths
        lambda kw: (int(kw.get("widths", DEFAULT_MLP_WIDTHS)[0]),),
        "fully connected ReLU network over `widths` (default 784-64x4-10)",
    ),
    "mlp_bn": ModelSpec(
        _mlp_bn,
        lambda kw: (int(kw.get("in_features", 3072)),),
        "Fig 2 MLP_BN: 3072 -> [500]*depth -> 10, Linear(no bias)-BatchNorm1d-ReLU",
    ),
    "cifar_nv": ModelSpec(CifarNV, _image(32), "Fig 3 / Table 1 CIFAR-NV, fully convolutional"),
    "resnet18": ModelSpec(resnet18, _image(224), "torchvision ResNet-18"),
    "resnet34": ModelSpec(resnet34, _image(224), "torchvision ResNet-34"),
    "resnet50": ModelSpec(resnet50, _image(224), "torchvision ResNet-50"),
    "vgg16": ModelSpec(vgg16, _image(224), "torchvision VGG-16"),
    "alexnet": ModelSpec(alexnet, _image(224), "torchvision AlexNet"),
    "mnist_autoencoder": ModelSpec(
        _autoencoder,
        lambda kw: (int(kw.get("in_features", MNIST_PIXELS)),),
        "Fig 5 autoencoder 784 -> 784/k -> 784/k^2 -> 784/k -> 784",
    ),
    "conv_autoencoder": ModelSpec(
        ConvAutoencoder,
        lambda kw: (int(kw.get("in_channels", 1)), int(kw.get("image_size", 28)),
                    int(kw.get("image_size", 28))),
        "convolutional autoencoder (C,S,S) -> (2w,S/4,S/4) -> (C,S,S): strided convs, "
        "transposed convs",
    ),
    "one_neuron": ModelSpec(OneNeuron, lambda kw: (1,), "Fig 1 toy x -> v*relu(w*x)"),
    "tiny_resnet": ModelSpec(tiny_resnet, _image(32), "few-channel CIFAR-stem ResNet for tests"),
    "cifar_resnet": ModelSpec(cifar_resnet, _image(32),
                              "He et al. CIFAR ResNet-20/32/44/56/110 (depth=6n+2), option-A "
                              "shortcuts"),
}


def available_models() -> list[str]:
    """Names accepted by :func:`get_model`, sorted."""
    return sorted(MODELS)


def is_user_model(name: str) -> bool:
    """Whether ``name`` names a model of the user's, ``package.module:callable``."""
    return ":" in name


def _user_builder(name: str) -> Callable[..., nn.Module]:
    """Import ``package.module:callable`` (the working directory first on the path, as for
    ``python -m``); errors are one line."""
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"model {name!r}: name a model of yours as 'package.module:callable' "
                          "(a class or a function returning an nn.Module)")
    cwd = os.getcwd()
    if cwd not in sys.path:  # kept: the module may import its siblings later
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # anything the module does while importing
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (" (run from the directory that holds it, or add that directory to "
                "PYTHONPATH)" if isinstance(exc, ModuleNotFoundError)
                and exc.name == module_name.split(".")[0] else "")
        raise ConfigError(f"model {name!r}: cannot import {module_name!r}: {text}{hint}") \
            from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"model {name!r}: {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"model {name!r}: {attr!r} is not callable")
    return obj


def load_model_builder(name: str) -> Callable[..., nn.Module]:
    """The constructor of model ``name``; a model of the user's is imported here (call it
    before seeding: a module may draw random numbers, or seed, when imported)."""
    return _spec(name).builder


def _no_input_shape(name: str) -> Callable[[Mapping[str, Any]], tuple[int, ...]]:
    def shape(kwargs: Mapping[str, Any]) -> tuple[int, ...]:
        raise ConfigError(f"model {name!r} is not in the zoo: give one sample's input shape "
                          "(--input-shape 3,32,32 on the command line, model.input_shape in "
                          "a config file)")

    return shape


def _spec(name: str) -> ModelSpec:
    if is_user_model(name):
        return ModelSpec(_user_builder(name), _no_input_shape(name), "a model of yours")
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; available: {', '.join(available_models())} (or a "
            "model of yours as 'package.module:callable')"
        ) from None


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with constructor keyword arguments ``kwargs``;
    ``name`` may also be a model of the user's, ``package.module:callable`` (imported with
    the working directory put first on the path, where it stays).

    Raises :class:`pathcond.errors.ConfigError` for an unknown name or an argument the
    constructor does not accept.
    """
    spec = _spec(name)
    try:
        inspect.signature(spec.builder).bind(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad arguments {sorted(kwargs)}: {exc}") from None
    _check_scalar_arguments(name, spec.builder, kwargs)
    try:
        with warnings.catch_warnings():  # a zero-unit layer is reported by name when traced
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            model = spec.builder(**kwargs)
    except Exception as exc:  # e.g. widths=5, a negative size; anything a user model raises
        if not isinstance(exc, TypeError | ValueError | RuntimeError) and not is_user_model(
                name):
            raise
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"model {name!r}: cannot build it with {kwargs}: {text}") from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {name!r} returned {type(model).__name__}, not an nn.Module")
    return model


def _scalar_type(annotation: Any) -> tuple[type, bool] | None:
    """``(bool | int | float | str, whether None is allowed)`` for an annotation naming
    one of those types (optionally ``| None``); ``None`` for any other annotation."""
    scalars = (bool, int, float, str)
    if annotation in scalars:
        return annotation, False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = typing.get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and rest[0] in scalars:
            return rest[0], len(rest) < len(args)
    return None


def _check_scalar_arguments(name: str, builder: Callable[..., nn.Module],
                            kwargs: Mapping[str, Any]) -> None:
    """Refuse a value of the wrong type for a ``bool``/``int``/``float``/``str``
    parameter, e.g. ``bias: "flase"`` (truthy: a bias would be built) or
    ``num_classes: 1.5`` (a traceback from torch)."""
    try:
        params = inspect.signature(builder, eval_str=True).parameters
    except (NameError, TypeError, ValueError):  # pragma: no cover - unresolvable annotations
        return
    for key, value in kwargs.items():
        param = params.get(key)
        found = None if param is None else _scalar_type(param.annotation)
        if found is None:
            continue
        kind, optional = found
        if value is None and optional:
            continue
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            what = {bool: "true or false", int: "an integer", float: "a number",
                    str: "a string"}[kind]
            raise ConfigError(f"model {name!r}: argument {key!r} must be {what}"
                              f"{' or null' if optional else ''}, got {value!r}")


def model_input_shape(name: str, **kwargs: Any) -> tuple[int, ...]:
    """Shape of one input sample (no batch dimension) of ``get_model(name, **kwargs)``.

    E.g. ``(3, 224, 224)`` for the ImageNet models, ``(3, 32, 32)`` for ``cifar_nv`` and
    ``tiny_resnet``, ``(3072,)`` for ``mlp_bn``, ``(784,)`` for ``mnist_autoencoder``,
    ``(1,)`` for ``one_neuron``.
    """
    spec = _spec(name)
    try:
        shape = spec.input_shape(kwargs)
    except (TypeError, ValueError, IndexError, KeyError) as exc:  # e.g. widths=4
        get_model(name, **kwargs)  # the constructor's own message, when it refuses them
        raise ConfigError(f"model {name!r}: cannot tell the input shape from the arguments "
                          f"{dict(kwargs)}: {exc}") from None
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ConfigError(f"model {name!r}: arguments {dict(kwargs)} give the input shape "
                          f"{shape}; every size must be a positive integer")
    return shape
