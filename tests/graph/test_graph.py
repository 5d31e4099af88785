"""Rescaling graphs: groups of known structures, the signs of B, zoo hidden-unit counts and
the refusal of operations that break the rescaling symmetry (SPEC sections 1-2, Table 1)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pathcond
import pathcond.models as zoo
from pathcond import UnsupportedModelError, check_support, parameter_log_scales, rescaling_graph


def layer(graph, name: str):
    (found,) = [li for li in graph.layers if li.name == name]
    return found


def groups_of(graph, name: str) -> list[int]:
    return layer(graph, name).row_groups.tolist()


def assert_partition(graph) -> None:
    """group_members and row_groups describe the same partition of the hidden units."""
    seen = set()
    for g, members in enumerate(graph.group_members):
        assert members, f"group {g} is empty"
        for li, unit in members:
            assert graph.layers[li].row_groups[unit].item() == g
            assert (li, unit) not in seen
            seen.add((li, unit))
    rescaled = {(li, k) for li, lay in enumerate(graph.layers)
                for k, g in enumerate(lay.row_groups.tolist()) if g >= 0}
    assert rescaled == seen
    assert graph.num_hidden_units == len(seen)
    for lay in graph.layers:
        assert lay.row_groups.dtype == torch.int64
        assert lay.row_groups.shape == (lay.weight_shape[0],)
        assert int(lay.row_groups.min()) >= -1 and int(lay.row_groups.max()) < graph.num_groups
        assert lay.col_groups.dtype == torch.int64
        assert int(lay.col_groups.min()) >= -1 and int(lay.col_groups.max()) < graph.num_groups


# ------------------------------------------------------------------------- known structures
def test_mlp_one_group_per_hidden_unit() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.ReLU(),
                          nn.Linear(5, 2))
    g = rescaling_graph(model, (3,))
    assert_partition(g)
    assert [lay.name for lay in g.layers] == ["0", "2", "4"]
    assert g.num_groups == 9 and g.num_hidden_units == 9
    assert all(len(m) == 1 for m in g.group_members)
    h1, h2, out = (lay.row_groups.tolist() for lay in g.layers)
    assert -1 not in h1 and -1 not in h2 and len(set(h1 + h2)) == 9
    assert out == [-1, -1]  # output units are never rescaled
    assert g.layers[0].col_groups.tolist() == [[-1, -1, -1]]  # input units neither
    assert g.layers[1].col_groups.tolist() == [h1]
    assert g.layers[2].col_groups.tolist() == [h2]
    assert g.num_lifting_parameters == (3 * 4 + 4) + (4 * 5 + 5) + (5 * 2 + 2)
    assert g.layers[0].weight_name == "0.weight" and g.layers[0].bias_name == "0.bias"
    assert g.layers[0].batchnorm is None
    report = check_support(model, (3,))
    assert report.supported and report.reasons == () and report.num_groups == 9


class ResidualNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 3, 3, padding=1)
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 3, 3, padding=1)
        self.c = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(x + self.b(F.relu(self.a(x))))
        x = F.relu(self.c(x) + x)
        return self.fc(x.mean((2, 3)))


def test_residual_ties_channels_of_both_summands() -> None:
    g = rescaling_graph(ResidualNet(), (2, 5, 5))
    assert_partition(g)
    stem, a, b, c = (groups_of(g, n) for n in ("stem", "a", "b", "c"))
    assert stem == b == c  # channel k of stem, b and c: one group (two additions chain)
    assert len(set(stem)) == 3 and -1 not in stem
    assert len(set(a)) == 4 and not set(a) & set(stem)
    assert g.num_groups == 7 and g.num_hidden_units == 3 * 3 + 4
    assert sorted(len(m) for m in g.group_members) == [1, 1, 1, 1, 3, 3, 3]
    assert layer(g, "a").col_groups.tolist() == [stem]
    assert layer(g, "b").col_groups.tolist() == [a]
    assert layer(g, "fc").col_groups.tolist() == [stem]
    assert groups_of(g, "fc") == [-1, -1]


class ResidualToOutput(nn.Module):
    """fc2's output is the network's output and is added to h: h's units are not rescaled."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(x))
        return self.fc2(h) + h


class FeedsOutputAndLayer(nn.Module):
    """h feeds a layer and is also returned: its units are output units."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 2)
        self.fc3 = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x))
        y = F.relu(self.fc2(h))
        return self.fc3(y), h


class CatToOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(x))
        return torch.cat([self.fc2(h), h], dim=1)


@pytest.mark.parametrize("cls", [ResidualToOutput, FeedsOutputAndLayer, CatToOutput])
def test_unit_feeding_the_output_is_not_rescaled(cls) -> None:
    model = cls()
    g = rescaling_graph(model, (3,))
    assert_partition(g)
    assert groups_of(g, "fc1") == [-1] * 4
    assert layer(g, "fc2").col_groups.tolist() == [[-1] * 4]
    if cls is FeedsOutputAndLayer:
        assert g.num_groups == 2 and -1 not in groups_of(g, "fc2")
    else:
        assert g.num_groups == 0


class ChannelCat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(1, 3, 1)
        self.c = nn.Conv2d(5, 2, 3)
        self.fc = nn.Linear(2 * 2 * 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1)
        return self.fc(torch.flatten(F.relu(self.c(h)), 1))


def test_channel_concatenation() -> None:
    g = rescaling_graph(ChannelCat(), (1, 4, 4))
    assert_partition(g)
    a, b = groups_of(g, "a"), groups_of(g, "b")
    assert len(set(a + b)) == 5 and -1 not in a + b
    assert layer(g, "c").col_groups.tolist() == [a + b]


class SpatialCat(nn.Module):
    """Two branches concatenated along the width, then one convolution over the result:
    channel k of both branches meets the same kernel, so they must scale together."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(1, 2, 1)
        self.c = nn.Conv2d(2, 2, 3)
        self.fc = nn.Linear(2 * 2 * 6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=3)
        return self.fc(torch.flatten(F.relu(self.c(h)), 1))


def test_spatial_concatenation_ties_channels() -> None:
    """SPEC section 1: units tied by a concatenation form one rescaling group."""
    g = rescaling_graph(SpatialCat(), (1, 4, 4))
    assert_partition(g)
    assert groups_of(g, "a") == groups_of(g, "b")
    assert len(set(groups_of(g, "a"))) == 2


class FlattenNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 2)
        self.fc1 = nn.Linear(3 * 2 * 3, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.flatten(F.relu(self.conv(x)), 1)
        return self.fc2(F.relu(self.fc1(h)))


def test_flatten_maps_positions_to_their_channel_group() -> None:
    g = rescaling_graph(FlattenNet(), (1, 3, 4))
    assert_partition(g)
    conv = groups_of(g, "conv")
    assert len(set(conv)) == 3
    cols = layer(g, "fc1").col_groups
    assert cols.shape == (1, 18)
    assert cols.tolist() == [[conv[c] for c in range(3) for _ in range(2 * 3)]]
    assert g.num_hidden_units == 3 + 4


class UnflattenConv(nn.Module):
    """Linear features reshaped into channels and convolved: a channel is fed by the units
    of several Linear outputs, which must then share one group."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 8)
        self.conv = nn.Conv1d(2, 2, 2)
        self.out = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(x)).view(-1, 2, 4)
        return self.out(torch.flatten(F.relu(self.conv(h)), 1))


def test_reshape_into_channels_ties_units() -> None:
    """SPEC section 1: units tied by a reshape (here: fc's units 0-3 become channel 0, 4-7
    channel 1, each convolved with one shared kernel) must be scaled together."""
    g = rescaling_graph(UnflattenConv(), (3,))
    assert_partition(g)
    fc = groups_of(g, "fc")
    assert len(set(fc[:4])) == 1 and len(set(fc[4:])) == 1 and fc[0] != fc[4]


def test_batchnorm_layers_record_their_batchnorm() -> None:
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(),
                          nn.Linear(4, 2))
    g = rescaling_graph(model, (3,))
    assert_partition(g)
    assert g.layers[0].batchnorm == "1" and g.layers[1].batchnorm is None
    assert g.num_groups == 4
    # folded form: a bias per unit even though the Linear has none
    assert g.num_lifting_parameters == 3 * 4 + 4 + 4 * 2 + 2


# ------------------------------------------------------------------------------- B signs
def dense_b(model: nn.Module, graph) -> tuple[torch.Tensor, list[tuple[str, tuple]]]:
    """B (G x H) of a plain MLP built by hand from SPEC section 2, rows in the order of
    ``model.named_parameters()`` flattened; hidden unit (layer i, unit k) -> its group."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    names = {id(m): n for n, m in model.named_modules()}
    group = {}
    for g, members in enumerate(graph.group_members):
        for li, unit in members:
            group[(graph.layers[li].name, unit)] = g
    rows: list[tuple[str, tuple]] = []
    b_rows = []
    for i, lin in enumerate(linears):
        name = names[id(lin)]
        prev = names[id(linears[i - 1])] if i > 0 else None
        for k in range(lin.out_features):
            for j in range(lin.in_features):
                r = torch.zeros(graph.num_groups, dtype=torch.float64)
                if (name, k) in group:
                    r[group[(name, k)]] += 1  # incoming weight of unit k
                if prev is not None and (prev, j) in group:
                    r[group[(prev, j)]] -= 1  # outgoing weight of unit j
                rows.append((f"{name}.weight", (k, j)))
                b_rows.append(r)
        for k in range(lin.out_features):
            r = torch.zeros(graph.num_groups, dtype=torch.float64)
            if (name, k) in group:
                r[group[(name, k)]] += 1
            rows.append((f"{name}.bias", (k,)))
            b_rows.append(r)
    return torch.stack(b_rows), rows


def tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU(),
                         nn.Linear(2, 1)).double()


def test_parameter_log_scales_match_dense_b() -> None:
    model = tiny_mlp()
    g = rescaling_graph(model, (2,))
    b, rows = dense_b(model, g)
    assert b.shape == (g.num_lifting_parameters, g.num_groups) == (9 + 8 + 3, 5)
    # every hidden unit: +1 on its incoming weights and bias, -1 on its outgoing weights
    u = torch.randn(g.num_groups, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    bu = b @ u
    scales = parameter_log_scales(g, u)
    params = dict(model.named_parameters())
    for r, (name, idx) in enumerate(rows):
        got = scales[name].expand_as(params[name])[idx] if name in scales else torch.tensor(0.0)
        assert float(got) == pytest.approx(float(bu[r]), abs=1e-15), (name, idx)
    # unit vectors: column h of B, exactly
    for h in range(g.num_groups):
        e = torch.zeros(g.num_groups, dtype=torch.float64)
        e[h] = 1.0
        scales = parameter_log_scales(g, e)
        col = torch.stack([scales[n].expand_as(params[n])[i] if n in scales
                           else torch.tensor(0.0, dtype=torch.float64) for n, i in rows])
        assert torch.equal(col, b[:, h])


def test_apply_rescaling_is_exp_b_u_times_theta() -> None:
    model = tiny_mlp()
    g = rescaling_graph(model, (2,))
    b, rows = dense_b(model, g)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    u = torch.randn(g.num_groups, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    pathcond.apply_rescaling(model, g, u)
    after = {n: p.detach() for n, p in model.named_parameters()}
    factors = torch.exp(b @ u)
    for r, (name, idx) in enumerate(rows):
        assert float(after[name][idx]) == pytest.approx(
            float(before[name][idx] * factors[r]), rel=1e-14)


def test_batchnorm_log_scales_convention() -> None:
    """Linear -> BatchNorm -> ReLU: the unit is rescaled through gamma and beta; the
    Linear's rows are left alone (SPEC section 2), the next layer takes -u."""
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2),
                          nn.BatchNorm1d(2), nn.ReLU(), nn.Linear(2, 1)).double()
    g = rescaling_graph(model, (3,))
    u = torch.arange(1.0, g.num_groups + 1, dtype=torch.float64)
    scales = parameter_log_scales(g, u)
    params = dict(model.named_parameters())
    rows1 = u[torch.tensor(groups_of(g, "0"))]
    rows2 = u[torch.tensor(groups_of(g, "3"))]
    full = {n: scales[n].expand_as(params[n]) if n in scales else torch.zeros_like(params[n])
            for n in params}
    assert torch.equal(full["0.weight"], torch.zeros(4, 3, dtype=torch.float64))
    assert torch.equal(full["0.bias"], torch.zeros(4, dtype=torch.float64))
    assert torch.equal(full["1.weight"], rows1) and torch.equal(full["1.bias"], rows1)
    assert torch.equal(full["3.weight"], -rows1.expand(2, 4))
    assert torch.equal(full["4.weight"], rows2) and torch.equal(full["4.bias"], rows2)
    assert torch.equal(full["6.weight"], -rows2.expand(1, 2))
    assert torch.equal(full["6.bias"], torch.zeros(1, dtype=torch.float64))


