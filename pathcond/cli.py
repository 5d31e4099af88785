"""The ``pathcond`` command line.

Commands: ``train``, ``compare``, ``plot``, ``rescale``, ``diagnose``, ``stats``, ``models``,
``datasets``, ``demo``, ``run`` and ``experiments`` (the reproductions); ``pathcond COMMAND
--help`` for each. Every error a user can cause ends in one line on stderr and exit status 2,
before any output file is written.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from .errors import ConfigError, PathcondError
from .experiments.cli import register as register_experiments

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)



def _print_version(value: bool) -> None:
    if value:
        import torch

        from . import __version__

        typer.echo(f"pathcond {__version__} (torch {torch.__version__}, Python "
                   f"{sys.version.split()[0]})")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the versions of pathcond, torch and Python and exit.")] = False,
) -> None:
    """Path-lifting quantities and the PathCond rescaling of ReLU networks: train, compare,
    plot, rescale and diagnose."""


#: The demo's irregular-width MLP (MNIST, 784 inputs, 10 classes).
DEMO_WIDTHS = (784, 512, 32, 256, 16, 10)

F = TypeVar("F", bound=Callable[..., Any])


def _rank_prefix() -> str:
    """``[rank R] `` in a process of rank R > 0 started by torchrun, else empty."""
    try:
        world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    except ValueError:
        return ""
    return f"[rank {rank}] " if world > 1 and rank > 0 else ""


def fail(message: str) -> None:
    """Print one line and exit with status 2."""
    typer.echo(f"error: {_rank_prefix()}{message}", err=True)
    raise typer.Exit(2)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def handle_errors(fn: F) -> F:
    """Turn pathcond's errors (and file-system errors) into one line and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PathcondError as exc:
            fail(_one_line(exc))
        except BrokenPipeError:  # e.g. `pathcond diagnose resnet50 | head`
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(0) from None
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            fail(f"{where}{exc.strerror or _one_line(exc)}")
        except KeyboardInterrupt:
            typer.echo("interrupted (checkpoints of finished epochs are kept; continue with "
                       "--resume)", err=True)
            raise typer.Exit(130) from None
        return None

    return wrapper  # type: ignore[return-value]


