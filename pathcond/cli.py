"""The ``pathcond`` command line.

Every error a user can cause ends in one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .errors import PathcondError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Path-lifting quantities and the PathCond rescaling of ReLU networks.")

DEMO_WIDTHS = (784, 512, 32, 256, 16, 10)


def fail(message: str) -> None:
    """Print one line and exit with status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _parse_kwargs(items: list[str] | None) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for item in items or []:
        if "=" not in item:
            fail(f"option '{item}' is not KEY=VALUE (e.g. --arg depth=5)")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _build_model(name: str, args: list[str] | None):  # type: ignore[no-untyped-def]
    from .models import get_model, model_input_shape

    kwargs = _parse_kwargs(args)
    model = get_model(name, **kwargs)
    return model, model_input_shape(name, **kwargs)


@app.command()
def stats(
    model: Annotated[str, typer.Argument(help="zoo model name (see `pathcond models`)")],
    arg: Annotated[list[str] | None, typer.Option("--arg", help="model option KEY=VALUE")] = None,
    seed: Annotated[int, typer.Option(help="seed of the initialisation")] = 0,
) -> None:
    """Parameters, hidden units, rescaling groups, number of paths and path magnitudes."""
    import torch

    from .diagnostics import model_stats

    torch.manual_seed(seed)
    net, shape = _build_model(model, arg)
    typer.echo(f"{model} (input {tuple(shape)})")
    for line in model_stats(net, shape).lines():
        typer.echo(line)


@app.command()
def models() -> None:
    """List the zoo's models."""
    from .models import available_models

    for name in available_models():
        typer.echo(name)


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="seed of the initialisation")] = 0,
) -> None:
    """Statistics and the PathCond rescaling of an irregular-width MLP."""
    import torch

    from .diagnostics import model_stats
    from .models import MLP
    from .rescale import rescale

    torch.manual_seed(seed)
    net = MLP(DEMO_WIDTHS)
    shape = (DEMO_WIDTHS[0],)
    typer.echo(f"MLP {'-'.join(map(str, DEMO_WIDTHS))} (Kaiming uniform init, seed {seed})")
    for line in model_stats(net, shape).lines():
        typer.echo(line)
    x = torch.randn(8, *shape)
    before = net(x)
    report = rescale(net, shape)
    typer.echo(str(report))
    with torch.no_grad():
        change = float((net(x) - before).norm() / before.norm())
    typer.echo(f"  relative change of the network's output: {change:.2e}")


def main() -> None:
    """Entry point: run the app, turning pathcond's errors into one line and exit status 2."""
    try:
        app()
    except PathcondError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