def test_log_scales_of_wrong_size_rejected() -> None:
    model = tiny_mlp()
    g = rescaling_graph(model, (2,))
    with pytest.raises(ValueError):
        parameter_log_scales(g, torch.zeros(g.num_groups + 1, dtype=torch.float64))


# -------------------------------------------------------------------------- model zoo
ZOO = [("resnet18", 4800, 2880), ("resnet34", 8512, 4736), ("alexnet", 9344, 9344),
       ("cifar_nv", 1792, 1792)]
SLOW_ZOO = [("resnet50", 26560, None), ("vgg16", 12416, 12416)]


def _zoo_graph(name: str):
    model = zoo.get_model(name)
    return model, rescaling_graph(model, zoo.model_input_shape(name))


@pytest.mark.parametrize(("name", "hidden", "groups"), ZOO)
def test_zoo_hidden_units(name: str, hidden: int, groups: int | None) -> None:
    model, g = _zoo_graph(name)
    assert g.num_hidden_units == hidden
    if groups is not None:
        assert g.num_groups == groups
    # layers of the zoo before a BatchNorm have no bias: the fold keeps every parameter
    # but the BatchNorm scales gamma
    gammas = sum(m.num_features for m in model.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm))
    assert g.num_lifting_parameters == sum(p.numel() for p in model.parameters()) - gammas


def test_resnet18_groups() -> None:
    """Each stage's block outputs (and downsample or stem) form groups of 3 channels."""
    _, g = _zoo_graph("resnet18")
    assert_partition(g)
    sizes = sorted(len(m) for m in g.group_members)
    assert sizes.count(3) == 64 + 128 + 256 + 512
    assert sizes.count(1) == 2 * (64 + 128 + 256 + 512)
    assert groups_of(g, "conv1") == groups_of(g, "layer1.0.conv2") == groups_of(
        g, "layer1.1.conv2")
    assert groups_of(g, "layer2.0.downsample.0") == groups_of(g, "layer2.1.conv2")
    assert groups_of(g, "fc") == [-1] * 1000
    assert layer(g, "layer1.0.conv1").batchnorm == "layer1.0.bn1"


@pytest.mark.slow
@pytest.mark.parametrize(("name", "hidden", "groups"), SLOW_ZOO)
def test_zoo_hidden_units_slow(name: str, hidden: int, groups: int | None) -> None:
    _, g = _zoo_graph(name)
    assert g.num_hidden_units == hidden
    if groups is not None:
        assert g.num_groups == groups


# -------------------------------------------------------------------- unsupported models
class Wrap(nn.Module):
    """Linear -> <middle> -> Linear with the middle module named ``act``."""

    def __init__(self, middle: nn.Module, width: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(3, width)
        self.act = middle
        self.fc2 = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SoftmaxInside(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.softmax(self.fc1(x), dim=1))


class Attention(nn.Module):
    """Attention through F.scaled_dot_product_attention (otherwise supported operations)."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Conv1d(4, 4, 1)
        self.k = nn.Conv1d(4, 4, 1)
        self.v = nn.Conv1d(4, 4, 1)
        self.fc = nn.Linear(4 * 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x))
        return self.fc(torch.flatten(h, 1))


class MHA(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.fc = nn.Linear(4 * 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.attn(x, x, x)
        return self.fc(torch.flatten(h, 1))


class SharedLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.inp = nn.Linear(3, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.shared(F.relu(self.inp(x))))
        return self.out(F.relu(self.shared(h)))


class RawParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.secret_matrix = nn.Parameter(torch.randn(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(x)) @ self.secret_matrix


class ControlFlow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if h.sum() > 0:
            h = F.relu(h)
        return self.fc2(h)


class AddConstant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x) + 1.0))


class LooseBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.loose_bn = nn.BatchNorm1d(4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.loose_bn(F.relu(self.fc1(x))))


UNSUPPORTED = {
    # name: (model factory, input shape, patterns that must all appear in the message)
    "gelu": (lambda: Wrap(nn.GELU()), (3,), ["'act'", "GELU"]),
    "silu": (lambda: Wrap(nn.SiLU()), (3,), ["'act'", "SiLU"]),
    "sigmoid": (lambda: Wrap(nn.Sigmoid()), (3,), ["'act'", "Sigmoid"]),
    "tanh": (lambda: Wrap(nn.Tanh()), (3,), ["'act'", "Tanh"]),
    "softmax": (SoftmaxInside, (3,), ["softmax"]),
    "layernorm": (lambda: Wrap(nn.LayerNorm(4)), (3,), ["'act'", "LayerNorm"]),
    "sdpa": (Attention, (4, 3), ["attention"]),
    "multihead_attention": (MHA, (3, 4), ["attn", "MultiheadAttention"]),
    "shared_linear": (SharedLinear, (3,), ["'shared'", "(more than once|shared|twice)"]),
    "raw_parameter": (RawParameter, (3,), ["secret_matrix"]),
    "control_flow": (ControlFlow, (3,), ["ControlFlow", "(control flow|trace)"]),
    "add_constant": (AddConstant, (3,), ["add", "constant"]),
    "loose_batchnorm": (LooseBatchNorm, (3,), ["'loose_bn'", "BatchNorm1d"]),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_models_refused_with_named_cause(case: str) -> None:
    factory, shape, patterns = UNSUPPORTED[case]
    model = factory()
    with pytest.raises(UnsupportedModelError) as info:
        rescaling_graph(model, shape)
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message, flags=re.IGNORECASE), (pattern, message)
    # the quantities built on the graph refuse too
    with pytest.raises(UnsupportedModelError):
        pathcond.path_norm(model, shape)
    report = check_support(model, shape)
    assert not report.supported and report.reasons
    assert any(all(re.search(p, r, flags=re.IGNORECASE) for p in patterns)
               for r in report.reasons), report.reasons


class ManyProblems(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.gelu_mod = nn.GELU()
        self.fc2 = nn.Linear(4, 4)
        self.norm_mod = nn.LayerNorm(4)
        self.fc3 = nn.Linear(4, 4)
        self.tanh_mod = nn.Tanh()
        self.fc4 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.gelu_mod(self.fc1(x))
        b = self.norm_mod(self.fc2(a))
        c = torch.sigmoid(self.tanh_mod(self.fc3(b)))
        return self.fc4(c)


def test_check_support_reports_every_reason_without_raising() -> None:
    report = check_support(ManyProblems(), (3,))
    assert not report.supported
    text = "\n".join(report.reasons)
    for name in ("gelu_mod", "norm_mod", "tanh_mod", "sigmoid"):
        assert name in text, text
    assert len(report.reasons) >= 4
    assert "gelu_mod" in str(report)
    with pytest.raises(UnsupportedModelError, match="gelu_mod"):
        rescaling_graph(ManyProblems(), (3,))


class ParallelProblems(nn.Module):
    """Independent branches: the problems do not sit downstream of one another."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.branch_gelu = nn.GELU()
        self.branch_silu = nn.SiLU()
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(self.branch_gelu(h) + self.branch_silu(h) + 2.0)


def test_check_support_parallel_reasons() -> None:
    report = check_support(ParallelProblems(), (3,))
    assert not report.supported
    text = "\n".join(report.reasons)
    assert "branch_gelu" in text and "branch_silu" in text


def test_supported_activations_and_shape_ops_accepted() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.LeakyReLU(0.1), nn.Dropout(0.2),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Identity(), nn.Linear(8, 2),
                          nn.ReLU(), nn.Linear(2, 1))
    report = check_support(model, (1, 6, 6))
    assert report.supported, report.reasons
    assert report.num_groups == 4 and report.num_hidden_units == 4