def _parse_kwargs(items: list[str] | None, what: str = "--arg") -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for item in items or []:
        if "=" not in item:
            fail(f"option '{item}' is not KEY=VALUE (e.g. {what} depth=5)")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            fail(f"{what} {item!r}: value is not valid YAML")
    return out


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``--input-shape 3,32,32`` as a tuple of positive ints (``None`` when not given)."""
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        fail(f"--input-shape must be positive ints separated by commas (one sample, no "
             f"batch dimension), e.g. 3,32,32; got {text!r}")
    return shape


def _build_model(name: str, args: list[str] | None, input_shape: str | None = None, *,
                 seed: int = 0) -> tuple[Any, tuple[int, ...]]:
    """The model ``name`` (zoo or ``package.module:callable``, imported before seeding)
    built with ``--arg`` options after ``torch.manual_seed(seed)``, and its input shape."""
    import torch

    from .models import get_model, load_model_builder, model_input_shape

    kwargs = _parse_kwargs(args)
    given = _parse_shape(input_shape)
    # the zoo's shape is checked before anything is built
    shape = given if given is not None else model_input_shape(name, **kwargs)
    load_model_builder(name)  # a module of yours may draw or seed when imported
    torch.manual_seed(seed)
    return get_model(name, **kwargs), shape


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200, soft_wrap=False)


def _err(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


# ----------------------------------------------------------------------- options

ConfigArg = Annotated[Path | None, typer.Argument(
    help="experiment YAML file (see configs/); flags below override it", show_default=False)]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="zoo model (pathcond models) or a model of yours, 'package.module:callable'")]
ArgOpt = Annotated[list[str] | None, typer.Option(
    "--arg", help="model option KEY=VALUE, e.g. --arg 'widths=[784,64,10]' (repeatable)")]
ModelArg = Annotated[str, typer.Argument(
    help="zoo model name (see `pathcond models`) or a model of yours, "
         "'package.module:callable'", show_default=False)]
ShapeOpt = Annotated[str | None, typer.Option(
    "--input-shape", help="one sample's shape, e.g. 3,32,32 (needed for a model of yours, "
                          "'package.module:callable'; for a zoo model it replaces the zoo's)")]
DatasetOpt = Annotated[str | None, typer.Option(
    "--dataset", help="mnist, fashion_mnist, cifar10, moons, digits, synthetic")]
DataRootOpt = Annotated[str | None, typer.Option("--data-root", help="where the data is")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="keep N training samples")]
OptimOpt = Annotated[str | None, typer.Option("--optimizer", help="sgd or adam")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="learning rate")]
MomentumOpt = Annotated[float | None, typer.Option("--momentum", help="SGD momentum")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="minibatch size")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="number of epochs")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps")]
TargetOpt = Annotated[float | None, typer.Option(
    "--target-accuracy", help="report the first epoch reaching this accuracy (0-1)")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="any config key, dotted: --set training.eval_batch_size=512 (repeatable)")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="output directory")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="replace an existing run")]
ProgressOpt = Annotated[bool | None, typer.Option(
    "--progress/--no-progress", help="progress bars and per-epoch lines on stderr",
    show_default=False)]
TensorboardOpt = Annotated[bool | None, typer.Option(
    "--tensorboard/--no-tensorboard", help="also log to TensorBoard (needs tensorboard)",
    show_default=False)]


def _overrides(*, model: str | None = None, arg: list[str] | None = None,
               dataset: str | None = None, data_root: str | None = None,
               limit: int | None = None, optimizer: str | None = None, lr: float | None = None,
               momentum: float | None = None, batch_size: int | None = None,
               epochs: int | None = None, seed: int | None = None, device: str | None = None,
               target_accuracy: float | None = None, method: str | None = None,
               out: Path | None = None, progress: bool | None = None,
               tensorboard: bool | None = None, sets: list[str] | None = None
               ) -> list[tuple[str, Any]]:
    """(dotted key, value) pairs from the command-line flags that were given."""
    pairs: list[tuple[str, Any]] = []
    flat = {"model.name": model, "data.name": dataset, "data.root": data_root,
            "data.limit": limit, "optimizer.name": optimizer, "optimizer.lr": lr,
            "optimizer.momentum": momentum, "training.batch_size": batch_size,
            "training.epochs": epochs, "seed": seed, "device": device,
            "training.target_accuracy": target_accuracy,
            "output.dir": None if out is None else str(out), "output.progress": progress,
            "output.tensorboard": tensorboard}
    if model is not None:  # another model: its arguments and input shape start afresh
        pairs += [("model.args", {}), ("model.input_shape", None)]
    pairs += [(k, v) for k, v in flat.items() if v is not None]
    pairs += [(f"model.args.{k}", v) for k, v in _parse_kwargs(arg).items()]
    if method is not None:
        pairs.append(("method", _method_value(method)))
    for key, value in _parse_kwargs(sets, "--set").items():
        pairs.append((key, value))
    return pairs


def _method_value(text: str) -> Any:
    """``pathcond`` or a YAML mapping such as ``{name: enorm, c: 0.5}``."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        fail(f"--method {text!r} is neither a method name nor a YAML mapping")
    return value


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str) and parts[:i + 1] == ["method"]:
            child = {"name": child}
        if not isinstance(child, dict):
            if child is not None:
                raise ConfigError(f"--set {key}: '{'.'.join(parts[:i + 1])}' is not a section")
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = value


def _make_config(config: Path | None, pairs: list[tuple[str, Any]], *,
                 base: dict[str, Any] | None = None) -> Any:
    """Read ``config`` (or start from ``base`` / defaults), apply the flags, validate."""
    from .train.config import read_yaml, validate_config

    data: dict[str, Any] = dict(base or {})
    source = "command line"
    if config is not None:
        data = read_yaml(config)
        source = str(config)
    for key, value in pairs:
        _set(data, key, value)
    return validate_config(data, source)


# ----------------------------------------------------------------------- train


