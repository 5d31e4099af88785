"""``pathcond run EXPERIMENT --scale smoke|cpu|full --out DIR`` and ``pathcond experiments``.

Registered on the main app by ``pathcond/cli.py``; also runs standalone:
``python -m pathcond.experiments.cli run fig4 --scale cpu``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["app", "experiments_command", "register", "run_command"]


def run_command(
    experiment: Annotated[str, typer.Argument(help="experiment name (see `pathcond experiments`)")],
    scale: Annotated[str, typer.Option("--scale", "-s",
                                       help="smoke (seconds), cpu (minutes on 2 cores) or "
                                            "full (the published protocol)")] = "cpu",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="output directory (default runs/experiments/NAME-SCALE)")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume/--restart", help="keep finished units and continue interrupted runs "
                                   "(default), or start from scratch")] = True,
    progress: Annotated[bool, typer.Option("--progress/--quiet",
                                           help="one line per unit and epoch on stderr")] = True,
    train: Annotated[bool, typer.Option(
        "--train/--no-train", help="train what is not finished (default), or only draw the "
                                   "figure and summary from the finished units (a progress "
                                   "report of a long run, safe while it trains)")] = True,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="train only the units whose key has one of these comma-separated "
                       "parts (repeatable, all must match), e.g. --only seed=0 --only "
                       "k=7,k=4; the rest is drawn as with --no-train")] = None,
    publish_results: Annotated[bool, typer.Option(
        "--publish", help="copy the summary to results/ and the figure to docs/figures/")
    ] = False,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="override a parameter of the scale, dotted, value in YAML: "
                      "--set data.name=fashion_mnist (repeatable; use with --tag; a "
                      "mapping is merged into the one it overrides, a list replaces it)")] = None,
    tag: Annotated[str | None, typer.Option(
        "--tag", help="name of the variant made by --set: output runs/experiments/NAME-SCALE-"
                      "TAG, published as results/NAME_SCALE-TAG.json")] = None,
) -> None:
    """Run one experiment of the paper or the thesis at a scale and draw its figure.

    Resumable: finished units are kept in OUT/units.json and interrupted training runs
    continue from their last checkpoint; rerun the same command to continue.
    """
    from ..errors import PathcondError
    from .registry import RUNTIME_KEYS, SCALES, publish, run_experiment

    if scale not in SCALES:
        typer.echo(f"error: --scale must be one of {', '.join(SCALES)}; got {scale!r}", err=True)
        raise typer.Exit(2)
    try:
        from ..train.config import apply_overrides

        overrides = apply_overrides({}, sets or [])
        if set(overrides) - set(RUNTIME_KEYS) and tag is None and (publish_results
                                                                   or out is None):
            typer.echo("error: --set makes a variant: name it with --tag NAME (so that it does "
                       "not mix with the experiment's own output and results; only "
                       f"{' and '.join(RUNTIME_KEYS)} need no tag)", err=True)
            raise typer.Exit(2)
        result = run_experiment(experiment, scale=scale, out_dir=out, resume=resume,
                                progress=progress, overrides=overrides, tag=tag,
                                train=train, only=[o.split(",") for o in only or []])
    except PathcondError as exc:
        text = str(exc).strip().splitlines()
        typer.echo(f"error: {text[0] if text else type(exc).__name__}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: finished units are kept; rerun the same command to continue",
                   err=True)
        raise typer.Exit(130) from None
    typer.echo(f"{result.name} ({result.label}): {'complete' if result.complete else 'partial'}"
               f" in {result.seconds:.1f} s")
    typer.echo(f"  summary: {result.out_dir / 'summary.json'}")
    for fig in result.figures:
        typer.echo(f"  figure: {fig}")
    for message in result.summary.get("messages", []):
        typer.echo(f"  note: {message}")
    if publish_results:
        for path in publish(result):
            typer.echo(f"  published: {path}")


def experiments_command() -> None:
    """List the experiments with their titles and scales."""
    from ..errors import PathcondError
    from .registry import experiment_config, list_experiments

    for name in list_experiments():
        try:
            info = experiment_config(name)
            typer.echo(f"{name:20s} {info.title}  [{', '.join(info.scales)}]")
        except PathcondError as exc:
            typer.echo(f"{name:20s} (config missing: {exc})")


def register(main_app: typer.Typer) -> None:
    """Add ``run`` and ``experiments`` to a Typer app."""
    main_app.command("run")(run_command)
    main_app.command("experiments")(experiments_command)


app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Reproductions of the published experiments.")
register(app)

if __name__ == "__main__":
    app()