def test_input_of_the_wrong_shape_names_the_layer_and_the_cause(
        capsys: pytest.CaptureFixture[str]) -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    with pytest.raises(UnsupportedModelError) as err:
        rescaling_graph(model, (5,))
    message = str(err.value)
    assert message.startswith("Sequential does not run on an input of shape (5,) (per "
                              "sample): 0 (Linear): mat1 and mat2 shapes cannot be multiplied")
    assert "\n" not in message
    assert capsys.readouterr().err == ""  # no traceback printed on the way


@pytest.mark.parametrize("shape", [4, "4", (), (0,), (4.0,), (True,), None])
def test_input_shape_must_be_a_sequence_of_positive_ints(shape: object) -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    with pytest.raises(TypeError, match="one sample's shape|give input_shape"):
        pathcond.path_norm(model, shape)  # type: ignore[arg-type]
    assert pathcond.path_norm(model, torch.Size([4])) == pathcond.path_norm(model, [4])


@pytest.mark.parametrize("layer", [nn.Linear(4, 2), nn.Conv2d(1, 2, 3)])
def test_a_bare_layer_gets_one_accurate_reason(layer: nn.Module) -> None:
    report = check_support(layer, (1, 4, 4) if isinstance(layer, nn.Conv2d) else (4,))
    assert not report.supported
    assert len(report.reasons) == 1 and "wrap a single layer as nn.Sequential" in report.reasons[0]
    assert check_support(nn.Sequential(layer), (1, 4, 4) if isinstance(layer, nn.Conv2d)
                         else (4,)).supported


def test_support_report_counts_rescalable_units() -> None:
    model = nn.Sequential(nn.Linear(3, 5, bias=False), nn.BatchNorm1d(5, affine=False), nn.ReLU(),
                          nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    assert str(check_support(model, (3,))) == \
        "supported: 3 layers, 4 rescalable hidden units in 4 rescaling groups"


class _AbsNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 5), nn.Linear(5, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.abs(self.b(self.a(x).abs())))


def test_abs_is_a_positively_homogeneous_activation() -> None:
    """|x| = max(x, -x), a leaky ReLU of slope -1: supported, and PathCond keeps the
    function; the path magnitudes are those of the same weights with ReLUs."""
    torch.manual_seed(0)
    model = _AbsNet().double()
    relu = nn.Sequential(model.a, nn.ReLU(), model.b, nn.ReLU(), model.c)
    assert check_support(model, (3,)).supported
    got = pathcond.path_magnitudes(model, (3,))
    want = pathcond.path_magnitudes(relu, (3,))
    for (name, a), b in zip(got.items(), want.values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    x = torch.randn(6, 3, dtype=torch.float64)
    before = model(x).detach()
    report = pathcond.rescale(model, (3,))
    assert report.am_gm_after < report.am_gm_before
    torch.testing.assert_close(model(x), before, rtol=1e-12, atol=1e-12)


def _tied_mlp() -> nn.Sequential:
    a, b = nn.Linear(5, 5), nn.Linear(5, 5)
    b.weight = a.weight  # tied: one tensor, two layers
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), a, nn.ReLU(), b, nn.ReLU(), nn.Linear(5, 2))


def test_tied_parameters_are_refused_by_name() -> None:
    """SPEC section 1 / README: shared parameters are not supported; a tensor tied between
    two modules (each called once) was reported as supported, then ``rescale`` failed with
    "model has no parameter '4.weight'" and ``path_magnitudes`` treated both uses as
    independent parameters."""
    model = _tied_mlp()
    report = check_support(model, (4,))
    assert not report.supported
    assert any("'2.weight'" in r and "'4.weight'" in r and "tied" in r for r in report.reasons)
    for call in (lambda: pathcond.rescale(model, (4,)),
                 lambda: pathcond.path_magnitudes(model, (4,))):
        with pytest.raises(UnsupportedModelError, match="same tensor"):
            call()


