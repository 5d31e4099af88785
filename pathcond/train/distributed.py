"""Distributed data-parallel training: ``torch.distributed`` DDP launched by torchrun.

``pathcond train --nproc N`` starts ``N`` local worker processes through torchrun's launcher
(:func:`launch`, a standalone rendezvous on this machine); ``torchrun --nproc_per_node N -m
pathcond train ...`` (any number of nodes, see ``docs/distributed.md``) does the same by
hand. In every worker the :class:`~pathcond.train.Trainer` sees torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), joins the
process group (:func:`setup`: gloo on CPU, NCCL on CUDA, one GPU per process,
``cuda:LOCAL_RANK``) and trains a :class:`~torch.nn.parallel.DistributedDataParallel`
wrapper of the model; the method plug-ins (PathCond, ENorm, Path-SGD, ...) work on the plain
module underneath, so rescaling graphs are traced on the model itself.

What the trainer guarantees under DDP (with :class:`DistContext`'s collectives):

* **Same start everywhere.** Every rank builds the model from the same seed, then rank 0's
  parameters and buffers are broadcast before the optimizer and the method are set up.
* **Data.** ``training.batch_size`` is the *global* batch: each step takes the next
  ``batch_size`` indices of the epoch's seeded permutation (the same on every rank) and rank
  ``r`` keeps the ``r``-th of ``WORLD_SIZE`` near-equal contiguous pieces (:meth:`shard`).
  The local loss is weighted by ``WORLD_SIZE * n_local / n_global``, so DDP's averaging of
  the gradients gives exactly the gradient of the mean loss over the global batch, as in one
  process, even for a short last batch (a rank left without samples runs the batch with
  weight 0). One process and ``N`` processes therefore follow the same trajectory up to
  rounding (BatchNorm aside: it normalises with per-process batch statistics).
* **Identical parameters after a rescaling.** After each hook of the method that may change
  the parameters (PathCond at init / every k steps / epochs / on an AM/GM threshold, ENorm
  cycles), the ranks agree (one all-reduce of a flag) whether any of them rescaled; if so,
  rank 0's parameters, buffers and optimizer state (momentum, Adam moments: transported by
  the rescaling) are broadcast to all. The rescaling is computed on every rank but rank 0's
  result is the one kept, so ranks cannot drift apart even when BatchNorm statistics or
  rounding differ between them.
* **BatchNorm buffers.** DDP broadcasts rank 0's buffers at every forward; the trainer also
  broadcasts them at the end of every epoch (so evaluation, checkpoints and epoch-level
  rescalings see identical statistics) and, for Path-SGD (whose step reads the running
  variances), before every step.
* **One writer.** Only rank 0 creates the run directory, evaluates, writes ``metrics.*``,
  checkpoints (atomically), ``summary.json``, plots and TensorBoard logs, and prints; its
  per-epoch record and final summary are broadcast so every rank returns the same
  :class:`~pathcond.train.RunResult`. Checkpoints hold the plain module's ``state_dict`` (no
  ``module.`` prefix: they load in one process) and every rank's RNG state.
* **Resume.** Rank 0 reads the newest checkpoint and broadcasts it, so other nodes need no
  copy of the run directory; errors found by rank 0 (run directory exists, checkpoint
  corrupted, ...) are raised on every rank.

The per-step cost of all this is one scalar all-reduce per step for methods that may
rescale after a step (nothing for the others), plus what DDP itself does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import tempfile
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from .._files import atomic_write_text
from ..errors import ConfigError, PathcondError

__all__ = [
    "DistContext", "DistributedRunError", "env_world", "launch", "rank_seed", "run_distributed",
    "setup", "shutdown", "under_torchrun",
]

T = TypeVar("T")

#: Process groups this module initialised (and :func:`shutdown` destroys).
_OWNED_GROUP = False


class DistributedRunError(PathcondError):
    """A distributed run failed in one or more worker processes."""


def env_world() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's environment variables, or ``None``
    when they are absent or the world has one process."""
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
    except (KeyError, ValueError):
        return None
    if world <= 1:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    return rank, world, local_rank


