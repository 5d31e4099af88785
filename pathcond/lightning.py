"""PyTorch Lightning callbacks: PathCond and ENorm inside ``Trainer.fit``.

Optional dependency: ``pip install 'pathcond[lightning]'``.

    trainer = pl.Trainer(callbacks=[PathCondCallback((784,), module="net", every_epochs=5)])

``module`` names the attribute of the LightningModule that holds the ReLU network (the
LightningModule itself when ``None``); the optimizer's state is transported at every
rescaling, so momentum and Adam moments stay consistent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from .errors import PathcondError

try:
    import pytorch_lightning as pl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("pathcond.lightning needs PyTorch Lightning: "
                      "pip install 'pathcond[lightning]'") from exc

from .rescale.schedule import PathCondSchedule


def _network(pl_module: nn.Module, module: str | None) -> nn.Module:
    if module is None:
        return pl_module
    try:
        net = pl_module.get_submodule(module)
    except AttributeError as exc:
        raise PathcondError(f"the LightningModule has no submodule '{module}' "
                            "(pass module= the attribute holding the network)") from exc
    return net


def _optimizer(trainer: pl.Trainer) -> Any:
    optimizers = trainer.optimizers
    if len(optimizers) > 1:
        raise PathcondError("pathcond callbacks support one optimizer; "
                            f"configure_optimizers returned {len(optimizers)}")
    return optimizers[0] if optimizers else None


class PathCondCallback(pl.Callback):
    """Rescale the network by PathCond at the start of training and, optionally, every
    ``every_steps`` steps, every ``every_epochs`` epochs or when the AM/GM ratio of the
    path magnitudes exceeds ``am_gm_threshold`` (see :class:`PathCondSchedule`)."""

    def __init__(self, input_shape: Sequence[int], *, module: str | None = None,
                 at_start: bool = True, every_steps: int | None = None,
                 every_epochs: int | None = None, am_gm_threshold: float | None = None,
                 check_every: int = 1, rescale_options: dict[str, Any] | None = None):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.module = module
        self.options = {"at_start": at_start, "every_steps": every_steps,
                        "every_epochs": every_epochs, "am_gm_threshold": am_gm_threshold,
                        "check_every": check_every, "rescale_options": rescale_options}
        self.schedule: PathCondSchedule | None = None
        self._restored: dict[str, Any] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        net = _network(pl_module, self.module)
        self.schedule = PathCondSchedule(net, self.input_shape, optimizer=_optimizer(trainer),
                                         **self.options)  # type: ignore[arg-type]
        if self._restored is not None:
            self.schedule.load_state_dict(self._restored)
        if trainer.global_step == 0:
            self._log(pl_module, self.schedule.start())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        assert self.schedule is not None
        self._log(pl_module, self.schedule.after_step())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.schedule is not None
        self._log(pl_module, self.schedule.after_epoch())

    @staticmethod
    def _log(pl_module: pl.LightningModule, report: Any) -> None:
        if report is not None and pl_module._trainer is not None:
            pl_module.log("pathcond/am_gm_after", report.am_gm_after)
            pl_module.log("pathcond/am_gm_before", report.am_gm_before)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.schedule is None else self.schedule.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict) or None


class ENormCallback(pl.Callback):
    """One ENorm balancing cycle every ``every`` optimizer steps (Stock et al. 2019;
    :class:`pathcond.optim.ENorm`), optimizer state transported."""

    def __init__(self, input_shape: Sequence[int], *, module: str | None = None,
                 c: float = 1.0, p: float = 2, every: int = 1, exclude_batchnorm: bool = True):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.module = module
        self.c, self.p, self.every, self.exclude_batchnorm = c, p, every, exclude_batchnorm
        self.enorm: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from .optim import ENorm

        net = _network(pl_module, self.module)
        self.enorm = ENorm(net, self.input_shape, optimizer=_optimizer(trainer), c=self.c,
                           p=self.p, every=self.every, exclude_batchnorm=self.exclude_batchnorm)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.enorm is not None:
            self.enorm.detach()