class _Aliased(nn.Module):
    """One module registered under two names, called once: not a shared parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
        self.head = self.body[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_a_module_registered_under_two_names_is_still_supported() -> None:
    assert check_support(_Aliased(), (4,)).supported


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(4, 0), nn.ReLU(), nn.Linear(0, 2)),
    lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 0)),
    lambda: nn.Sequential(nn.Conv2d(1, 0, 3), nn.ReLU(), nn.Flatten(), nn.Linear(0, 2)),
], ids=["hidden", "output", "conv"])
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_layers_without_units_are_refused(make: Callable[[], nn.Sequential]) -> None:
    """A layer with zero output (or input) units failed deep in the magnitude network
    (``amax(): Expected reduction dim``); it is now one reason naming the layer."""
    model = make()
    shape = (1, 5, 5) if isinstance(model[0], nn.Conv2d) else (4,)
    report = check_support(model, shape)
    assert not report.supported
    assert any("without entries" in r for r in report.reasons), report.reasons
    for call in (pathcond.num_paths, pathcond.path_norm, pathcond.path_magnitudes,
                 pathcond.rescale):
        with pytest.raises(UnsupportedModelError, match="without entries"):
            call(model, shape)


@pytest.mark.parametrize("model", [nn.Sequential(), nn.Sequential(nn.ReLU(), nn.Flatten())],
                         ids=["empty", "no_layer"])
def test_a_model_without_layers_is_refused(model: nn.Module) -> None:
    """An empty Sequential (or one of activations only) raised IndexError in every
    quantity while check_support called it supported."""
    report = check_support(model, (4,))
    assert not report.supported
    assert "no nn.Linear or nn.Conv layer" in report.reasons[0]
    for call in (pathcond.num_paths, pathcond.path_norm, pathcond.path_magnitudes,
                 pathcond.rescale, pathcond.criterion, pathcond.pathcond_lr_scales):
        with pytest.raises(UnsupportedModelError, match="no nn.Linear or nn.Conv layer"):
            call(model, (4,))


def test_compile_and_data_parallel_wrappers_name_the_module_to_pass() -> None:
    """A torch.compile or DataParallel wrapper is refused with the attribute that holds the
    wrapped module; that module shares the parameters, so rescaling it rescales what the
    compiled wrapper computes with (and the function is unchanged)."""
    torch.manual_seed(0)
    model = zoo.MLP([6, 8, 5, 3]).double()
    compiled = torch.compile(model, backend="eager")
    with pytest.raises(UnsupportedModelError, match=r"torch\.compile.*model\._orig_mod"):
        rescaling_graph(compiled, (6,))
    assert not check_support(compiled, (6,)).supported
    with pytest.raises(UnsupportedModelError, match=r"data-parallel.*model\.module"):
        pathcond.rescale(nn.DataParallel(model), (6,))
    x = torch.randn(16, 6, dtype=torch.float64)
    before = compiled(x)
    weight = model.layers[0].weight.detach().clone()
    report = pathcond.rescale(compiled._orig_mod, (6,))
    assert report.am_gm_after < report.am_gm_before
    assert not torch.equal(model.layers[0].weight, weight)
    torch.testing.assert_close(compiled(x), before, rtol=1e-10, atol=1e-12)


class _Lambda(nn.Module):
    """A user's parameter-free module wrapping a function (the popular CIFAR ResNet code
    writes its option-A shortcut this way): traced through, not kept as an unknown leaf."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def test_a_parameter_free_user_module_is_traced_through() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(),
                          _Lambda(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 1, 2))),
                          nn.Conv2d(6, 2, 1), nn.Flatten(), nn.Linear(2 * 3 * 3, 2))
    graph = rescaling_graph(model, (2, 5, 5))
    assert graph.num_groups == 3 + 2
    assert [op.kind for op in graph.ops].count("select") == 1
    assert [op.kind for op in graph.ops].count("pad") == 1


def test_units_sliced_away_are_not_rescaled() -> None:
    """Units that reach nothing: their scale changes nothing, they are in no group."""
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), _Lambda(lambda h: h[:, 1:3]),
                          nn.Linear(2, 2))
    graph = rescaling_graph(model, (3,))
    assert graph.layers[0].row_groups.tolist() == [-1, 0, 1, -1, -1]
    assert graph.num_hidden_units == 2


@pytest.mark.parametrize(("fn", "match"), [
    (lambda h: h[0:1], "batch dimension"),
    (lambda h: h[[1, 0]], "batch dimension"),
    (lambda h: h[0], "batch dimension"),
    (lambda h: h[:, torch.tensor([0, 1])], "used directly"),  # a tensor constant
    (lambda h: h[h > 0], "_operator.gt"),
    (lambda h: F.pad(h, (1, 1), value=1.0), "only zero padding"),
    (lambda h: F.pad(h.unsqueeze(1), (1, 1), mode="reflect").flatten(1), "only zero padding"),
    (lambda h: F.pad(h, (1, 1, 0, 0)), "at most two per per-sample dimension"),  # batch
])
def test_indexing_and_padding_that_break_the_symmetry_are_refused(fn, match: str) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), _Lambda(fn), nn.LazyLinear(2))
    with pytest.raises(UnsupportedModelError, match=match):
        rescaling_graph(model, (3,))


@pytest.mark.parametrize("fn", [
    lambda h: h[:2], lambda h: h[-2:], lambda h: h[0:2], lambda h: h[[0, 1]],
    lambda h: h[[0, 1], [0, 1]].unsqueeze(1), lambda h: h[[0, 1], 0].unsqueeze(1),
], ids=["[:2]", "[-2:]", "[0:2]", "[[0,1]]", "diagonal", "[[0,1],0]"])
def test_indexing_that_a_batch_of_two_hides_is_refused(fn) -> None:
    """Shapes are recorded with a batch of 2: these indices keep 2 samples there, yet drop
    or mix samples of any other batch."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), _Lambda(fn), nn.LazyLinear(1))
    model(torch.zeros(2, 3))
    with pytest.raises(UnsupportedModelError, match="batch dimension"):
        rescaling_graph(model, (3,))


class _TorchvisionBlock(nn.Module):
    """`out += identity` and an in-place ReLU, as torchvision writes its blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.relu(self.a(x))
        out = self.b(identity)
        out += identity
        return self.c(self.relu(out))


