"""Per-epoch metrics: JSON lines and CSV files (rewritten atomically), TensorBoard optional."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._files import atomic_write_text
from ..errors import ConfigError

#: Columns of ``metrics.csv`` in order (``metrics.jsonl`` has the same keys). ``train_loss``
#: and ``train_acc`` of epoch ``e >= 1`` are the means over that epoch's mini-batches, each
#: measured in training mode before its optimizer step (the usual running figure); epoch 0
#: is one evaluation of the whole training set, in eval mode, after the setup (for example
#: the PathCond rescaling at initialisation). ``val_*`` and ``test_*`` are eval-mode
#: evaluations at the end of the epoch.
COLUMNS: tuple[str, ...] = (
    "epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
    "am_gm", "lr", "epoch_time", "eval_time", "rescale_time", "wall_time",
    "rescale_time_total", "rescalings",
)
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"

__all__ = ["COLUMNS", "METRICS_CSV", "METRICS_JSONL", "MetricsWriter", "read_metrics"]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """Writes the metrics history of a run; every call rewrites both files atomically, so a
    reader never sees a half-written line and a resumed run drops epochs past its checkpoint.
    """

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = False,
                 purge_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self._tb: Any = None
        if tensorboard:
            self._tb = open_tensorboard(self.run_dir / "tensorboard", purge_step)

    def write(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` and ``metrics.csv`` from the full history."""
        rows = [{k: _clean(row.get(k)) for k in COLUMNS} for row in history]
        lines = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)
        atomic_write_text(self.run_dir / METRICS_JSONL, lines)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if v is None else v for k, v in r.items()})
        atomic_write_text(self.run_dir / METRICS_CSV, buf.getvalue())

    def scalars(self, row: Mapping[str, Any]) -> None:
        """Send one epoch's numbers to TensorBoard (if enabled)."""
        if self._tb is None:
            return
        epoch = int(row["epoch"])
        for key in COLUMNS[2:]:
            value = row.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                self._tb.add_scalar(key, value, epoch)
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def tensorboard_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line ConfigError if the
    tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("output.tensorboard needs the tensorboard package: "
                          "pip install tensorboard (or set output.tensorboard: false)") from None
    return SummaryWriter


def open_tensorboard(directory: Path, purge_step: int | None = None) -> Any:
    """A TensorBoard ``SummaryWriter`` logging into ``directory``."""
    return tensorboard_writer_class()(log_dir=str(directory), purge_step=purge_step)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl``; a one-line ConfigError if unreadable."""
    path = Path(run_dir) / METRICS_JSONL
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory (no {METRICS_JSONL})")
    rows = []
    try:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict) or "epoch" not in row:
                    raise ValueError(f"line {i} is not a metrics record")
                rows.append(row)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc}") from None
    return rows