@app.command()
@handle_errors
def train(
    config: ConfigArg = None,
    model: ModelOpt = None,
    arg: ArgOpt = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    limit: LimitOpt = None,
    method: Annotated[str | None, typer.Option(
        "--method", help="baseline, pathcond, enorm, pathsgd, gsgd, weightfix, or a YAML "
                         "mapping like '{name: pathcond, every_epochs: 1}'")] = None,
    optimizer: OptimOpt = None,
    lr: LrOpt = None,
    momentum: MomentumOpt = None,
    batch_size: BatchOpt = None,
    epochs: EpochsOpt = None,
    seed: Annotated[int | None, typer.Option("--seed", help="seed (init, data order)")] = None,
    device: DeviceOpt = None,
    target_accuracy: TargetOpt = None,
    sets: SetOpt = None,
    out: OutOpt = None,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="continue the run in this directory from its newest checkpoint "
                         "(only --epochs, --device and output flags may change)")] = None,
    overwrite: OverwriteOpt = False,
    progress: ProgressOpt = None,
    tensorboard: TensorboardOpt = None,
    nproc: Annotated[int | None, typer.Option(
        "--nproc", help="train data-parallel in N local processes (DDP launched like "
                        "torchrun --standalone; --batch-size is the global batch, split over "
                        "the processes); see docs/distributed.md")] = None,
) -> None:
    """Train one model with one method; write metrics, checkpoints and plots to a run
    directory (default runs/NAME). Under torchrun every process runs this command and they
    train together (rank 0 writes and prints)."""
    from .train import Trainer
    from .train.distributed import run_distributed, shutdown, under_torchrun
    from .train.trainer import read_run_config

    if nproc is not None and nproc < 1:
        fail(f"--nproc must be at least 1, got {nproc}")
    if nproc is not None and nproc > 1 and under_torchrun():
        fail("--nproc: this process was started by torchrun already (WORLD_SIZE is set); "
             "drop --nproc")
    pairs = _overrides(model=model, arg=arg, dataset=dataset, data_root=data_root, limit=limit,
                       optimizer=optimizer, lr=lr, momentum=momentum, batch_size=batch_size,
                       epochs=epochs, seed=seed, device=device,
                       target_accuracy=target_accuracy, method=method, out=out,
                       progress=progress, tensorboard=tensorboard, sets=sets)
    if resume is not None:
        if overwrite:
            fail("--resume and --overwrite exclude each other")
        if config is not None:
            fail("--resume uses the configuration saved in the run directory; drop CONFIG")
        changed = [k for k, _ in pairs
                   if k not in ("training.epochs", "device") and not k.startswith("output.")]
        if changed:
            fail(f"--resume can change only --epochs, --device and output flags, not {changed[0]}")
        saved = read_run_config(resume).to_dict()
        cfg = _make_config(None, [*pairs, ("output.dir", str(resume))], base=saved)
        run_dir = resume
    else:
        cfg = _make_config(config, pairs)
        run_dir = cfg.run_dir()
    if nproc is not None and nproc > 1:
        summary = run_distributed(cfg, run_dir, nproc=nproc, resume=resume is not None,
                                  overwrite=overwrite)
        _print_run_summary(summary, Path(run_dir))
        return
    try:
        trainer = Trainer(cfg, run_dir=run_dir, log=_err if cfg.output.progress else None)
        result = trainer.run(resume=resume is not None, overwrite=overwrite)
        if trainer.is_main:
            _print_run_summary(result.summary, result.run_dir)
    finally:
        shutdown()


def _print_run_summary(summary: dict[str, Any], run_dir: Path) -> None:
    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    final = summary["final"]
    typer.echo(f"{summary['label']} seed {summary['seed']}: {summary['status']} after "
               f"{summary['epochs']} epochs in {summary['wall_time']:.1f} s "
               f"(rescaling {summary['rescale_time_total']:.2f} s)")
    line = f"  final train loss {final['train_loss']}"
    if final.get("train_acc") is not None:
        line = (f"  final train {pct(final['train_acc'])}, val {pct(final['val_acc'])}, "
                f"test {pct(final['test_acc'])}; best val {pct(summary['best_val_acc'])}")
    typer.echo(line)
    if summary.get("target_accuracy") is not None:
        reached = summary["epochs_to_target"]
        typer.echo(f"  {summary['target_split']} accuracy {summary['target_accuracy']:.2%}: "
                   + (f"reached at epoch {reached}" if reached else "not reached"))
    typer.echo(f"  run directory: {run_dir}")


# ----------------------------------------------------------------------- compare