class _InPlace(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.a, self.b, self.c = nn.Linear(3, 4), nn.Linear(3, 4), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, y = torch.relu(self.a(x)), torch.relu(self.b(x))
        if self.how == "view +=":
            w = h[:, :2]
            w += y[:, :2]  # fx: an unused w + y
            return self.c(torch.cat([h, h], 1))
        if self.how == "slice +=":
            h[:, :2] += y[:, :2]  # fx cannot trace item assignment
            return self.c(torch.cat([h, h], 1))
        if self.how == "add_ then read":
            v = h[:, :2].add_(y[:, :2])
            return self.c(torch.cat([h, v, v], 1))
        if self.how == "bare add_":
            h.add_(y)  # later reads of h read the sum
            z = h.mul_(0.5).view(h.size(0), -1)
            return self.c(torch.cat([z, h], 1))
        if self.how == "dropout alias":
            d = F.dropout(h, 0.0).add_(y)  # eval mode: F.dropout returns h itself
            return self.c(torch.cat([h, d], 1))
        old = h
        h += y  # fx: h = h + y, but `old` is the same tensor
        return self.c(torch.cat([h, old], 1))


def test_in_place_updates_are_followed_where_nothing_reads_the_old_values() -> None:
    torch.manual_seed(0)
    model = _TorchvisionBlock().double()
    graph = rescaling_graph(model, (3,))
    x = torch.randn(5, 3, dtype=torch.float64)
    before = model(x)
    pathcond.apply_rescaling(model, graph, torch.randn(graph.num_groups, dtype=torch.float64))
    torch.testing.assert_close(model(x), before, rtol=1e-12, atol=1e-12)
    # (`old = h; h += y; read old` is traced by fx as `h = h + y`: not detectable, documented)
    for how, match in (("view +=", "out of place"), ("add_ then read", "out of place"),
                       ("slice +=", "item assignment")):
        with pytest.raises(UnsupportedModelError, match=match):
            rescaling_graph(_InPlace(how), (3,))


class _GaussianNoise(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5 * torch.randn_like(x) if self.training else x


@pytest.mark.parametrize("train", [False, True])
def test_a_branch_on_training_in_a_traced_module_is_refused_in_both_modes(train: bool) -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), _GaussianNoise(), nn.Linear(8, 2))
    model.train(train)
    with pytest.raises(UnsupportedModelError, match="train and eval mode"):
        rescaling_graph(model, (4,))
    assert model.training is train


class _MyUnflatten(nn.Unflatten):
    """A user's subclass of a torch module: still that torch module to the tracer."""


def test_torch_module_subclasses_and_empty_sequential_shortcuts() -> None:
    """An empty nn.Sequential is the identity shortcut of a popular CIFAR ResNet code."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.shortcut = nn.Sequential()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.conv(x)
            out += self.shortcut(x)
            return F.relu(out)

    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), Block(), nn.Flatten(),
                          _MyUnflatten(1, (2, 16)), nn.Flatten(), nn.Linear(32, 2))
    graph = rescaling_graph(model, (1, 4, 4))
    assert graph.num_groups == 2  # the stem's channels, tied to the block's by the shortcut
    assert not hasattr(model, "_tensor_constant0")


def test_an_operation_inside_a_traced_module_names_the_module() -> None:
    model = nn.Sequential(nn.Linear(3, 4), _Lambda(lambda h: h.clamp(min=0.1)), nn.Linear(4, 2))
    with pytest.raises(UnsupportedModelError, match=r"in module '1' \(_Lambda\)"):
        rescaling_graph(model, (3,))
    with pytest.raises(UnsupportedModelError, match="depend on the batch size"):
        rescaling_graph(nn.Sequential(nn.Linear(3, 4), nn.ReLU(),
                                      _Lambda(lambda h: h[:, : h.size(0)]),
                                      nn.Linear(2, 2)), (3,))
    with pytest.raises(UnsupportedModelError, match="not positively homogeneous"):
        rescaling_graph(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.AlphaDropout(0.2),
                                      nn.Linear(4, 2)), (3,))


def test_units_read_only_by_units_that_reach_nothing_are_not_rescaled() -> None:
    """fc a feeds only fc b, whose units are all sliced away: neither is rescaled."""

    class DeadChain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            g = torch.relu(self.b(torch.relu(self.a(x))))
            return self.c(torch.cat([x, g], 1)[:, :3])

    graph = rescaling_graph(DeadChain(), (3,))
    assert graph.num_groups == 0
    assert pathcond.num_paths(DeadChain(), (3,)) == 2 * 4


class _DropoutNet(nn.Module):
    """Dropout written the ways people write it: all identities in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.relu(self.a(x)), 0.5, training=self.training)
        if self.training:
            h = self.drop(h)
        return self.b(h)


def test_dropout_depending_on_training_is_accepted() -> None:
    torch.manual_seed(0)
    model = _DropoutNet().double()
    graph = rescaling_graph(model, (4,))
    assert graph.num_groups == 6


