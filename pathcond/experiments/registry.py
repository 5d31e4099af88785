"""The experiment registry: every experiment of the sources (SPEC section 6), each with its
``smoke`` / ``cpu`` / ``full`` configuration, run with :func:`run_experiment`.

Configurations live in ``experiments/<name>.yaml`` at the repository root (or in the
directory named by ``$PATHCOND_EXPERIMENTS_DIR``); each holds the experiment's title, its
source and claim, ``defaults`` and one block per scale, deep-merged over the defaults::

    experiment: fig5
    title: "Fig 5: MNIST autoencoder"
    source: "PathCond paper, section 5.3"
    claim: "PathCond reaches a smaller final training loss, more so for larger k"
    defaults: {ks: [1, 2, 4, 7], lrs: [0.001, 0.01, 0.1]}
    scales:
      smoke: {epochs: 1, limit: 256}
      cpu: {epochs: 30, limit: 10000}
      full: {epochs: 500}

A run writes into its output directory ``units.json`` (finished units of work, written
atomically after each one: a rerun skips them), ``summary.json`` (the numbers the results
page quotes), the figure(s) as PNG, and ``runs/`` (the trainer's run directories with their
checkpoints, so an interrupted training run continues from its last finished epoch).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._files import atomic_copy, remove_entries
from ..errors import ConfigError, PathcondError
from ._checks import check_only, check_out_dir, check_overrides
from ._io import (
    UnitStore,
    atomic_write_json,
    compact,
    jsonable,
    pack_tables,
    read_units,
)

__all__ = ["EXPERIMENTS", "SCALES", "ExperimentInfo", "ExperimentResult", "RunContext",
           "check_overrides", "experiment_config", "experiments_dir", "list_experiments", "publish",
           "run_experiment"]

SCALES = ("smoke", "cpu", "full")
EXPERIMENTS_ENV = "PATHCOND_EXPERIMENTS_DIR"

#: name -> "module:run function" (modules of this package, imported on first use). Each
#: module also has ``draw_<function suffix>`` for the figure (see :class:`ExperimentInfo`).
EXPERIMENTS: dict[str, str] = {
    "fig1": "fig1_toy:run_fig1",
    "fig2": "fig2_mlp:run_fig2",
    "fig2_bn": "fig2_mlp:run_fig2_bn",
    "fig3": "fig3_cifar_nv:run_fig3",
    "fig4": "fig4_regimes:run_fig4",
    "fig5": "fig5_autoencoder:run_fig5",
    "table1": "table1:run_table1",
    "app_k": "fig2_mlp:run_app_k",
    "app_l": "fig3_cifar_nv:run_app_l",
    "app_m": "fig5_autoencoder:run_app_m",
    "thesis_mnist": "thesis:run_thesis_mnist",
    "thesis_cifar": "thesis:run_thesis_cifar",
    "thesis_fixed_value": "thesis:run_thesis_fixed_value",
    "thesis_surfaces": "thesis:run_thesis_surfaces",
    "gsgd_mnist": "thesis:run_gsgd_mnist",
}


def experiments_dir() -> Path:
    """Where the configurations are: ``$PATHCOND_EXPERIMENTS_DIR`` or ``<repo>/experiments``."""
    env = os.environ.get(EXPERIMENTS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "experiments"


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in base.items()}
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class ExperimentInfo:
    """One experiment's configuration file, read."""

    name: str
    title: str
    source: str
    claim: str
    defaults: dict[str, Any]
    scales: dict[str, dict[str, Any]]
    path: Path

    def params(self, scale: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The parameters of ``scale``: defaults, then the scale's block, then ``overrides``."""
        if scale not in SCALES:
            raise ConfigError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
        if scale not in self.scales:
            raise ConfigError(f"{self.path}: no '{scale}' scale for experiment {self.name!r}")
        merged = _deep_merge(self.defaults, self.scales[scale])
        return _deep_merge(merged, overrides or {})


def experiment_config(name: str, config_dir: str | Path | None = None) -> ExperimentInfo:
    """Read ``experiments/<name>.yaml``."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; available: {', '.join(EXPERIMENTS)}")
    path = Path(config_dir) if config_dir is not None else experiments_dir()
    path = path / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"experiment config {str(path)!r} not found (set "
                          f"{EXPERIMENTS_ENV} to the directory of the experiment configs)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("scales"), dict):
        raise ConfigError(f"{path}: needs a mapping with a 'scales' section")
    if data.get("experiment", name) != name:
        raise ConfigError(f"{path}: names experiment {data.get('experiment')!r}, not {name!r}")
    unknown = sorted(set(data["scales"]) - set(SCALES))
    if unknown:
        raise ConfigError(f"{path}: unknown scale {unknown[0]!r}; scales: {', '.join(SCALES)}")
    return ExperimentInfo(
        name=name, title=str(data.get("title", name)), source=str(data.get("source", "")),
        claim=str(data.get("claim", "")), defaults=dict(data.get("defaults") or {}),
        scales={k: dict(v or {}) for k, v in data["scales"].items()}, path=path)


def list_experiments() -> list[str]:
    """Names accepted by :func:`run_experiment`, in the order of the sources."""
    return list(EXPERIMENTS)


@dataclass
class RunContext:
    """What an experiment's runner sees: its parameters, output directory and unit store."""

    info: ExperimentInfo
    scale: str
    params: dict[str, Any]
    out_dir: Path
    store: UnitStore
    resume: bool = True
    progress: bool = True
    train: bool = True
    only: tuple[frozenset[str], ...] = ()
    messages: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: keys of the training units :meth:`may_train` was asked about
    considered: set[str] = field(default_factory=set)
    #: training units of the run's grid, when the runner says (progress lines count them)
    units_total: int | None = None
    units_seen: int = 0
    unfinished: str = ""  # set before drawing when units are missing: said on the figures

    @property
    def name(self) -> str:
        """The experiment's name (``fig5``, ...)."""
        return self.info.name

    def log(self, message: str) -> None:
        """One progress line on stderr (when ``progress`` is on)."""
        if self.progress:
            print(f"[{self.name}/{self.scale}] {message}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        """A message kept in the summary (e.g. a method that is not available) and logged."""
        if message not in self.messages:
            self.messages.append(message)
        self.log(message)

    def may_train(self, key: str) -> bool:
        """Whether the unfinished training unit ``key`` may be trained now: not with
        ``train=False``, nor when ``only`` excludes it (every group of ``only`` must name
        one of the key's ``/``-separated parts). A unit that may not is recorded as skipped
        (the summary is then partial)."""
        parts = set(key.split("/"))
        self.considered.add(key)
        if self.train and all(parts & group for group in self.only):
            return True
        self.skipped.append(key)
        return False

    def unit_progress(self) -> str:
        """Count one more training unit of the grid (finished or not): ``unit 12/90``, for
        the progress line of the units that train."""
        self.units_seen += 1
        return f"unit {self.units_seen}" + (f"/{self.units_total}" if self.units_total else "")

    def figure_path(self, suffix: str = "") -> Path:
        """``<out_dir>/<name>[_suffix].png``."""
        return self.out_dir / f"{self.name}{'_' + suffix if suffix else ''}.png"


def published_path(results_dir: str | Path, name: str, label: str) -> Path:
    """``<results_dir>/<name>_<label>.json``: an experiment's published summary and units
    (``label``: the scale, or ``scale-tag`` for a variant)."""
    return Path(results_dir) / f"{name}_{label}.json"


def partial_path(results_dir: str | Path, name: str, label: str) -> Path:
    """``<results_dir>/partial/<name>_<label>.units.json``: the finished units of an
    unfinished run, kept in the repository between machines."""
    return Path(results_dir) / "partial" / f"{name}_{label}.units.json"


#: Parameters every experiment takes that change where and how fast it runs, not what it
#: computes: overriding them makes no variant.
RUNTIME_KEYS = ("threads", "device")


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` returns."""

    name: str
    scale: str
    out_dir: Path
    summary: dict[str, Any]
    figures: list[Path]
    seconds: float
    tag: str | None = None  # a named variant (parameters overridden), e.g. "fashion"
    #: every finished unit the run used (also those a read-only --no-train run did not
    #: write to its directory, and none of the directory's other units): what
    #: :func:`publish` copies
    units: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """``scale`` or ``scale-tag``: the suffix of the published files."""
        return self.scale if self.tag is None else f"{self.scale}-{self.tag}"

    @property
    def complete(self) -> bool:
        """Whether every unit of the experiment was computed (no method missing)."""
        return bool(self.summary.get("complete", True))


Runner = Callable[[RunContext], dict[str, Any]]
Drawer = Callable[[RunContext, dict[str, Any]], list[Path]]


def _resolve(name: str) -> tuple[Runner, Drawer]:
    module_name, fn = EXPERIMENTS[name].split(":")
    module = importlib.import_module(f"{__package__}.{module_name}")
    runner: Runner = getattr(module, fn)
    drawer: Drawer = getattr(module, "draw_" + fn.removeprefix("run_"))
    return runner, drawer


def run_experiment(name: str, *, scale: str = "cpu", out_dir: str | Path | None = None,
                   resume: bool = True, progress: bool = True,
                   overrides: Mapping[str, Any] | None = None,
                   config_dir: str | Path | None = None,
                   tag: str | None = None,
                   results_dir: str | Path = "results",
                   train: bool = True,
                   only: Sequence[Sequence[str]] = ()) -> ExperimentResult:
    """Run experiment ``name`` at ``scale`` and draw its figure.

    Args:
        name: one of :func:`list_experiments`.
        scale: ``smoke`` (seconds; the tests), ``cpu`` (minutes on 2 cores) or ``full``
            (the published protocol; a GPU for the training experiments).
        out_dir: output directory (default ``runs/experiments/<name>-<scale>``).
        resume: keep finished units and continue interrupted training runs from their
            checkpoints; ``False`` starts again from scratch.
        progress: log one line per unit (and per epoch) on stderr.
        overrides: parameters merged over the scale's (for tests and one-off variants, such
            as a full protocol on substitute data); each top-level key must be one of the
            scale's parameters.
        config_dir: directory of the ``<name>.yaml`` files (default :func:`experiments_dir`).
        tag: names the variant: default output directory ``<name>-<scale>-<tag>``, published
            as ``results/<name>_<scale>-<tag>.json`` (letters, digits, ``_`` and ``-``).
        results_dir: where published results live; with ``resume``, the units of
            ``<results_dir>/<name>_<scale>.json`` and of
            ``<results_dir>/partial/<name>_<scale>.units.json`` (finished units of an
            unfinished run, kept across machines) are reused where their specs match, so a
            fresh clone redraws a published figure, or continues a long run, without
            recomputing.
        train: ``False`` trains nothing: training units not finished yet are skipped and the
            figure and summary are drawn from the finished ones (``summary["complete"]`` is
            false, ``summary["units_skipped"]`` counts the rest): a progress report of a
            long run, safe beside the process that trains into the same directory (the
            store is not written). Needs ``resume``.
        only: train only the units whose key has, for every group, one of its parts (e.g.
            ``[["seed=0"], ["k=7", "k=4"]]``: seed 0 at k = 7 or 4); the others are skipped
            as with ``train=False``. Runs a chosen part of a long experiment first, in the
            same output directory and results.

    Returns:
        The summary (numbers for the results page), figure paths and timing. Units that
        could not run (e.g. a method not available in this version) are listed in
        ``summary["messages"]`` and ``summary["complete"]`` is false.
    """
    info = experiment_config(name, config_dir)
    if not train and not resume:
        raise ConfigError("drawing without training (--no-train) needs the finished units: "
                          "drop --restart")
    if tag is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", tag):
        raise ConfigError(f"tag {tag!r} may hold only letters, digits, '_' and '-'")
    known = set(info.params(scale))
    unknown = sorted(set(overrides or {}) - known - set(RUNTIME_KEYS))
    if unknown:
        raise ConfigError(f"{name} ({scale}) has no parameter {unknown[0]!r}; its parameters: "
                          f"{', '.join(sorted(known))}")
    check_overrides(info.params(scale), overrides or {})
    params = info.params(scale, overrides)
    groups = tuple(frozenset(str(p).strip() for p in group if str(p).strip())
                   for group in only)
    if any(not g for g in groups):
        raise ConfigError("--only needs unit key parts such as seed=0 or k=7,k=4")
    out = Path(out_dir) if out_dir is not None else Path("runs") / "experiments" / \
        f"{name}-{scale}{'' if tag is None else '-' + tag}"
    check_out_dir(out, name, scale, tag)
    created = not out.exists()
    if not resume and out.is_dir():
        remove_entries(out, ("units.json", "summary.json", "runs"))
    out.mkdir(parents=True, exist_ok=True)
    store = UnitStore(out, {"experiment": name, "scale": scale}, resume=resume,
                      read_only=not train)
    try:
        return _run_in(info, scale, out, params, overrides or {}, store, tag=tag,
                       resume=resume, progress=progress, train=train, groups=groups,
                       results_dir=results_dir)
    except PathcondError:
        # a bad parameter, data set or method found before this run finished a unit: a
        # directory it made is removed (one that existed keeps its units)
        if created and not store.computed:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run_in(info: ExperimentInfo, scale: str, out: Path, params: dict[str, Any],
            overrides: Mapping[str, Any], store: UnitStore, *, tag: str | None, resume: bool,
            progress: bool, train: bool, groups: tuple[frozenset[str], ...],
            results_dir: str | Path) -> ExperimentResult:
    """:func:`run_experiment` once its arguments are checked and ``out`` made."""
    name = info.name
    runner, drawer = _resolve(name)
    if params.get("threads"):
        import torch

        torch.set_num_threads(int(params["threads"]))
    ctx = RunContext(info=info, scale=scale, params=params, out_dir=out, store=store,
                     resume=resume, progress=progress, train=train, only=groups)
    label = scale if tag is None else f"{scale}-{tag}"
    if resume:
        # Units kept in the repository (published results, then partial runs), this
        # experiment's and those of another with the same units (e.g. App M and Fig 5,
        # whose finished units are also read from its default output directory).
        sources = [published_path(results_dir, name, label),
                   partial_path(results_dir, name, label)]
        for other in params.get("share_units_with") or []:
            sources += [out.parent / f"{other}-{label}" / "units.json",
                        published_path(results_dir, other, label),
                        partial_path(results_dir, other, label)]
        for kept in sources:
            found = store.adopt(kept)
            if found:
                store.flush()  # the output directory holds every unit it uses
                ctx.log(f"reusing {found} units kept in {kept}")
    start = time.perf_counter()
    summary = dict(runner(ctx))
    check_only(ctx, groups)
    if store.replaced:
        ctx.note(f"{len(store.replaced)} units computed again because their specification "
                 f"changed (their stored results were replaced), first {store.replaced[0]}")
    summary.setdefault("complete", not ctx.messages)
    if ctx.skipped:
        summary["complete"] = False
        summary["units_skipped"] = len(ctx.skipped)
        why = "--no-train" if not train else "--only " + " ".join(
            ",".join(sorted(g)) for g in groups)
        ctx.note(f"drawn with {len(ctx.skipped)} training units not finished ({why}), "
                 f"first {ctx.skipped[0]}")
    if not summary["complete"]:
        ctx.unfinished = "UNFINISHED: drawn from the finished units" + (
            f" ({len(ctx.skipped)} training units to go)" if ctx.skipped else "")
    summary["messages"] = list(ctx.messages) + list(summary.get("messages", []))
    summary = {"experiment": name, "title": info.title, "scale": scale,
               "source": info.source, "claim": info.claim, "params": jsonable(params),
               **({} if tag is None and not set(overrides or {}) - set(RUNTIME_KEYS) else
                  {"variant": {"tag": tag, "overrides": jsonable(dict(overrides or {}))}}),
               **summary}
    figures = drawer(ctx, summary)
    summary["figures"] = [p.name for p in figures]
    seconds = time.perf_counter() - start
    atomic_write_json(out / "summary.json", compact(summary))
    ctx.log(f"done in {seconds:.1f} s; summary {out / 'summary.json'}"
            + "".join(f"; figure {p}" for p in figures))
    return ExperimentResult(name, scale, out, summary, figures, seconds, tag,
                            units=store.used_units())


def publish(result: ExperimentResult, *, results_dir: str | Path = "results",
            figures_dir: str | Path = "docs/figures") -> list[Path]:
    """Copy a run's summary and units (``results/<name>_<scale>.json``, or
    ``<name>_<scale>-<tag>.json`` for a tagged variant) and figures
    (``docs/figures/<figure>_<scale>[-<tag>].png``) into the repository."""
    results, figures = Path(results_dir), Path(figures_dir)
    written = []
    units = dict(result.units) or read_units(result.out_dir / "units.json") or {}
    for other in result.summary.get("params", {}).get("share_units_with") or []:
        # kept once, in the other experiment's file (read from there by a rerun)
        theirs = read_units(published_path(results, other, result.label)) or {}
        units = {k: v for k, v in units.items() if theirs.get(k) != v}
    target = published_path(results, result.name, result.label)
    atomic_write_json(target, {"summary": compact(result.summary),
                               "units": pack_tables(units)}, indent=None)
    written.append(target)
    for fig in result.figures:
        dest = figures / f"{fig.stem}_{result.label}{fig.suffix}"
        atomic_copy(fig, dest)
        written.append(dest)
    return written