@app.command()
@handle_errors
def compare(
    config: ConfigArg = None,
    methods: Annotated[list[str] | None, typer.Option(
        "--method", help="a method to compare (repeatable; name or YAML mapping); default: "
                         "the config's compare.methods")] = None,
    seeds: Annotated[str | None, typer.Option(
        "--seeds", help="comma-separated seeds, e.g. 0,1,2 (default compare.seeds)")] = None,
    model: ModelOpt = None,
    arg: ArgOpt = None,
    dataset: DatasetOpt = None,
    data_root: DataRootOpt = None,
    limit: LimitOpt = None,
    optimizer: OptimOpt = None,
    lr: LrOpt = None,
    momentum: MomentumOpt = None,
    batch_size: BatchOpt = None,
    epochs: EpochsOpt = None,
    device: DeviceOpt = None,
    target_accuracy: TargetOpt = None,
    sets: SetOpt = None,
    out: OutOpt = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="keep finished runs, continue interrupted ones")] = False,
    overwrite: OverwriteOpt = False,
    progress: ProgressOpt = None,
) -> None:
    """Train several methods on one configuration, seeds in a loop; print one summary table
    (mean ± standard deviation over seeds) and plot every method with a band over seeds."""
    from .train.distributed import under_torchrun

    if under_torchrun():
        fail("compare runs in one process; for distributed training use `pathcond train "
             "--nproc N` (or torchrun ... train) per method and seed")
    pairs = _overrides(model=model, arg=arg, dataset=dataset, data_root=data_root, limit=limit,
                       optimizer=optimizer, lr=lr, momentum=momentum, batch_size=batch_size,
                       epochs=epochs, device=device, target_accuracy=target_accuracy,
                       out=out, progress=progress, sets=sets)
    if methods:
        pairs.append(("compare.methods", [_method_value(m) for m in methods]))
    if seeds is not None:
        pairs.append(("compare.seeds", _parse_seeds(seeds)))
    if resume and overwrite:
        fail("--resume and --overwrite exclude each other")
    cfg = _make_config(config, pairs)
    _run_compare(cfg, resume=resume, overwrite=overwrite)


def _parse_seeds(text: str) -> list[int]:
    try:
        values = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        fail(f"--seeds {text!r} is not a comma-separated list of integers")
    if not values:
        fail("--seeds is empty")
    return values


def _run_compare(cfg: Any, *, resume: bool, overwrite: bool) -> Any:
    from .train import compare as run_compare

    result = run_compare(cfg, resume=resume, overwrite=overwrite,
                         log=_err if cfg.output.progress else None)
    _print_table(result.rows, f"{cfg.name}: {cfg.data.name}, {cfg.model.name}, "
                              f"{cfg.training.epochs} epochs")
    typer.echo(f"summary: {result.out_dir / 'summary.csv'}")
    if result.plot is not None:
        typer.echo(f"plot: {result.plot}")
    return result


def _print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table
    from rich.text import Text

    from .train.compare import summary_table_lines

    headers, body = summary_table_lines(rows)
    table = Table(title=Text(title), show_lines=False)
    for i, h in enumerate(headers):
        table.add_column(Text(h), justify="left" if i == 0 else "right", no_wrap=i == 0)
    for r in body:
        table.add_row(*(Text(c) for c in r))
    _console().print(table)


# ----------------------------------------------------------------------- plot


@app.command()
@handle_errors
def plot(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="run directories, or comparison directories holding runs", show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="a .png/.svg file or a directory (default: RUN_DIR/plots when "
                            "one directory is given)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="png or svg")] = "png",
    title: Annotated[str | None, typer.Option("--title", help="figure title")] = None,
) -> None:
    """Loss and accuracy against epochs and wall time: one line per method (mean over
    seeds) with a band from the lowest to the highest seed."""
    from .train.plot import FORMATS, plot_runs

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if out is None:
        if len(run_dirs) != 1:
            fail("give --out when plotting several directories")
        out = run_dirs[0] / "plots"
    path = plot_runs(run_dirs, out, fmt=fmt, title=title)
    typer.echo(f"wrote {path}")


# ----------------------------------------------------------------------- rescale


@app.command()
@handle_errors
def rescale(
    checkpoint: Annotated[Path, typer.Argument(
        help="a checkpoint file, or a run directory (its newest checkpoint)",
        show_default=False)],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="where to write (default: NAME.pathcond.pt beside the input)")
    ] = None,
    solver: Annotated[str, typer.Option(help="newton, block or coordinate")] = "newton",
    tol: Annotated[float, typer.Option(help="relative tolerance of the solver")] = 1e-10,
    in_place: Annotated[bool, typer.Option(
        "--in-place", help="replace the run's newest epoch checkpoint (the original is kept "
                           "as NAME.before-pathcond.pt), so that `pathcond train --resume "
                           "RUN_DIR` continues from the rescaled network")] = False,
) -> None:
    """Apply PathCond to the model of a checkpoint (optimizer state transported) and write a
    new checkpoint atomically; the network computes the same function.

    The new file is not an epoch checkpoint, so resuming ignores it: use --in-place to
    continue training from it.
    """
    from .diagnostics.checkpoints import rescale_checkpoint

    if solver not in ("newton", "block", "coordinate"):
        fail(f"--solver must be newton, block or coordinate, got {solver!r}")
    if not tol > 0:
        fail(f"--tol must be positive, got {tol}")
    target, report = rescale_checkpoint(checkpoint, out, solver=solver, tol=tol,
                                        in_place=in_place)
    typer.echo(str(report))
    typer.echo(f"wrote {target}" + (" (the original: "
                                     f"{target.stem}.before-pathcond.pt)" if in_place else ""))