class _StdConv(nn.Conv2d):
    """Weight standardisation: a Conv2d subclass with its own forward (not a Conv2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class _ShiftedReLU(nn.ReLU):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) + 0.1


def test_subclasses_with_their_own_forward_are_not_taken_for_the_torch_module() -> None:
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), _StdConv(2, 2, 3), nn.Flatten(),
                         nn.Linear(2, 2))
    with pytest.raises(UnsupportedModelError, match="forward of its own, not that of Conv2d"):
        rescaling_graph(conv, (1, 5, 5))
    relu = nn.Sequential(nn.Linear(3, 4), _ShiftedReLU(), nn.Linear(4, 2))
    with pytest.raises(UnsupportedModelError, match="constant"):
        rescaling_graph(relu, (3,))


@pytest.mark.filterwarnings("ignore:.*weight_norm.*deprecated:FutureWarning")
def test_weights_computed_by_hooks_are_refused() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(),
                          torch.nn.utils.weight_norm(nn.Linear(4, 2)))
    with pytest.raises(UnsupportedModelError, match="computes its weight in forward"):
        rescaling_graph(model, (3,))


@pytest.mark.parametrize("fn", [lambda h: h[..., 0:2, :], lambda h: h[..., [0, 1], :]],
                         ids=["[..., 0:2, :]", "[..., [0,1], :]"])
def test_an_ellipsis_standing_for_no_dimension_does_not_hide_the_batch(fn) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), _Lambda(fn), nn.Linear(4, 1))
    with pytest.raises(UnsupportedModelError, match="batch dimension"):
        rescaling_graph(model, (3,))


def test_in_place_methods_rewire_later_reads_and_hidden_aliases_are_caught() -> None:
    torch.manual_seed(0)
    model = _InPlace("bare add_").double()
    graph = rescaling_graph(model, (3,))
    x = torch.randn(5, 3, dtype=torch.float64)
    before = model(x)
    pathcond.apply_rescaling(model, graph, torch.randn(graph.num_groups, dtype=torch.float64))
    torch.testing.assert_close(model(x), before, rtol=1e-12, atol=1e-12)
    # 8 inputs of c, each (h + y) / 2 of one unit: 4 paths through a, 4 through b
    assert pathcond.num_paths(model, (3,)) == 2 * (8 * 8 + 1)
    with pytest.raises(UnsupportedModelError, match="shares its memory"):
        rescaling_graph(_InPlace("dropout alias"), (3,))
    with pytest.raises(UnsupportedModelError, match="does not compute what the model"):
        rescaling_graph(_InPlace("hidden alias"), (3,))


def test_forward_hooks_that_change_outputs_are_refused_observers_are_not() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    seen: list[tuple[int, ...]] = []
    handle = model[1].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    assert rescaling_graph(model, (3,)).num_groups == 4
    handle.remove()
    model[1].register_forward_hook(lambda m, i, o: o * 2 + 1)
    with pytest.raises(UnsupportedModelError, match="forward hook"):
        rescaling_graph(model, (3,))


def test_tracing_sets_training_flags_without_calling_train() -> None:
    class Frozen(nn.Sequential):
        calls = 0

        def train(self, mode: bool = True) -> Frozen:
            Frozen.calls += 1
            return super().train(mode)

    model = Frozen(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    Frozen.calls = 0
    rescaling_graph(model, (3,))
    assert Frozen.calls == 0


def test_no_fx_constant_is_left_on_a_refused_model() -> None:
    model = nn.Sequential(nn.Linear(3, 4), _Lambda(lambda h: h * torch.tensor(2.0) if
                                                   h.sum() > 0 else h), nn.Linear(4, 2))
    with pytest.raises(UnsupportedModelError):
        rescaling_graph(model, (3,))
    assert not [k for k in vars(model) if k.startswith("_tensor_constant")]


@pytest.mark.parametrize("fn", [lambda h: h.view(2, -1), lambda h: h.reshape((2, 4)),
                                lambda h: torch.reshape(h, [2, 2, 2]).flatten(1)],
                         ids=["view(2, -1)", "reshape((2, 4))", "torch.reshape"])
def test_a_reshape_fixing_the_batch_size_is_refused(fn) -> None:
    """Shapes are recorded with a batch of 2: a hard-coded 2 would pass unseen."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), _Lambda(fn), nn.Linear(4, 2))
    with pytest.raises(UnsupportedModelError, match="fixes the batch size"):
        rescaling_graph(model, (3,))
    ok = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), _Lambda(lambda h: h.view(h.size(0), -1)),
                       _Lambda(lambda h: h.reshape(-1, 4)), nn.Linear(4, 2))
    assert rescaling_graph(ok, (3,)).num_groups == 4


@pytest.mark.parametrize(("fn", "match"), [
    (lambda h: h.transpose(0, 1).reshape(-1, 4), "batch"),
    (lambda h: h.permute(1, 0).reshape(-1, 4), "batch"),
    (lambda h: torch.cat(h.chunk(2, 0), 1)[:, :4], "batch"),
])
def test_transposes_and_splits_touching_the_batch_are_refused(fn, match: str) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), _Lambda(fn), nn.LazyLinear(2))
    with pytest.raises(UnsupportedModelError, match=match):
        rescaling_graph(model, (3,))


