"""PathCondSchedule: rescaling during training with optimizer-state transport."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import pathcond
from pathcond.models import MLP
from pathcond.rescale.schedule import PathCondSchedule


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3), nn.ReLU(),
                         nn.Linear(3, 12), nn.ReLU(), nn.Linear(12, 2)).double()


def train(model: nn.Module, schedule: PathCondSchedule | None, opt: torch.optim.Optimizer,
          steps: int, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    losses = []
    if schedule is not None:
        schedule.start()
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if schedule is not None:
            schedule.after_step()
    return losses


def test_every_steps_rescales_and_keeps_function() -> None:
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = PathCondSchedule(model, (6,), optimizer=opt, every_steps=3)
    x, y = torch.randn(32, 6, dtype=torch.float64), torch.randn(32, 2, dtype=torch.float64)
    train(model, sched, opt, 7, x, y)
    assert [e.step for e in sched.events] == [0, 3, 6]
    assert sched.events[0].reason == "start"
    for event in sched.events:
        assert event.report.converged
        assert event.report.am_gm_after <= event.report.am_gm_before + 1e-12
    before = model(x)
    sched.after_step()  # step 8: not due
    assert len(sched.events) == 3
    torch.testing.assert_close(model(x), before)


def test_threshold_rule() -> None:
    model = net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    never = PathCondSchedule(model, (6,), optimizer=opt, at_start=False, am_gm_threshold=1e9)
    always = PathCondSchedule(copy.deepcopy(model), (6,), at_start=False,
                              am_gm_threshold=1.0, check_every=2)
    assert never.after_step() is None and not never.events
    assert always.after_step() is None  # step 1: not checked
    report = always.after_step()
    assert report is not None and "AM/GM" in always.events[0].reason


def test_epoch_rule_and_state_dict() -> None:
    model = net()
    sched = PathCondSchedule(model, (6,), at_start=False, every_epochs=2)
    assert sched.after_epoch() is None
    assert sched.after_epoch() is not None
    state = sched.state_dict()
    other = PathCondSchedule(net(), (6,), at_start=False, every_epochs=2)
    other.load_state_dict(state)
    assert other.state_dict() == {"steps": 0, "epochs": 2}


def test_transport_makes_training_rescaling_equivariant_for_sgd() -> None:
    """With plain SGD (no momentum) a rescaled start trains differently, but a rescale
    in the middle with transported momentum keeps the momentum consistent: the step
    after the rescaling equals the rescaled step in the space of functions to first order
    only; here we check the state itself is transported exactly."""
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(32, 6, dtype=torch.float64), torch.randn(32, 2, dtype=torch.float64)
    train(model, None, opt, 3, x, y)
    old = {n: opt.state[p]["momentum_buffer"].clone() for n, p in model.named_parameters()}
    sched = PathCondSchedule(model, (6,), optimizer=opt)
    report = sched.start()
    assert report is not None
    scales = pathcond.parameter_log_scales(sched.graph, report.log_scales)
    for n, p in model.named_parameters():
        torch.testing.assert_close(opt.state[p]["momentum_buffer"],
                                   old[n] * torch.exp(-scales[n]))


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="every_steps"):
        PathCondSchedule(net(), (6,), every_steps=0)
    with pytest.raises(ValueError, match="am_gm_threshold"):
        PathCondSchedule(net(), (6,), am_gm_threshold=0.5)
    with pytest.raises(TypeError):
        PathCondSchedule(net())


@pytest.mark.parametrize(("options", "match"), [
    ({"bogus": 1}, "has no option 'bogus'"),
    ({"sovler": "block"}, "has no option 'sovler'"),
    ({"optimizer": None}, "'optimizer' is set by PathCondSchedule"),
])
def test_bad_rescale_options_fail_at_construction(options: dict[str, object],
                                                  match: str) -> None:
    """A misspelt option was accepted and only failed (TypeError) at the first rescaling,
    possibly many steps into training; the model is untouched when it is refused."""
    model = net()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=match):
        PathCondSchedule(model, (6,), rescale_options=options)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert PathCondSchedule(model, (6,), rescale_options={"solver": "block", "tol": 1e-8,
                                                          "max_sweeps": 50}).start() is not None


def test_criterion_refuses_log_scales_of_the_wrong_size() -> None:
    """``pathcond.criterion(log_scales=...)`` with the wrong number of entries raised an
    IndexError from deep in the problem; it says what is wrong like apply_rescaling."""
    model = net()
    groups = pathcond.rescaling_graph(model, (6,)).num_groups
    with pytest.raises(ValueError, match=f"log_scales has 3 entries; the graph has {groups}"):
        pathcond.criterion(model, (6,), log_scales=torch.zeros(3))
    value = pathcond.criterion(model, (6,), log_scales=torch.zeros(groups))
    assert value.value == pathcond.criterion(model, (6,)).value


@pytest.mark.parametrize(("call", "message"), [
    (lambda m: pathcond.rescale(m, (4,), dtype=torch.int64), "floating-point torch.dtype"),
    (lambda m: pathcond.path_magnitudes(m, (4,), dtype=torch.int32), "floating-point"),
    (lambda m: pathcond.rescale(m, (4,), max_sweeps=1.5), "max_sweeps must be an integer"),
    (lambda m: pathcond.rescale(m, (4,), max_sweeps=True), "max_sweeps must be an integer"),
    (lambda m: pathcond.path_norm(m, (4,), p="2"), "p must be a number"),
], ids=["rescale-dtype", "magnitudes-dtype", "sweeps-float", "sweeps-bool", "p-str"])
def test_arguments_of_the_wrong_type_are_named(call, message: str) -> None:
    """They failed deep inside (``only Tensors of floating point dtype can require
    gradients``, ``'>' not supported between 'str' and 'int'``) or, for ``max_sweeps=True``,
    ran one sweep; the model is left unchanged."""
    torch.manual_seed(0)
    model = MLP([4, 5, 3])
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(TypeError, match=message):
        call(model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