# ----------------------------------------------------------------------- diagnose


@app.command()
@handle_errors
def diagnose(
    model: Annotated[str, typer.Argument(
        help="zoo model name, a model of yours ('package.module:callable'), a checkpoint "
             "file or a run directory", show_default=False)],
    arg: ArgOpt = None,
    input_shape: ShapeOpt = None,
    seed: Annotated[int, typer.Option(help="seed of the initialisation (models built here)")] = 0,
    top: Annotated[int, typer.Option(help="largest log-scales listed per layer")] = 3,
    solver: Annotated[str, typer.Option(help="newton, block or coordinate")] = "newton",
    init: Annotated[str, typer.Option(
        help="default (the zoo's) or kaiming (normal, E[W²] = 2/fan_in, zero biases: the "
             "setting of Appendix J)")] = "default",
    plot: Annotated[Path | None, typer.Option(
        help="also draw the per-layer distribution of log path magnitudes before and after "
             "PathCond to this file (.png, .svg or .pdf)")] = None,
    lr_factors: Annotated[bool, typer.Option(
        "--lr-factors", help="also list PathCond as learning-rate factors exp(-2 B u) per "
                             "parameter (geometric mean, min, max): SGD on the rescaled "
                             "network is SGD on this one at those rates")] = False,
) -> None:
    """AM/GM of the path magnitudes before and after PathCond, the largest log-scales per
    layer, and for layered MLPs the Appendix J prediction of the mean path magnitude per
    layer compared with the measured one."""
    from .diagnostics.diagnose import diagnose as run_diagnose
    from .diagnostics.diagnose import load_model_source

    if top < 0:
        fail(f"--top must be >= 0, got {top}")
    if solver not in ("newton", "block", "coordinate"):
        fail(f"--solver must be newton, block or coordinate, got {solver!r}")
    if plot is not None and plot.suffix.lower() not in (".png", ".svg", ".pdf"):
        fail(f"--plot must end in .png, .svg or .pdf, got '{plot}'")
    net, shape, title = load_model_source(model, _parse_kwargs(arg), seed=seed, init=init,
                                          input_shape=_parse_shape(input_shape))
    typer.echo(title)
    diagnosis = run_diagnose(net, shape, top=top, solver=solver, lr_factors=lr_factors)
    for line in diagnosis.lines():
        typer.echo(line)
    if plot is not None:
        from .diagnostics.magnitude_plot import (
            magnitude_distributions,
            plot_magnitude_distributions,
        )
        from .graph import rescaling_graph

        rows = magnitude_distributions(net, rescaling_graph(net, shape),
                                       diagnosis.report.log_scales)
        typer.echo(f"plot: {plot_magnitude_distributions(rows, plot, title=title)}")


# ----------------------------------------------------------------------- small commands


@app.command()
@handle_errors
def stats(
    model: ModelArg,
    arg: ArgOpt = None,
    input_shape: ShapeOpt = None,
    seed: Annotated[int, typer.Option(help="seed of the initialisation")] = 0,
) -> None:
    """Parameters, hidden units, rescaling groups, number of paths and path magnitudes."""
    from .diagnostics import model_stats

    net, shape = _build_model(model, arg, input_shape, seed=seed)
    lines = model_stats(net, shape).lines()  # an unsupported model fails before any output
    typer.echo(f"{model} (input {tuple(shape)})")
    for line in lines:
        typer.echo(line)


@app.command()
@handle_errors
def check(model: ModelArg, arg: ArgOpt = None, input_shape: ShapeOpt = None) -> None:
    """Whether pathcond can follow a model: every reason it cannot (exit status 1), or its
    layers, hidden units and rescaling groups (docs/tracing.md)."""
    from .graph import check_support

    net, shape = _build_model(model, arg, input_shape)
    report = check_support(net, shape)
    typer.echo(f"{model} (input {tuple(shape)}): {report}")
    if not report.supported:
        raise typer.Exit(1)