def test_channel_split_and_shuffle_keep_the_function() -> None:
    """A ShuffleNetV2-style unit (chunk, cat, view / transpose / reshape shuffle) at a
    realistic width, train and eval mode."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        _Lambda(lambda x: torch.cat([x.chunk(2, 1)[0], F.relu(x.chunk(2, 1)[1] * 2.0)], 1)),
        _Lambda(lambda h: h.view(h.size(0), 2, 4, 6, 6).transpose(1, 2).reshape(-1, 8, 6, 6)),
        nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3)).double()
    graph = rescaling_graph(model, (3, 6, 6))
    assert graph.num_groups == 8 + 4
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    before = model(x)
    pathcond.apply_rescaling(model, graph, torch.randn(graph.num_groups, dtype=torch.float64))
    torch.testing.assert_close(model(x), before, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("fn", "match"), [
    (nn.Upsample(scale_factor=0.5, mode="area"), "mode 'area' is not supported"),
    (lambda h: F.interpolate(h, size=3, mode="area"), "mode 'area' is not supported"),
    (lambda h: F.interpolate(h, size=h.shape[0] * 2), "batch"),
    (lambda h: torch.flip(h, dims=[0]), "mixes samples"),
    (lambda h: h.roll(1), "mixes samples"),  # no dims: the flattened batch rolls
    (lambda h: h.roll(2, 0), "rolling the batch"),  # the identity on a batch of 2 only
    (lambda h: torch.roll(h, 4), "rolling the batch"),
    (lambda h: h.repeat_interleave(torch.tensor([1, 2]), dim=2), "a tensor made in forward"),
    (lambda h: h.repeat(2, 1, 1), "batch"),
])
def test_copies_that_are_not_per_sample_copies_are_refused(fn, match: str) -> None:
    """Interpolations other than nearest, (bi)linear and bicubic are refused; flips, rolls
    and repeats that touch the batch dimension mix samples; a size read from the batch
    dimension is not static."""
    step = fn if isinstance(fn, nn.Module) else _Lambda(fn)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Unflatten(1, (2, 2)), step,
                          nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(2, 3))
    with pytest.raises(UnsupportedModelError, match=match):
        rescaling_graph(model, (3,))


def test_copies_tie_nothing_and_keep_the_groups() -> None:
    """A nearest upsampling between two convolutions copies units: the rescaling groups
    are those of the plain network, and a random rescaling keeps the function."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(1, 3, 2), nn.ReLU(), nn.Conv2d(3, 2, 2), nn.ReLU(),
                          nn.Flatten(), nn.LazyLinear(2))
    upsampled = nn.Sequential(nn.Conv2d(1, 3, 2), nn.ReLU(), nn.Upsample(scale_factor=2),
                              nn.PixelUnshuffle(2), nn.Conv2d(12, 2, 2), nn.ReLU(),
                              nn.Flatten(), nn.LazyLinear(2))
    for model in (plain, upsampled):
        model(torch.zeros(2, 1, 4, 4))
    assert rescaling_graph(upsampled, (1, 4, 4)).num_groups == \
        rescaling_graph(plain, (1, 4, 4)).num_groups == 5
    graph = rescaling_graph(upsampled, (1, 4, 4))
    x = torch.randn(5, 1, 4, 4)
    before = upsampled(x)
    pathcond.apply_rescaling(upsampled, graph, torch.randn(graph.num_groups))
    torch.testing.assert_close(upsampled(x), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_smooth_upsampling_ties_each_channel_and_keeps_the_function(mode: str,
                                                                    align_corners: bool) -> None:
    """A bilinear or bicubic upsampling mixes the entries of a channel through fixed
    coefficients (bicubic ones negative too): the channel's units share one group, a random
    rescaling keeps the function, and the L1 path-norm is that of the coefficients'
    absolute values."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Unflatten(1, (2, 2, 2)),
                          nn.Upsample(scale_factor=2, mode=mode, align_corners=align_corners),
                          nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    graph = rescaling_graph(model, (3,))
    assert graph.num_groups == 2 + 3
    x = torch.randn(5, 3)
    before = model(x)
    pathcond.apply_rescaling(model, graph, torch.randn(graph.num_groups))
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_copies_called_with_keyword_input_are_followed() -> None:
    """``torch.flip(input=h, ...)`` is the same operation as ``torch.flip(h, ...)``."""
    def net(fn) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Unflatten(1, (2, 2)), _Lambda(fn),
                              nn.Flatten(), nn.LazyLinear(2))
        model(torch.zeros(2, 3))
        return model

    for keyword, positional in [
            (lambda h: torch.flip(input=h, dims=[-1]), lambda h: torch.flip(h, [-1])),
            (lambda h: torch.roll(input=h, shifts=1, dims=2), lambda h: torch.roll(h, 1, 2)),
            (lambda h: torch.tile(input=h, dims=(1, 2)), lambda h: torch.tile(h, (1, 2)))]:
        a, b = net(keyword), net(positional)
        assert pathcond.path_norm(a, (3,)) == pytest.approx(pathcond.path_norm(b, (3,)),
                                                            rel=1e-12)
        assert pathcond.path_norm(a, (3,)) != pytest.approx(
            pathcond.path_norm(net(lambda h: h), (3,)), rel=1e-6)


class _UpBlock(nn.Module):
    """The classic U-Net up block: upsample, pad to the skip's size with amounts computed
    from the two shapes, concatenate; then an interpolation to a size read from a tensor
    and a crop by a slice read from one."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 2, 3, stride=2)
        self.up = nn.ConvTranspose2d(2, 2, 2, stride=2)
        self.skip = nn.Conv2d(1, 2, 1)
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.skip(x))                                   # (2, 7, 7)
        h = F.relu(self.up(F.relu(self.down(x))))                  # (2, 6, 6)
        dy, dx = s.size()[2] - h.size()[2], s.shape[3] - h.shape[3]
        h = F.pad(h, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        h = F.interpolate(torch.cat([s, h], dim=1), size=s.shape[2:])
        return self.head(h[:, :, : s.size(2) - 1, : s.size(-1) - 1])


def test_sizes_read_in_forward_are_followed() -> None:
    """Padding amounts, interpolation sizes and slices computed from tensor sizes are
    static for one input shape: the graph is that of the same model written with the ints,
    and a random rescaling keeps the function."""
    torch.manual_seed(0)
    model = _UpBlock()

    class Written(_UpBlock):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = F.relu(self.skip(x))
            h = F.relu(self.up(F.relu(self.down(x))))
            h = F.interpolate(torch.cat([s, F.pad(h, [0, 1, 0, 1])], dim=1), size=(7, 7))
            return self.head(h[:, :, :6, :6])

    written = Written()
    written.load_state_dict(model.state_dict())
    graph = rescaling_graph(model, (1, 7, 7))
    assert graph.num_groups == rescaling_graph(written, (1, 7, 7)).num_groups == 6
    assert pathcond.num_paths(model, (1, 7, 7)) == pathcond.num_paths(written, (1, 7, 7))
    assert pathcond.path_norm(model, (1, 7, 7)) == pytest.approx(
        pathcond.path_norm(written, (1, 7, 7)), rel=1e-12)
    x = torch.randn(3, 1, 7, 7)
    before = model(x)
    pathcond.apply_rescaling(model, graph, torch.randn(graph.num_groups))
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


class _BatchSized(nn.Module):
    """A per-sample operation whose argument is computed from the batch size."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 2)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(x))
        return self.fn(x, torch.cat([self.fc2(h), h], 1).unsqueeze(1))


@pytest.mark.parametrize(("fn", "match"), [
    # the same at a batch of 2 and of 3, yet not at 5: refused whatever the arithmetic
    (lambda x, h: h[:, :, x.size(0) // 2: x.size(0) // 2 + 2], "depend on the batch size"),
    (lambda x, h: torch.split(h, x.size(0) // 2 + 1, 2)[0], "depend on the batch size"),
    (lambda x, h: h[x.size(0) // 4:], "depend on the batch size"),
    (lambda x, h: F.adaptive_avg_pool1d(h, x.size(0)), "depend on the batch size"),
    (lambda x, h: h.view(x.size(0), 3, x.size(0)), "depend on the batch size"),
    (lambda x, h: h.view(h.size(2) // 3, -1), "first size is not the batch size"),
    (lambda x, h: h.sum(), "mixes samples"),
])
def test_sizes_computed_from_the_batch_size_are_refused(fn, match: str) -> None:
    with pytest.raises(UnsupportedModelError, match=match):
        rescaling_graph(_BatchSized(fn), (3,))


@pytest.mark.parametrize(("computed", "literal"), [
    (lambda x, h: F.avg_pool1d(h, h.size()[2:]).flatten(1), lambda x, h: F.avg_pool1d(
        h, (6,)).flatten(1)),
    (lambda x, h: torch.cat([h, h], dim=h.dim() - 1).flatten(1),
     lambda x, h: torch.cat([h, h], dim=2).flatten(1)),
])
def test_pooling_sizes_and_dimensions_read_in_forward(computed, literal) -> None:
    torch.manual_seed(0)
    a = _BatchSized(computed)
    b = _BatchSized(literal)
    b.load_state_dict(a.state_dict())
    assert pathcond.num_paths(a, (3,)) == pathcond.num_paths(b, (3,))
    assert pathcond.path_norm(a, (3,)) == pytest.approx(pathcond.path_norm(b, (3,)), rel=1e-12)
