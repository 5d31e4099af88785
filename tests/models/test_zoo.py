"""Tests of the model zoo: SPEC Table 1 counts, shapes, fx traceability, registry."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.fx
from torch import nn

from pathcond.errors import ConfigError
from pathcond.models import (
    MLP,
    CifarNV,
    CifarResNet,
    MnistAutoencoder,
    OneNeuron,
    available_models,
    count_hidden_units,
    count_parameters,
    get_model,
    mlp_bn,
    model_input_shape,
    tiny_resnet,
    unit_layers_in_forward_order,
)

ALL_NAMES = [
    "mlp",
    "mlp_bn",
    "cifar_nv",
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg16",
    "alexnet",
    "mnist_autoencoder",
    "one_neuron",
    "tiny_resnet",
    "cifar_resnet",
    "conv_autoencoder",
]

# SPEC section 6, Table 1: (parameters, hidden units).
TABLE1 = {
    "resnet18": (11_689_512, 4_800),
    "resnet34": (21_797_672, 8_512),
    "resnet50": (25_557_032, 26_560),
    "alexnet": (61_100_840, 9_344),
    "vgg16": (138_357_544, 12_416),
    "cifar_nv": (2_616_576, 1_792),
}

# Reduced resolutions where the architecture allows it (keeps the suite fast).
CHEAP_INPUT = {
    "resnet18": (3, 64, 64),
    "resnet34": (3, 64, 64),
    "resnet50": (3, 64, 64),
    "vgg16": (3, 32, 32),
    "alexnet": (3, 64, 64),
}

OUTPUT_DIM = {
    "mlp": 10,
    "mlp_bn": 10,
    "cifar_nv": 10,
    "resnet18": 1000,
    "resnet34": 1000,
    "resnet50": 1000,
    "vgg16": 1000,
    "alexnet": 1000,
    "mnist_autoencoder": 784,
    "one_neuron": 1,
    "tiny_resnet": 10,
    "cifar_resnet": 10,
    "conv_autoencoder": (1, 28, 28),
}


@functools.cache
def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return get_model(name).eval()


def _input(name: str, batch: int = 2) -> torch.Tensor:
    shape = CHEAP_INPUT.get(name, model_input_shape(name))
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))


def test_available_models_lists_every_name() -> None:
    assert available_models() == sorted(ALL_NAMES)


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_table1_parameter_and_hidden_unit_counts(name: str) -> None:
    params, hidden = TABLE1[name]
    model = _model(name)
    assert count_parameters(model) == params
    assert count_hidden_units(model) == hidden


@pytest.mark.parametrize("name", ALL_NAMES)
def test_output_shape_on_batch_of_two(name: str) -> None:
    model = _model(name)
    with torch.no_grad():
        out = model(_input(name))
    dim = OUTPUT_DIM[name]
    assert out.shape == (2, *(dim if isinstance(dim, tuple) else (dim,)))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL_NAMES)
def test_fx_traceable_and_equivalent(name: str) -> None:
    model = _model(name)
    traced = torch.fx.symbolic_trace(model)
    assert any(node.op == "call_module" for node in traced.graph.nodes)
    x = _input(name)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("resnet18", (3, 224, 224)),
        ("resnet50", (3, 224, 224)),
        ("vgg16", (3, 224, 224)),
        ("alexnet", (3, 224, 224)),
        ("cifar_nv", (3, 32, 32)),
        ("tiny_resnet", (3, 32, 32)),
        ("mlp_bn", (3072,)),
        ("mlp", (784,)),
        ("mnist_autoencoder", (784,)),
        ("one_neuron", (1,)),
        ("conv_autoencoder", (1, 28, 28)),
    ],
)
def test_model_input_shape(name: str, shape: tuple[int, ...]) -> None:
    assert model_input_shape(name) == shape


def test_model_input_shape_follows_kwargs() -> None:
    assert model_input_shape("cifar_nv", in_channels=1) == (1, 32, 32)
    assert model_input_shape("mlp", widths=[5, 3, 2]) == (5,)
    assert model_input_shape("mlp_bn", in_features=100) == (100,)


def test_unknown_model_raises_config_error_listing_names() -> None:
    with pytest.raises(ConfigError) as info:
        get_model("resnet-18")
    message = str(info.value)
    assert "\n" not in message
    for name in ALL_NAMES:
        assert name in message
    with pytest.raises(ConfigError):
        model_input_shape("nope")


def test_bad_keyword_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="cifar_nv"):
        get_model("cifar_nv", width=3)


def test_get_model_passes_kwargs() -> None:
    model = get_model("resnet18", num_classes=10, in_channels=1)
    out = model.eval()(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 10)
    assert count_parameters(get_model("mlp_bn", depth=5)) == count_parameters(mlp_bn(5))


# --- torchvision layout -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key", "shape"),
    [
        ("resnet18", "conv1.weight", (64, 3, 7, 7)),
        ("resnet18", "layer1.1.bn2.running_var", (64,)),
        ("resnet18", "layer2.0.downsample.0.weight", (128, 64, 1, 1)),
        ("resnet18", "layer4.0.downsample.1.bias", (512,)),
        ("resnet18", "fc.weight", (1000, 512)),
        ("resnet34", "layer3.5.conv2.weight", (256, 256, 3, 3)),
        ("resnet50", "layer1.0.downsample.0.weight", (256, 64, 1, 1)),
        ("resnet50", "layer2.0.conv2.weight", (128, 128, 3, 3)),
        ("resnet50", "layer4.2.conv3.weight", (2048, 512, 1, 1)),
        ("resnet50", "fc.weight", (1000, 2048)),
        ("vgg16", "features.0.weight", (64, 3, 3, 3)),
        ("vgg16", "features.28.bias", (512,)),
        ("vgg16", "classifier.0.weight", (4096, 25088)),
        ("vgg16", "classifier.6.weight", (1000, 4096)),
        ("alexnet", "features.0.weight", (64, 3, 11, 11)),
        ("alexnet", "features.10.weight", (256, 256, 3, 3)),
        ("alexnet", "classifier.1.weight", (4096, 9216)),
        ("alexnet", "classifier.6.bias", (1000,)),
    ],
)
def test_torchvision_state_dict_names(name: str, key: str, shape: tuple[int, ...]) -> None:
    state = _model(name).state_dict()
    assert tuple(state[key].shape) == shape


def test_resnet_kaiming_init() -> None:
    torch.manual_seed(0)
    model = get_model("resnet18")
    assert isinstance(model, nn.Module)
    conv = model.get_submodule("layer3.0.conv2")
    assert isinstance(conv, nn.Conv2d)
    w = conv.weight
    fan_out = 256 * 3 * 3
    assert abs(w.std().item() - (2.0 / fan_out) ** 0.5) < 0.1 * (2.0 / fan_out) ** 0.5
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))


def test_resnet_residual_is_out_of_place_add() -> None:
    traced = torch.fx.symbolic_trace(tiny_resnet())
    adds = [n for n in traced.graph.nodes if n.op == "call_function" and "add" in str(n.target)]
    assert len(adds) == 3
    assert all(not str(n.target).endswith("iadd") for n in adds)


def test_tiny_resnet_variants() -> None:
    model = tiny_resnet()
    assert model.maxpool is None
    assert model.get_submodule("layer1.0").downsample is None
    assert isinstance(model.get_submodule("layer2.0.downsample"), nn.Sequential)
    deep = tiny_resnet(widths=(4, 8), blocks=(2, 2), bottleneck=True, num_classes=3)
    assert deep.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    torch.fx.symbolic_trace(deep)
    with pytest.raises(ConfigError):
        tiny_resnet(widths=(4, 8), blocks=(1,))


# --- CIFAR-NV ------------------------------------------------------------------------------


def test_cifar_nv_layout() -> None:
    model = CifarNV()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 9
    assert all(c.bias is None for c in convs)
    assert sum(c.weight.numel() for c in convs) == 2_615_808
    assert [c.out_channels for c in convs] == [128] * 3 + [256] * 3 + [320, 320, 10]
    seen: list[tuple[int, ...]] = []
    model.avgpool.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    model.eval()(torch.randn(2, 3, 32, 32))
    assert seen == [(2, 10, 8, 8)]


def test_cifar_nv_final_batchnorm_after_conv9_before_relu() -> None:
    model = CifarNV(final_batchnorm=True)
    assert count_parameters(model) == 2_616_576 + 2 * 10
    assert count_hidden_units(model) == 1_792
    nodes = [n for n in torch.fx.symbolic_trace(model).graph.nodes if n.op == "call_module"]
    targets = [str(n.target) for n in nodes]
    i = targets.index("conv9")
    assert targets[i + 1 : i + 4] == ["bn9", "relu", "avgpool"]
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# --- MLPs ----------------------------------------------------------------------------------


def test_mlp_structure_and_options() -> None:
    model = MLP([6, 5, 4, 3], bias=False, batchnorm=True, activation="leaky_relu")
    kinds = [type(m) for m in model.layers]
    assert kinds == [
        nn.Linear, nn.BatchNorm1d, nn.LeakyReLU,
        nn.Linear, nn.BatchNorm1d, nn.LeakyReLU,
        nn.Linear,
    ]  # fmt: skip
    assert all(m.bias is None for m in model.layers if isinstance(m, nn.Linear))
    assert model(torch.randn(2, 2, 3)).shape == (2, 3)
    plain = MLP([4, 3, 2])
    assert [type(m) for m in plain.layers] == [nn.Linear, nn.ReLU, nn.Linear]
    assert count_hidden_units(plain) == 3
    with pytest.raises(ConfigError):
        MLP([4, 3], activation="gelu")
    with pytest.raises(ConfigError):
        MLP([4])


@pytest.mark.parametrize("depth", [3, 8])
def test_mlp_bn_matches_fig2(depth: int) -> None:
    model = mlp_bn(depth)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == depth + 1
    assert all(m.bias is None for m in linears[:-1])
    assert linears[-1].bias is not None
    assert [m.out_features for m in linears] == [500] * depth + [10]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == depth
    expected = 3072 * 500 + (depth - 1) * 500 * 500 + depth * 1000 + 5010
    assert count_parameters(model) == expected
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# --- autoencoder and toy -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "widths"),
    [
        (1, (784, 784, 784, 784, 784)),
        (2, (784, 392, 196, 392, 784)),
        (4, (784, 196, 49, 196, 784)),
        (7, (784, 112, 16, 112, 784)),
    ],
)
def test_autoencoder_widths(k: int, widths: tuple[int, ...]) -> None:
    model = MnistAutoencoder(k)
    assert model.widths == widths
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == list(
        zip(widths[:-1], widths[1:], strict=True)
    )
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 3
    x = torch.randn(2, 1, 28, 28)
    assert model(x).shape == (2, 784)
    assert count_hidden_units(model) == sum(widths[1:-1])


def test_autoencoder_last_layer_is_linear_and_bias_flag() -> None:
    model = MnistAutoencoder(2, bias=False)
    assert isinstance(list(model.modules())[-1], nn.Linear)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Linear))
    # Without a final ReLU negative outputs are possible.
    with torch.no_grad():
        last = model.decoder[-1]
        assert isinstance(last, nn.Linear)
        last.weight.fill_(-1.0)
    assert (model(torch.rand(2, 784)) <= 0).all()
    with pytest.raises(ConfigError):
        MnistAutoencoder(0)
    with pytest.raises(ConfigError):
        MnistAutoencoder(29)


def test_one_neuron_computes_v_relu_wx() -> None:
    model = OneNeuron(w=1.5, v=-2.0)
    x = torch.tensor([[-1.0], [0.0], [2.0]])
    expected = -2.0 * torch.relu(1.5 * x)
    torch.testing.assert_close(model(x), expected)
    assert count_parameters(model) == 2
    assert count_hidden_units(model) == 1
    random = OneNeuron()
    w, v = random.w.weight.item(), random.v.weight.item()
    torch.testing.assert_close(random(x), v * torch.relu(w * x))


def test_unit_layers_follow_forward_order() -> None:
    order = unit_layers_in_forward_order(_model("resnet18"))
    names = {id(m): n for n, m in _model("resnet18").named_modules()}
    got = [names[id(m)] for m in order]
    assert got[0] == "conv1"
    assert got[-1] == "fc"
    assert got.index("layer2.0.conv2") < got.index("layer2.0.downsample.0")
    assert len(got) == 21


@pytest.mark.parametrize("widths", [4, "784", [4, "a", 2], [4, 3.5, 2], [4, None, 2]])
def test_mlp_widths_must_be_integers(widths: object) -> None:
    """``widths=4`` and ``[4, 'a', 2]`` raised TypeError / ValueError (a traceback from
    ``pathcond stats mlp --arg widths=4``), and ``[4, 3.5, 2]`` silently built 3 units."""
    with pytest.raises(ConfigError, match="MLP widths must"):
        MLP(widths)  # type: ignore[arg-type]
    assert MLP([4.0, 3, 2]).widths == (4, 3, 2)  # integral values are fine


@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("mlp", {"widths": [4, 3, 2], "bias": "flase"}, "'bias' must be true or false"),
    ("mlp", {"widths": [4, 3, 2], "negative_slope": "x"}, "'negative_slope' must be a number"),
    ("tiny_resnet", {"num_classes": 1.5}, "'num_classes' must be an integer"),
    ("tiny_resnet", {"in_channels": "x"}, "'in_channels' must be an integer"),
    ("mlp_bn", {"depth": "x"}, "'depth' must be an integer"),
    ("mnist_autoencoder", {"k": "x"}, "'k' must be an integer"),
    ("one_neuron", {"w": "x"}, "'w' must be a number or null"),
    ("tiny_resnet", {"widths": 5}, "cannot build it"),
    ("vgg16", {"dropout": 2}, "cannot build it"),
])
def test_get_model_refuses_values_of_the_wrong_type(name: str, kwargs: dict[str, object],
                                                    match: str) -> None:
    """A value of the wrong type ended in a torch traceback or, for a flag, was taken as
    truthy (``bias: flase`` built biases); it is now a ConfigError naming the argument."""
    with pytest.raises(ConfigError, match=match):
        get_model(name, **kwargs)


def test_get_model_accepts_numpy_integers_and_null_options() -> None:
    import numpy as np

    model = get_model("mlp", widths=[4, 3, 2], bias=False, output_bias=None)
    assert isinstance(model, MLP)
    assert isinstance(get_model("mlp_bn", depth=np.int64(1), width=3, in_features=4), MLP)


@pytest.mark.parametrize("name", ["cifar_nv", "tiny_resnet", "mlp_bn"])
def test_model_input_shape_refuses_non_positive_sizes(name: str) -> None:
    """``in_channels=0`` gave the shape (0, 32, 32) and a TypeError traceback later."""
    kwargs = {"in_features": 0} if name == "mlp_bn" else {"in_channels": 0}
    with pytest.raises(ConfigError, match="every size must be a positive integer"):
        model_input_shape(name, **kwargs)


# He et al. (2016) CIFAR ResNets with option-A shortcuts, n blocks per stage: the
# parameters in closed form (stem 464, stage 1 4,672 per block, stage 2 13,952 +
# 18,560 (n - 1), stage 3 55,552 + 73,984 (n - 1), fc 650), the figures commonly quoted.
CIFAR_RESNET_PARAMETERS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018,
                           110: 1_727_962}


@pytest.mark.parametrize("depth", sorted(CIFAR_RESNET_PARAMETERS))
def test_cifar_resnet_counts(depth: int) -> None:
    n = (depth - 2) // 6
    model = get_model("cifar_resnet", depth=depth)
    assert isinstance(model, CifarResNet)
    closed_form = 464 + 4_672 * n + 13_952 + 18_560 * (n - 1) + 55_552 + 73_984 * (n - 1) + 650
    assert count_parameters(model) == closed_form == CIFAR_RESNET_PARAMETERS[depth]
    assert count_hidden_units(model) == 16 + 224 * n
    assert len(unit_layers_in_forward_order(model)) == depth  # weighted layers, fc included


@pytest.mark.parametrize("depth", [20, 14])
def test_cifar_resnet_shortcuts_tie_the_padded_stages(depth: int) -> None:
    """Every residual-stream channel ends in one of the 64 channels of stage 3 (the
    option-A shortcut adds stage 2's channel c to stage 3's channel c + 16, and stage 1's to
    stage 2's c + 8); every block's first convolution has its own 16/32/64 groups."""
    import pathcond

    n = (depth - 2) // 6
    graph = pathcond.rescaling_graph(get_model("cifar_resnet", depth=depth), (3, 32, 32))
    assert graph.num_groups == 64 + 112 * n
    assert graph.num_hidden_units == 16 + 224 * n
    stem = graph.layers[0]
    last = next(layer for layer in graph.layers if layer.name == f"layer3.{n - 1}.conv2")
    assert torch.equal(stem.row_groups, last.row_groups[24:40])


@pytest.mark.parametrize("depth", [0, 19, 21, 2])
def test_cifar_resnet_refuses_other_depths(depth: int) -> None:
    with pytest.raises(ConfigError, match="6n \\+ 2"):
        get_model("cifar_resnet", depth=depth)