@app.command()
@handle_errors
def models() -> None:
    """List the zoo's models."""
    from .models import MODELS, available_models

    for name in available_models():
        typer.echo(f"{name:<18} {MODELS[name].description}")


@app.command()
@handle_errors
def datasets() -> None:
    """List the datasets the trainer reads (all offline)."""
    from .data import available_datasets
    from .data.registry import dataset_options

    for name in available_datasets():
        opts = ", ".join(dataset_options(name))
        typer.echo(f"{name:<14} {'options: ' + opts if opts else ''}")


@app.command()
@handle_errors
def demo(
    epochs: Annotated[int, typer.Option(help="epochs per run")] = 4,
    limit: Annotated[int, typer.Option(help="MNIST training samples used")] = 15000,
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0,1",
    lr: Annotated[float, typer.Option(help="SGD learning rate")] = 0.1,
    threads: Annotated[int, typer.Option(
        help="torch CPU threads (1 is fastest for this small net on a busy machine)")] = 1,
    out: Annotated[Path, typer.Option("--out", "-o", help="comparison directory")] = Path(
        "runs/demo"),
    progress: ProgressOpt = None,
) -> None:
    """MNIST on an irregular-width MLP (784-512-32-256-16-10): plain SGD against PathCond at
    initialisation, 2 seeds; a summary table here and a plot in the run directory (about a
    minute on a CPU)."""
    from .train.config import validate_config

    if epochs < 1 or limit < 1 or threads < 1:
        fail("--epochs, --limit and --threads must be positive")
    show = sys.stderr.isatty() if progress is None else progress
    seed_list = _parse_seeds(seeds)
    cfg = validate_config({
        **demo_config(epochs=epochs, limit=limit, lr=lr, threads=threads, seeds=seed_list),
        "name": "demo",
        "output": {"dir": str(out), "progress": show, "keep_checkpoints": 1},
    }, "demo")
    typer.echo(f"MNIST ({limit} training samples), MLP {'-'.join(map(str, DEMO_WIDTHS))} "
               f"(PyTorch default init), SGD lr {lr}, batch 128, {epochs} epochs, seeds "
               f"{seeds}: baseline against PathCond at initialisation")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.yaml").exists():
        fail(f"{out} is not empty and holds no comparison; choose another --out")
    _print_demo_rescaling(seed_list[0], threads)
    _run_compare(cfg, resume=False, overwrite=True)


def demo_config(*, epochs: int = 4, limit: int = 15000, lr: float = 0.1, threads: int = 1,
                seeds: Sequence[int] = (0, 1)) -> dict[str, Any]:
    """The experiment ``pathcond demo`` runs (``configs/mnist_demo.yaml`` holds its
    defaults), without its output options."""
    return {
        "seed": 0, "device": "cpu",
        "data": {"name": "mnist", "limit": limit},
        "model": {"name": "mlp", "args": {"widths": list(DEMO_WIDTHS)}},
        "optimizer": {"name": "sgd", "lr": lr},
        "training": {"epochs": epochs, "batch_size": 128, "target_accuracy": 0.8,
                     "target_split": "val", "threads": threads},
        "compare": {"methods": ["baseline", "pathcond"], "seeds": list(seeds)},
    }


def _print_demo_rescaling(seed: int, threads: int) -> None:
    """PathCond on the demo's MLP as the trainer initialises it for ``seed``: the report."""
    import torch

    from . import rescale
    from .models import get_model

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        model = get_model("mlp", widths=list(DEMO_WIDTHS))
        report = rescale(model, (DEMO_WIDTHS[0],))
    finally:
        torch.set_num_threads(previous)
    typer.echo(f"PathCond on this MLP as initialised for seed {seed} (what the 'pathcond' runs "
               f"start from):\n{report}")


register_experiments(app)


def _one_line_short_help(typer_app: typer.Typer) -> None:
    """Each command's line in ``pathcond --help``: the first paragraph of its docstring on
    one line (the command list would keep the docstring's line breaks)."""
    for info in typer_app.registered_commands:
        doc = getattr(info.callback, "__doc__", None)
        if info.short_help is None and doc:
            info.short_help = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


_one_line_short_help(app)


def main() -> None:
    """Entry point: run the app, turning pathcond's errors into one line and exit status 2."""
    try:
        app()
    except PathcondError as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
