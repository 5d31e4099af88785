"""Reproductions of the published experiments (SPEC section 6): a registry of experiments,
each with ``smoke`` / ``cpu`` / ``full`` configurations in ``experiments/<name>.yaml``,
resumable and deterministic for a seed, each drawing its figure.

Typical use::

    from pathcond.experiments import list_experiments, run_experiment
    result = run_experiment("fig4", scale="cpu", out_dir="runs/fig4")
    print(result.summary["correlation"], result.figures)

From the command line: ``pathcond run fig4 --scale cpu --out runs/fig4``.
Paper Table 1 (parameters, hidden units, paths) is :mod:`pathcond.experiments.table1`.
"""

from .registry import (
    EXPERIMENTS,
    SCALES,
    ExperimentInfo,
    ExperimentResult,
    RunContext,
    experiment_config,
    experiments_dir,
    list_experiments,
    publish,
    run_experiment,
)

__all__ = ["EXPERIMENTS", "SCALES", "ExperimentInfo", "ExperimentResult", "RunContext",
           "experiment_config", "experiments_dir", "list_experiments", "publish",
           "run_experiment"]
