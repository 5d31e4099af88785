"""The Lightning callbacks on a tiny LightningModule, on CPU."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

pl = pytest.importorskip("pytorch_lightning")

from pathcond.errors import PathcondError  # noqa: E402
from pathcond.lightning import ENormCallback, PathCondCallback  # noqa: E402


class Tiny(pl.LightningModule):
    def __init__(self, optimizer: str = "sgd") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(5, 24), nn.ReLU(), nn.Linear(24, 3), nn.ReLU(),
                                 nn.Linear(3, 2))
        self.optimizer_name = optimizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=1e-3)
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


def loader() -> torch.utils.data.DataLoader:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=gen), torch.randn(64, 2, generator=gen)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def fit(module: Tiny, callbacks: list[pl.Callback], epochs: int = 2) -> pl.Trainer:
    trainer = pl.Trainer(max_epochs=epochs, callbacks=callbacks, accelerator="cpu",
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader())
    return trainer


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_pathcond_callback_rescales_at_start_and_every_epoch(optimizer: str) -> None:
    module = Tiny(optimizer)
    callback = PathCondCallback((5,), module="net", every_epochs=1)
    fit(module, [callback])
    assert callback.schedule is not None
    reasons = [e.reason for e in callback.schedule.events]
    assert reasons == ["start", "every 1 epochs", "every 1 epochs"]
    assert all(e.report.converged for e in callback.schedule.events)


def test_pathcond_at_start_keeps_the_initial_function() -> None:
    module = Tiny()
    x = torch.randn(7, 5)
    reference = copy.deepcopy(module)

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # type: ignore[no-untyped-def]
            if trainer.global_step == 0:
                with torch.no_grad():
                    torch.testing.assert_close(pl_module(x), reference(x), rtol=1e-5,
                                               atol=1e-6)
                self.checked = True

    probe = Probe()
    fit(module, [PathCondCallback((5,), module="net"), probe], epochs=1)
    assert probe.checked


def test_enorm_callback_runs_and_bad_module_is_reported() -> None:
    module = Tiny()
    callback = ENormCallback((5,), module="net")
    fit(module, [callback], epochs=1)
    assert callback.enorm is not None
    with pytest.raises(PathcondError, match="no submodule 'body'"):
        fit(Tiny(), [PathCondCallback((5,), module="body")], epochs=1)
