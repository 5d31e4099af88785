"""The training loop: one run of one method with one seed.

:class:`Trainer` validates everything (data, model, method, device) in its constructor,
before anything is written, and :meth:`Trainer.run` trains, writing into the run directory:

``config.yaml``
    the resolved configuration (every default filled in);
``metrics.jsonl`` / ``metrics.csv``
    one record per epoch (columns in :data:`pathcond.train.metrics.COLUMNS`), starting with
    epoch 0: the model after the method's start (e.g. PathCond at initialisation), before
    any step, its train metrics from a full evaluation pass (later epochs: the running
    average over the epoch's minibatches, in training mode);
``checkpoints/epoch_NNNN.pt``
    written atomically after every epoch and epoch 0 (the ``output.keep_checkpoints``
    newest are kept);
``summary.json``
    final and best metrics, epochs to the target accuracy, times, status;
``plots/curves.png``
    loss and accuracy against epochs and wall time (``output.plot``);
``tensorboard/``
    with ``output.tensorboard: true``.

Determinism: the model is initialised right after ``torch.manual_seed(seed)``; the order of
the training samples in epoch ``e`` is a permutation drawn from a generator seeded by
``(seed, e)`` alone; the global RNG state (dropout) is saved in every checkpoint. A run
resumed from a checkpoint is therefore bit-identical on CPU to an uninterrupted one.

Distributed: under torchrun (``pathcond train --nproc N``) the trainer runs data-parallel
with DDP; ``training.batch_size`` is then the global batch, split across the processes, and
only rank 0 writes and prints (:mod:`pathcond.train.distributed`, ``docs/distributed.md``).

Times: ``epoch_time`` is the time of the epoch's training steps including the method's
hooks (``rescale_time``), without evaluation (``eval_time``); ``wall_time`` is their running
sum plus the time of the method's start (e.g. PathCond at initialisation).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from .._files import atomic_write_text, remove_entries
from ..data import DataSplits, load_dataset, to_autoencoding
from ..errors import CheckpointError, ConfigError, NonFiniteParameterError, PathcondError
from .checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    save_checkpoint,
)
from .config import DataConfig, ExperimentConfig, method_label, validate_config
from .distributed import DistContext, rank_seed
from .distributed import setup as setup_distributed
from .methods import MethodContext, build_method, make_optimizer, resolve_lr_scales
from .metrics import MetricsWriter, tensorboard_writer_class

__all__ = ["RunResult", "Trainer", "check_run_dir", "load_data", "resolve_device", "train"]

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
#: Keys that may differ between a run's saved configuration and the one resuming it
#: (a whole section when the key is a section).
RESUMABLE_CHANGES = (("training", "epochs"), ("device",), ("output",))
_RUN_MARKERS = (CONFIG_FILE, "metrics.jsonl", "checkpoints", SUMMARY_FILE)


@dataclass
class RunResult:
    """What :meth:`Trainer.run` returns."""

    run_dir: Path
    config: ExperimentConfig
    history: list[dict[str, Any]]
    summary: dict[str, Any]

    @property
    def status(self) -> str:
        """``completed``, ``diverged`` or ``interrupted``."""
        return str(self.summary["status"])


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else MPS, else CPU; refuse an unavailable device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} requested but CUDA is not available "
                              "(use device: auto or cpu)")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} does not exist "
                              f"({torch.cuda.device_count()} CUDA device(s))")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("device: 'mps' requested but not available (use auto or cpu)")
    return torch.device(name)


def load_data(cfg: DataConfig) -> DataSplits:
    """Load the dataset of a ``data`` section (classification or autoencoding)."""
    splits = load_dataset(cfg.name, root=cfg.root, seed=cfg.split_seed,
                          val_fraction=cfg.val_fraction, limit=cfg.limit, **cfg.options)
    if cfg.task in ("autoencoding", "image_autoencoding"):
        splits = to_autoencoding(splits, flatten=cfg.task == "autoencoding")
    return splits


def _order_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch``'s sample order: a function of ``(seed, epoch)``."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919 + 0x5EED) % 2**63)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _diff_key(a: Any, b: Any, prefix: str = "") -> str | None:
    """The first dotted key where two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _diff_key(a.get(key), b.get(key), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if a == b else prefix.rstrip(".")


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict without the keys a resume may change."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    for key in RESUMABLE_CHANGES:
        node: Any = out
        for part in key[:-1]:
            node = node.get(part, {})
        if isinstance(node, dict):
            node.pop(key[-1], None)
    return out


def _normalised(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config as this version writes it (legacy keys mapped, defaults filled in),
    so that a checkpoint of an older version compares equal to the same run's config."""
    try:
        return validate_config(dict(config), "checkpoint").to_dict()
    except ConfigError:
        return config


def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a run directory that cannot be used (without touching it): missing when
    resuming, not a directory, holding something else, or holding a run without
    ``overwrite``."""
    d = run_dir
    if resume:
        if not d.is_dir():
            raise ConfigError(f"cannot resume: run directory {str(d)!r} does not exist")
        return
    if d.exists() and not d.is_dir():
        raise ConfigError(f"run directory {str(d)!r} exists and is not a directory")
    if d.is_dir() and any(d.iterdir()):
        is_run = any((d / m).exists() for m in _RUN_MARKERS)
        if not is_run:
            raise ConfigError(f"{str(d)!r} is not empty and holds no run; choose another "
                              "output directory")
        if not overwrite:
            raise ConfigError(f"run directory {str(d)!r} already holds a run: resume it "
                              "with --resume or start again with --overwrite")


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _stderr(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


class Trainer:
    """One training run. The constructor prepares and validates; :meth:`run` trains.

    Args:
        config: the experiment.
        run_dir: where to write (default ``config.run_dir()``).
        log: receives one-line messages (epoch summaries, PathCond reports); ``None``
            prints them to stderr when ``output.progress`` is on and drops them otherwise.
        data: the dataset, if already loaded (it must match ``config.data``).
        distributed: ``None`` (default): train data-parallel when this process is one of
            several started by torchrun (or belongs to an initialised process group of more
            than one rank), see :mod:`pathcond.train.distributed`; ``False``: never;
            ``True``: refuse to run outside such an environment. Ranks other than 0 write
            nothing and log nothing (``log`` and ``output.progress`` apply to rank 0).

    Raises:
        ConfigError, DatasetNotFoundError, UnsupportedModelError: on bad input, before any
            file is written.
    """

    def __init__(self, config: ExperimentConfig, *, run_dir: str | Path | None = None,
                 log: Callable[[str], None] | None = None, data: DataSplits | None = None,
                 distributed: bool | None = None) -> None:
        from ..models import get_model, is_user_model, load_model_builder, model_input_shape

        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else config.run_dir()
        #: The distributed run this process belongs to (``None``: a single process).
        self.dist: DistContext | None = setup_distributed(config.device, enabled=distributed)
        self.is_main = self.dist is None or self.dist.is_main
        self.progress = config.output.progress and self.is_main
        self.log: Callable[[str], None] = log if log is not None and self.is_main else (
            _stderr if self.progress else (lambda _m: None))
        self.device = self.dist.device if self.dist is not None else resolve_device(
            config.device)
        if config.output.tensorboard:
            tensorboard_writer_class()
        if config.training.threads is not None:
            torch.set_num_threads(config.training.threads)
        if self.device.type == "cuda":
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        data = data if data is not None else load_data(config.data)
        self.data = data
        self.classification = data.num_classes is not None
        tcfg = config.training
        if tcfg.drop_last and data.num_train < tcfg.batch_size:
            raise ConfigError(f"training.batch_size {tcfg.batch_size} exceeds the "
                              f"{data.num_train} training samples and drop_last is on")
        if tcfg.target_accuracy is not None and not self.classification:
            raise ConfigError("training.target_accuracy needs a classification task")
        if tcfg.target_split == "val" and data.num_val == 0 and tcfg.target_accuracy:
            raise ConfigError("training.target_split: 'val' but the validation set is empty")
        if tcfg.target_split == "test" and data.test_x is None and tcfg.target_accuracy:
            raise ConfigError(f"training.target_split: 'test' but {data.name} has no test set")

        load_model_builder(config.model.name)  # a model of yours is imported before seeding
        if (config.model.input_shape is not None
                and tuple(config.model.input_shape) != tuple(data.input_shape)):
            raise ConfigError(f"model.input_shape {list(config.model.input_shape)} disagrees "
                              f"with {data.name}'s samples, {list(data.input_shape)}: drop "
                              "model.input_shape (the data's is used) or fix it")
        torch.manual_seed(config.seed)
        self.model: nn.Module = get_model(config.model.name, **config.model.args)
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ConfigError(f"model {config.model.name!r} has no trainable parameters")
        zoo_shape = None if is_user_model(config.model.name) else tuple(
            model_input_shape(config.model.name, **config.model.args))
        if config.model.input_shape is not None:
            self.input_shape = tuple(config.model.input_shape)
        elif zoo_shape is not None and (zoo_shape == tuple(data.input_shape) or (
                len(zoo_shape) == 1 and zoo_shape[0] == math.prod(data.input_shape))):
            self.input_shape = zoo_shape  # the same samples (an MLP flattens the images)
        else:  # a model of yours, or a zoo model run at another size: the data's, saved
            self.input_shape = tuple(data.input_shape)
            model_cfg = config.model.model_copy(update={"input_shape": list(self.input_shape)})
            self.config = config = config.model_copy(update={"model": model_cfg})
        self._check_compatible()
        if config.optimizer.lr_scales == "pathcond":  # saved resolved: resume rebuilds the same
            optimizer = resolve_lr_scales(config.optimizer, self.model, self.input_shape,
                                          method=config.method.name)
            self.config = config = config.model_copy(update={"optimizer": optimizer})
            if isinstance(optimizer.lr_scales, dict):
                factors = optimizer.lr_scales.values()
                self.log(f"optimizer.lr_scales: pathcond gives {len(factors)} parameter "
                         f"tensors learning-rate factors {min(factors):.4g} to "
                         f"{max(factors):.4g}")
        self.model.to(self.device)
        if self.dist is not None:
            self._check_distributed()
            self.dist.broadcast_module(self.model)
        self.method = build_method(config.method)
        opt = self.method.build_optimizer(self.model, config.optimizer, self.input_shape)
        self.optimizer: torch.optim.Optimizer = opt if opt is not None else make_optimizer(
            self.model, config.optimizer)
        self.ctx = MethodContext(self.model, self.optimizer, self.input_shape, log=self.log)
        self.method.setup(self.ctx)
        #: The DDP wrapper the training steps run through (``None`` in one process); the
        #: method plug-ins, evaluation and checkpoints use the plain ``model``.
        self.ddp: nn.Module | None = None
        if self.dist is not None:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
            if self.dist.rank > 0:  # rank 0 keeps the single-process RNG stream
                torch.manual_seed(rank_seed(config.seed, self.dist.rank))
        self.train_x, self.train_y = self._on_device(data.train_x, data.train_y)
        self.val_x, self.val_y = self._on_device(data.val_x, data.val_y)
        self.test_x: torch.Tensor | None = None
        self.test_y: torch.Tensor | None = None
        if data.test_x is not None and data.test_y is not None and tcfg.evaluate_test:
            self.test_x, self.test_y = self._on_device(data.test_x, data.test_y)

        self.epoch = 0
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.setup_time = 0.0
        self.rescale_time_total = 0.0
        self.extra: dict[str, Any] = {}

    # ------------------------------------------------------------------ preparation

    def _on_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.to(self.device), y.to(self.device)

    def _check_compatible(self) -> None:
        """Run one sample through the model to check shapes, before training."""
        data, name = self.data, self.config.model.name
        sample = data.train_x[:1]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(sample)
        except Exception as exc:  # a model's own check (assert, ValueError) or a size error
            raise ConfigError(f"model {name!r} does not accept {data.name} samples of shape "
                              f"{tuple(data.input_shape)}: {_first_line(exc)}") from None
        finally:
            self.model.train(was_training)
        if self.classification:
            expected: tuple[int, ...] = (1, int(data.num_classes or 0))
            what = f"{data.num_classes} class scores"
        else:
            expected = (1, *data.train_y.shape[1:])
            what = f"targets of shape {tuple(data.train_y.shape[1:])}"
        if tuple(out.shape) != expected:
            raise ConfigError(f"model {name!r} outputs shape {tuple(out.shape[1:])} per sample "
                              f"but {data.name} needs {what}")

    def _check_distributed(self) -> None:
        """Refuse a global batch that cannot be split over the processes."""
        assert self.dist is not None
        world, tcfg = self.dist.world_size, self.config.training
        if tcfg.batch_size < world:
            raise ConfigError(f"training.batch_size {tcfg.batch_size} is the global batch and "
                              f"must be at least the number of processes ({world})")
        if not _has_batchnorm(self.model):
            return
        n, bs = self.data.num_train, tcfg.batch_size
        sizes = {min(bs, n)} | ({n % bs} if n % bs and not tcfg.drop_last else set())
        for g in sorted(sizes):
            if 1 in (g // world, -(-g // world)):
                raise ConfigError(
                    f"training.batch_size: a batch of {g} samples split over {world} processes "
                    "leaves one sample to a process, which BatchNorm cannot train on; "
                    "change batch_size or set training.drop_last: true")

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.classification:
            return F.cross_entropy(out, y)
        return F.mse_loss(out, y)

    # ------------------------------------------------------------------ run directory

    def _prepare_dir(self, *, resume: bool, overwrite: bool) -> None:
        d = self.run_dir
        check_run_dir(d, resume=resume, overwrite=overwrite)
        if resume:
            return
        if d.is_dir() and any(d.iterdir()):
            remove_entries(d, (*_RUN_MARKERS, "metrics.csv", "plots", "tensorboard"))
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / CONFIG_FILE, yaml.safe_dump(self.config.to_dict(),
                                                          sort_keys=False))

    def _restore(self) -> None:
        if self.dist is None:
            state = latest_checkpoint(self.run_dir)
        else:  # rank 0 reads (other nodes need no copy of the run directory)
            state = self.dist.from_main(lambda: latest_checkpoint(self.run_dir))
        saved = _normalised(state["config"])
        key = _diff_key(_comparable(saved), _comparable(self.config.to_dict()))
        if key == "model.input_shape" and saved.get("model", {}).get("input_shape") is None:
            raise ConfigError(
                f"cannot resume {str(self.run_dir)!r}: an earlier pathcond traced "
                f"{self.config.model.name!r} at its zoo shape "
                f"{list(state.get('input_shape', []))}, not at the data's "
                f"{list(self.input_shape)}, so the run's path quantities are "
                "those of another input size; start it again (--overwrite)")
        if key is not None:
            raise ConfigError(f"cannot resume {str(self.run_dir)!r}: its checkpoint was made "
                              f"with a different '{key}'")
        if int(state["epoch"]) > self.config.training.epochs:
            raise ConfigError(f"cannot resume: the checkpoint is at epoch {state['epoch']}, past "
                              f"training.epochs = {self.config.training.epochs}")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.method.load_state_dict(state["method"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint of {str(self.run_dir)!r} does not fit the "
                                  f"model/optimizer: {_first_line(exc)}") from None
        rng = state["rng"]
        if self.dist is not None and self.dist.rank > 0:
            ranks = rng.get("ranks")
            if ranks is not None and len(ranks) == self.dist.world_size:
                rng = ranks[self.dist.rank]
            else:  # saved by another number of processes: a fresh stream for this rank
                torch.manual_seed(rank_seed(self.config.seed, self.dist.rank,
                                            int(state["epoch"])))
                rng = None
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            if self.device.type == "cuda" and rng.get("cuda"):
                torch.cuda.set_rng_state_all(rng["cuda"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.history = [dict(r) for r in state["history"]]
        self.setup_time = float(state["times"]["setup_time"])
        self.rescale_time_total = float(state["times"]["rescale_time_total"])
        self.extra = dict(state.get("extra", {}))

    def _rng_state(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []
        return {"torch": torch.get_rng_state(), "cuda": cuda}

    def _save(self, rng_ranks: list[Any] | None = None) -> None:
        """Write the epoch's checkpoint (rank 0 only); ``rng_ranks``: every rank's RNG state
        in a distributed run."""
        rng = self._rng_state()
        if rng_ranks is not None:
            rng["ranks"] = rng_ranks
        payload = {
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "method": self.method.state_dict(),
            "rng": rng,
            "history": self.history,
            "times": {"setup_time": self.setup_time,
                      "rescale_time_total": self.rescale_time_total},
            "extra": self.extra,
            "input_shape": list(self.input_shape),
        }
        save_checkpoint(checkpoint_path(self.run_dir, self.epoch), payload)
        prune_checkpoints(self.run_dir, self.config.output.keep_checkpoints)

    # ------------------------------------------------------------------ training

    def am_gm(self) -> float | None:
        """AM/GM of the current path magnitudes (``None`` if not computable)."""
        from ..rescale import build_problem

        try:
            problem = build_problem(self.model, self.ctx.graph)
            zero = torch.zeros(self.ctx.graph.num_groups, dtype=torch.float64,
                               device=problem.device)
            value = float(problem.am_gm(zero))
        except (NonFiniteParameterError, PathcondError):
            return None
        return value if math.isfinite(value) else None

    def _batches(self, epoch: int) -> Iterator[torch.Tensor]:
        n, bs = self.data.num_train, self.config.training.batch_size
        perm = torch.randperm(n, generator=_order_generator(self.config.seed, epoch))
        stop = n - n % bs if self.config.training.drop_last else n
        for start in range(0, stop, bs):
            yield perm[start:start + bs].to(self.device)

    def _sync_if_rescaled(self, hook: str, rescalings_before: int) -> None:
        """Distributed: after a method hook that may change the parameters, broadcast rank
        0's parameters, buffers and optimizer state if any rank rescaled."""
        if self.dist is None or not self.method.may_rescale(hook):
            return
        if self.dist.any_true(self.method.rescalings != rescalings_before):
            self.dist.sync_state(self.model, self.optimizer)

    def _train_epoch(self, epoch: int) -> tuple[float, float | None, float]:
        model, opt, method, dist = self.model, self.optimizer, self.method, self.dist
        forward = self.ddp if self.ddp is not None else model
        sync_before_step = (dist is not None and method.step_reads_buffers
                            and any(True for _ in model.buffers()))
        model.train()
        n, bs = self.data.num_train, self.config.training.batch_size
        total = (n // bs) if self.config.training.drop_last else math.ceil(n / bs)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        count = 0
        method_time = 0.0
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=f"epoch {epoch}/{self.config.training.epochs}",
                       unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True)
        try:
            for i, idx in enumerate(self._batches(epoch)):
                weight, local = 1.0, idx.numel()
                if dist is not None:  # this rank's piece of the global batch
                    idx, weight, local = dist.shard(idx)
                x, y = self.train_x[idx], self.train_y[idx]
                out = forward(x)
                loss = self._loss(out, y)
                opt.zero_grad(set_to_none=True)
                (loss if weight == 1.0 else loss * weight).backward()
                t = time.perf_counter()
                method.before_step()
                method_time += time.perf_counter() - t
                if sync_before_step:
                    assert dist is not None
                    dist.sync_buffers(model)
                opt.step()
                self.step += 1
                t = time.perf_counter()
                before = method.rescalings
                method.after_step(self.step)
                self._sync_if_rescaled("after_step", before)
                method_time += time.perf_counter() - t
                if local:
                    loss_sum += loss.detach().to(torch.float64) * local
                    if self.classification:
                        correct += (out.detach().argmax(1) == y).sum()
                count += local
                if bar is not None:
                    bar.update(1)
                    if i % 20 == 0:
                        bar.set_postfix(loss=f"{loss.item():.4g}")
        finally:
            if bar is not None:
                bar.close()
        if dist is not None:  # the epoch's totals over all ranks; rank 0's BatchNorm buffers
            totals = torch.stack([loss_sum, correct.to(torch.float64),
                                  torch.tensor(float(count), dtype=torch.float64,
                                               device=self.device)])
            dist.all_sum(totals)
            loss_sum, correct, count = totals[0], totals[1], int(totals[2].item())
            dist.sync_buffers(model)
        train_loss = float(loss_sum) / max(count, 1)
        train_acc = float(correct) / count if self.classification and count else None
        return train_loss, train_acc, method_time

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float | None, float | None]:
        """Mean loss and accuracy (``None`` for regression) on ``(x, y)`` in eval mode."""
        n = int(x.shape[0])
        if n == 0:
            return None, None
        self.model.eval()
        bs = self.config.training.eval_batch_size
        loss_sum, correct = 0.0, 0
        try:
            for start in range(0, n, bs):
                xb, yb = x[start:start + bs], y[start:start + bs]
                out = self.model(xb)
                loss_sum += float(self._loss(out, yb)) * int(xb.shape[0])
                if self.classification:
                    correct += int((out.argmax(1) == yb).sum())
        finally:
            self.model.train()
        return loss_sum / n, (correct / n if self.classification else None)

    def run(self, *, resume: bool = False, overwrite: bool = False,
            stop_after: int | None = None) -> RunResult:
        """Train (or continue training) to ``training.epochs``.

        Args:
            resume: continue from the newest checkpoint in the run directory.
            overwrite: replace an existing run in the run directory.
            stop_after: stop after this epoch as if interrupted (for tests and budgets).
        """
        if self.dist is None:
            self._prepare_dir(resume=resume, overwrite=overwrite)
        else:  # rank 0 prepares; its refusal is raised on every rank
            self.dist.from_main(lambda: self._prepare_dir(resume=resume, overwrite=overwrite))
        cfg = self.config
        if resume:
            self._restore()
        writer = MetricsWriter(self.run_dir, tensorboard=cfg.output.tensorboard,
                               purge_step=self.epoch) if self.is_main else None
        try:
            self.warm_up()
            if not resume:
                if cfg.training.am_gm and self.is_main:
                    self.extra["am_gm_init"] = self.am_gm()
                t = time.perf_counter()
                before = self.method.rescalings
                self.method.on_train_begin()
                self._sync_if_rescaled("train_begin", before)
                self.setup_time = time.perf_counter() - t
                self.rescale_time_total = self.setup_time
                train_loss, train_acc = self.evaluate(self.train_x, self.train_y) \
                    if self.is_main else (None, None)
                self._record(writer, 0, train_loss, train_acc, 0.0, self.setup_time)
            status = self._loop(writer, stop_after)
        finally:
            if writer is not None:
                writer.close()
        summary = self.summary(status)
        if self.is_main:
            atomic_write_text(self.run_dir / SUMMARY_FILE,
                              json.dumps(summary, indent=2) + "\n")
            if cfg.output.plot and status != "interrupted" and self.history:
                from .plot import plot_runs

                with contextlib.suppress(PathcondError):
                    plot_runs([self.run_dir], self.run_dir / "plots",
                              fmt=cfg.output.plot_format)
        if self.dist is not None:  # every rank returns rank 0's summary, once it is written
            summary = self.dist.broadcast_object(summary)
        return RunResult(self.run_dir, cfg, list(self.history), summary)

    def warm_up(self) -> None:
        """One untimed forward/backward pass on a copy of the model, so that one-off costs
        (thread pools, allocator, kernel selection) do not land in the first run's first
        epoch. The model, the optimizer and the RNG state are untouched."""
        import copy

        n = min(self.config.training.batch_size, self.data.num_train)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda"
                                   else []):
            clone = copy.deepcopy(self.model)
            clone.train()
            out = clone(self.train_x[:n])
            self._loss(out, self.train_y[:n]).backward()
        del clone

    def _loop(self, writer: MetricsWriter | None, stop_after: int | None) -> str:
        cfg = self.config
        if self.history and self.history[-1].get("train_loss") is None:
            return "diverged"
        while self.epoch < cfg.training.epochs:
            if stop_after is not None and self.epoch >= stop_after:
                return "interrupted"
            epoch = self.epoch + 1
            t0 = time.perf_counter()
            train_loss, train_acc, method_time = self._train_epoch(epoch)
            t = time.perf_counter()
            before = self.method.rescalings
            self.method.on_epoch_end(epoch)
            self._sync_if_rescaled("epoch_end", before)
            method_time += time.perf_counter() - t
            epoch_time = time.perf_counter() - t0
            self.rescale_time_total += method_time
            row = self._record(writer, epoch, train_loss, train_acc, epoch_time, method_time)
            if row["train_loss"] is None:
                self.log(f"training diverged at epoch {epoch} (non-finite loss); stopping")
                return "diverged"
        return "completed"

    def _record(self, writer: MetricsWriter | None, epoch: int, train_loss: float | None,
                train_acc: float | None, epoch_time: float, method_time: float
                ) -> dict[str, Any]:
        """Evaluate, append the epoch's metrics, checkpoint, write the metrics files.

        Distributed: rank 0 does all of it (with every rank's RNG state in the checkpoint)
        and broadcasts the record, which every rank appends to its history."""
        if self.dist is None:
            return self._record_main(writer, epoch, train_loss, train_acc, epoch_time,
                                     method_time)
        rng_ranks = self.dist.gather_object(self._rng_state())
        row: dict[str, Any] | None = None
        if self.dist.is_main:
            row = self._record_main(writer, epoch, train_loss, train_acc, epoch_time,
                                    method_time, rng_ranks)
        row = self.dist.broadcast_object(row)
        assert row is not None
        if not self.dist.is_main:
            self.epoch = epoch
            self.history.append(row)
        return row

    def _record_main(self, writer: MetricsWriter | None, epoch: int, train_loss: float | None,
                     train_acc: float | None, epoch_time: float, method_time: float,
                     rng_ranks: list[Any] | None = None) -> dict[str, Any]:
        cfg = self.config
        t = time.perf_counter()
        diverged = train_loss is None or not math.isfinite(train_loss)
        val_loss, val_acc = self.evaluate(self.val_x, self.val_y)
        test_loss = test_acc = None
        if self.test_x is not None and self.test_y is not None:
            test_loss, test_acc = self.evaluate(self.test_x, self.test_y)
        am_gm = self.am_gm() if cfg.training.am_gm and not diverged else None
        eval_time = time.perf_counter() - t
        prev_wall = self.history[-1]["wall_time"] if self.history else 0.0
        row = {
            "epoch": epoch, "step": self.step,
            "train_loss": None if diverged else train_loss, "train_acc": train_acc,
            "val_loss": val_loss, "val_acc": val_acc,
            "test_loss": test_loss, "test_acc": test_acc, "am_gm": am_gm,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "epoch_time": epoch_time, "eval_time": eval_time,
            "rescale_time": method_time,
            "wall_time": prev_wall + (epoch_time if epoch else self.setup_time),
            "rescale_time_total": self.rescale_time_total,
            "rescalings": self.method.rescalings,
        }
        row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in row.items()}
        self.epoch = epoch
        self.history.append(row)
        self._save(rng_ranks)
        if writer is not None:
            writer.write(self.history)
            writer.scalars(row)
        self.log(self._epoch_line(row))
        return row

    def _epoch_line(self, row: dict[str, Any]) -> str:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.2f}%"

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.4g}"

        parts = [f"[{method_label(self.config.method)} seed {self.config.seed}] "
                 f"epoch {row['epoch']}/{self.config.training.epochs}",
                 f"train {num(row['train_loss'])}"
                 + (f" {pct(row['train_acc'])}" if self.classification else "")]
        if row["val_loss"] is not None:
            parts.append(f"val {num(row['val_loss'])}"
                         + (f" {pct(row['val_acc'])}" if self.classification else ""))
        if row["test_loss"] is not None:
            parts.append(f"test {num(row['test_loss'])}"
                         + (f" {pct(row['test_acc'])}" if self.classification else ""))
        if row["am_gm"] is not None:
            parts.append(f"AM/GM {row['am_gm']:.4g}")
        parts.append(f"{row['epoch_time']:.1f} s")
        return "  ".join(parts)

    def summary(self, status: str) -> dict[str, Any]:
        """Final/best metrics, epochs to target accuracy, times."""
        cfg = self.config
        h = self.history
        last = h[-1] if h else {}
        best_val = max((r for r in h if r.get("val_acc") is not None),
                       key=lambda r: r["val_acc"], default=None)
        best_test = max((float(r["test_acc"]) for r in h if r.get("test_acc") is not None),
                        default=None)
        target = cfg.training.target_accuracy
        key = f"{cfg.training.target_split}_acc"
        reached = None
        if target is not None:
            reached = next((r["epoch"] for r in h
                            if r.get(key) is not None and r[key] >= target), None)
        return {
            "name": cfg.name, "method": cfg.method.name, "label": method_label(cfg.method),
            "seed": cfg.seed, "status": status, "epochs": self.epoch,
            "epochs_planned": cfg.training.epochs, "steps": self.step,
            "final": {k: last.get(k) for k in ("train_loss", "train_acc", "val_loss",
                                               "val_acc", "test_loss", "test_acc", "am_gm")},
            "best_val_acc": None if best_val is None else best_val["val_acc"],
            "best_val_epoch": None if best_val is None else best_val["epoch"],
            "best_test_acc": best_test,
            "target_accuracy": target, "target_split": cfg.training.target_split,
            "epochs_to_target": reached,
            "wall_time": last.get("wall_time", self.setup_time),
            "setup_time": self.setup_time,
            "rescale_time_total": self.rescale_time_total,
            "rescalings": self.method.rescalings,
            "am_gm_init": self.extra.get("am_gm_init"),
            "am_gm_start": h[0].get("am_gm") if h else None,
            "device": str(self.device),
            "checkpoint": str(list_checkpoints(self.run_dir)[-1][1])
            if list_checkpoints(self.run_dir) else None,
        }


def train(config: ExperimentConfig, *, run_dir: str | Path | None = None, resume: bool = False,
          overwrite: bool = False, log: Callable[[str], None] | None = None,
          stop_after: int | None = None) -> RunResult:
    """Prepare a :class:`Trainer` and run it (see :meth:`Trainer.run`)."""
    return Trainer(config, run_dir=run_dir, log=log).run(resume=resume, overwrite=overwrite,
                                                         stop_after=stop_after)


def read_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved configuration saved in a run directory."""
    from .config import read_yaml

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory (no {CONFIG_FILE})")
    return validate_config(read_yaml(path), str(path))
