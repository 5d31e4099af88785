"""Training harness: configs, the training loop with method plug-ins, checkpoints, metrics,
comparisons over methods and seeds, and plots.

Typical use::

    from pathcond.train import load_config, train
    result = train(load_config("configs/mnist_demo.yaml"))
    print(result.summary["best_val_acc"])
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .compare import CompareResult, compare
from .config import ExperimentConfig, load_config, method_label, parse_method, validate_config
from .methods import METHODS, Method, MethodContext, build_method
from .plot import plot_runs
from .trainer import RunResult, Trainer, load_data, read_run_config, resolve_device, train

__all__ = [
    "METHODS", "CompareResult", "ExperimentConfig", "Method", "MethodContext", "RunResult",
    "Trainer", "build_method", "compare", "load_checkpoint", "load_config", "load_data",
    "method_label", "parse_method", "plot_runs", "read_run_config", "resolve_device",
    "save_checkpoint", "train", "validate_config",
]