def under_torchrun() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return env_world() is not None


def rank_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """Seed of rank ``rank``'s global RNG (dropout) in a distributed run started or resumed
    at ``epoch``; rank 0 keeps the stream seeded by ``seed`` (as in one process)."""
    return (seed * 1_000_003 + rank * 104_729 + epoch * 7_919 + 0xD15C) % 2**63


def distributed_device(name: str, local_rank: int) -> torch.device:
    """The device of the process with local rank ``local_rank``: ``cuda:LOCAL_RANK`` for
    ``cuda``/``auto`` with CUDA, else the CPU; ``mps`` and ``cuda:N`` are refused."""
    if name == "mps":
        raise ConfigError("device: 'mps' does not support distributed training; use cpu or "
                          "cuda")
    if name.startswith("cuda:"):
        raise ConfigError(f"device: {name!r} names one GPU, but under torchrun each process "
                          "takes cuda:LOCAL_RANK; set device: cuda (or auto)")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available "
                          "(use device: auto or cpu)")
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(f"device: process with local rank {local_rank} needs cuda:"
                          f"{local_rank} but this node has {torch.cuda.device_count()} CUDA "
                          "device(s): start at most that many processes per node")
    return torch.device("cuda", local_rank)


@dataclass
class DistContext:
    """This process's place in a distributed run, and the collectives the trainer uses.

    Every method that communicates must be called by all ranks in the same order.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    # ------------------------------------------------------------------ data

    def shard(self, batch: torch.Tensor) -> tuple[torch.Tensor, float, int]:
        """This rank's part of a global batch of sample indices.

        Returns ``(indices, weight, count)``: the ``rank``-th of ``world_size`` near-equal
        contiguous pieces of ``batch``, the factor ``world_size * count / len(batch)`` the
        local mean loss is multiplied by (so that DDP's gradient average is the gradient of
        the global mean loss; exactly 1.0 for equal pieces), and the piece's size. A rank
        whose piece is empty gets the whole batch with weight 0 (it must still take part in
        the backward pass) and count 0.
        """
        total = int(batch.numel())
        piece = torch.tensor_split(batch, self.world_size)[self.rank]
        count = int(piece.numel())
        if count == 0:
            return batch, 0.0, 0
        return piece, float(self.world_size * count) / total, count

    # ------------------------------------------------------------------ collectives

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place; returns it."""
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any_true(self, flag: bool) -> bool:
        """Whether ``flag`` is true on at least one rank."""
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        return bool(self.all_sum(t).item() > 0)

    def broadcast_tensors(self, tensors: Sequence[torch.Tensor]) -> None:
        """Overwrite ``tensors`` in place with rank 0's values (coalesced by device and
        dtype: one broadcast per kind)."""
        import torch.distributed as dist

        groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for t in tensors:
            groups.setdefault((t.device, t.dtype), []).append(t)
        for items in groups.values():
            flat = torch.cat([t.detach().reshape(-1) for t in items])
            dist.broadcast(flat, src=0)
            with torch.no_grad():
                offset = 0
                for t in items:
                    n = t.numel()
                    t.copy_(flat[offset:offset + n].view_as(t))
                    offset += n

    def broadcast_module(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers."""
        self.broadcast_tensors([*module.parameters(), *module.buffers()])

    def sync_buffers(self, module: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics)."""
        buffers = list(module.buffers())
        if buffers:
            self.broadcast_tensors(buffers)

    def sync_state(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Give every rank rank 0's parameters, buffers and per-parameter optimizer state
        (momentum buffers, Adam moments, ...)."""
        tensors: list[torch.Tensor] = [*module.parameters(), *module.buffers()]
        for group in optimizer.param_groups:
            for p in group["params"]:
                state = optimizer.state.get(p)
                if not state:
                    continue
                tensors.extend(v for _, v in sorted(state.items(), key=lambda kv: str(kv[0]))
                               if isinstance(v, torch.Tensor))
        self.broadcast_tensors(tensors)

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's ``obj`` (picklable) on every rank."""
        import torch.distributed as dist

        box: list[Any] = [obj]
        dist.broadcast_object_list(box, src=0)
        value: T = box[0]
        return value

    def gather_object(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj``, in rank order, on rank 0 (``None`` elsewhere)."""
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def from_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and return its result on every rank; a
        :class:`~pathcond.errors.PathcondError` or ``OSError`` it raises is raised on every
        rank (so that no rank waits for a peer that gave up)."""
        if self.is_main:
            try:
                value = fn()
            except (PathcondError, OSError) as exc:
                self.broadcast_object((False, _portable(exc)))
                raise
            self.broadcast_object((True, value))
            return value
        answer: tuple[bool, Any] = self.broadcast_object((True, None))
        if not answer[0]:
            raise answer[1]
        result: T = answer[1]
        return result

    def barrier(self) -> None:
        """Wait for every rank."""
        import torch.distributed as dist

        dist.barrier()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a PathcondError with its message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any unpicklable exception is replaced
        return PathcondError(str(exc))
    return exc


def setup(device_name: str, *, enabled: bool | None = None) -> DistContext | None:
    """Join the distributed run this process belongs to, if any.

    With ``enabled=None`` (auto): if a process group of more than one rank is already
    initialised, use it; else if torchrun's environment says ``WORLD_SIZE`` > 1, initialise
    one (``env://``; NCCL when the device is CUDA, else gloo); else return ``None`` (one
    process). ``enabled=False`` always returns ``None``; ``enabled=True`` refuses to run
    without a distributed environment.

    Raises:
        ConfigError: a device that cannot be used per process (``mps``, ``cuda:N``, more
            processes than GPUs on a node), or ``enabled=True`` outside torchrun.
    """
    global _OWNED_GROUP
    if enabled is False:
        return None
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        if world <= 1:
            return None
        rank = dist.get_rank()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        device = distributed_device(device_name, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return DistContext(rank, world, local_rank, device, str(dist.get_backend()))
    found = env_world()
    if found is None:
        if enabled:
            raise ConfigError("distributed training needs torchrun's environment (RANK, "
                              "WORLD_SIZE > 1): launch with `pathcond train --nproc N` or "
                              "torchrun")
        return None
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed")
    rank, world, local_rank = found
    device = distributed_device(device_name, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    _OWNED_GROUP = True
    return DistContext(rank, world, local_rank, device, backend)


def shutdown() -> None:
    """Destroy the process group if :func:`setup` created it (idempotent)."""
    global _OWNED_GROUP
    import torch.distributed as dist

    if _OWNED_GROUP and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED_GROUP = False


# ----------------------------------------------------------------------------- launching


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """Silence torchrun's own failure reports (the workers' messages are shown instead)."""
    names = ("torch.distributed.elastic", "torch.distributed.launcher",
             "torch.multiprocessing", "torch.distributed.run")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def launch(fn: Callable[..., T], nproc: int, *args: Any,
           threads_per_process: int | None = None) -> dict[int, T]:
    """Run ``fn(*args)`` in ``nproc`` local processes joined into one distributed world:
    what ``torchrun --standalone --nproc_per_node NPROC`` does (torch's elastic launcher,
    c10d rendezvous on a free local port, no restarts).

    ``fn`` must be importable by name (a module-level function; the processes are spawned)
    and its arguments picklable. Each process sees ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR`` and ``MASTER_PORT``; ``OMP_NUM_THREADS`` is set to
    ``threads_per_process`` (default: the CPU count divided by ``nproc``) unless it is set.

    Returns:
        ``{rank: return value}``.

    Raises:
        torch.distributed.elastic.multiprocessing.errors.ChildFailedError: a process failed
            (the others are then terminated).
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          run_id=f"pathcond-{uuid.uuid4().hex[:12]}", rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                          start_method="spawn")
    set_threads = "OMP_NUM_THREADS" not in os.environ
    if set_threads:  # the spawned processes inherit it; this one has read it already
        threads = threads_per_process or max(1, (os.cpu_count() or 1) // nproc)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        with _quiet_launcher():
            result: dict[int, T] = elastic_launch(config, fn)(*args)
    finally:
        if set_threads:
            os.environ.pop("OMP_NUM_THREADS", None)
    return result


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def train_worker(config: dict[str, Any], run_dir: str, resume: bool, overwrite: bool,
                 error_dir: str) -> dict[str, Any] | None:
    """One process of ``pathcond train --nproc N``: train, return rank 0's summary.

    A :class:`~pathcond.errors.PathcondError` is written to ``error_dir/rank_R.txt`` (for
    the launching process to print once) and ends the process with status 2; any other
    exception prints its traceback and ends it with status 1.
    """
    from .config import validate_config
    from .trainer import Trainer

    rank = int(os.environ.get("RANK", "0"))
    try:
        cfg = validate_config(config, "config")
        trainer = Trainer(cfg, run_dir=run_dir)
        result = trainer.run(resume=resume, overwrite=overwrite)
        return result.summary if rank == 0 else None
    except PathcondError as exc:
        atomic_write_text(Path(error_dir, f"rank_{rank}.txt"), _one_line(exc))
        sys.stderr.flush()
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:  # noqa: BLE001 - reported with its traceback, then a failure status
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(1)
    finally:
        shutdown()


def check_launch(config: Any, nproc: int) -> None:
    """Refuse, before any process starts, what cannot work with ``nproc`` processes."""
    if nproc < 2:
        raise ConfigError(f"--nproc must be at least 2 for a distributed run, got {nproc}")
    bs = config.training.batch_size
    if bs < nproc:
        raise ConfigError(f"training.batch_size {bs} is the global batch and must be at least "
                          f"--nproc ({nproc})")
    device = config.device
    if device == "mps" or device.startswith("cuda:"):
        distributed_device(device, 0)
    uses_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if uses_cuda:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device: {device!r} requested but CUDA is not available "
                              "(use device: auto or cpu)")
        if nproc > count:
            raise ConfigError(f"--nproc {nproc} needs {nproc} GPUs (one per process) but "
                              f"this machine has {count}; use --nproc {count} or device: cpu")


def run_distributed(config: Any, run_dir: str | Path, *, nproc: int, resume: bool = False,
                    overwrite: bool = False) -> dict[str, Any]:
    """Train ``config`` in ``nproc`` local processes (``pathcond train --nproc``) and return
    the run's summary (rank 0's).

    Raises:
        ConfigError: refused before launching (:func:`check_launch`, run directory).
        DistributedRunError: a worker failed; the message is the workers' one-line error
            (once, or per rank when they differ) or says which rank failed how.
        KeyboardInterrupt: the launcher was interrupted (the workers are terminated).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from .trainer import check_run_dir

    check_launch(config, nproc)
    check_run_dir(Path(run_dir), resume=resume, overwrite=overwrite)
    with tempfile.TemporaryDirectory(prefix="pathcond-errors-") as errors:
        try:
            out = launch(train_worker, nproc, config.to_dict(), str(run_dir), resume,
                         overwrite, errors)
        except SignalException:
            raise KeyboardInterrupt from None
        except ChildFailedError as exc:
            raise DistributedRunError(_failure_message(exc, Path(errors))) from None
    summary = out.get(0)
    if not isinstance(summary, dict):
        raise DistributedRunError("distributed run finished without a summary from rank 0")
    return summary


def _failure_message(exc: Any, errors: Path) -> str:
    messages: dict[int, str] = {}
    for path in sorted(errors.glob("rank_*.txt")):
        with contextlib.suppress(OSError, ValueError):
            messages[int(path.stem.split("_")[1])] = path.read_text(encoding="utf-8").strip()
    unique = list(dict.fromkeys(messages.values()))
    if len(unique) == 1:
        return unique[0]
    if unique:
        return "; ".join(f"rank {r}: {m}" for r, m in sorted(messages.items()))
    failures = getattr(exc, "failures", {}) or {}
    parts = [f"rank {r} exited with status {f.exitcode}" for r, f in sorted(failures.items())]
    detail = ", ".join(parts) if parts else "a worker process failed"
    return f"distributed run failed: {detail} (see its messages above)"
