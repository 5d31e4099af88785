"""The documentation stays true: the README's Python example runs, its command lines parse
with the CLI as it is, its YAML example validates, and every relative link in README.md and
docs/*.md points to a file of the repository."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import torch
import typer
import yaml

import pathcond
from pathcond.cli import app
from pathcond.models import MLP
from pathcond.train.config import validate_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def blocks(page: Path, language: str) -> list[str]:
    """The fenced code blocks of ``page`` in ``language`` ("" for unlabelled fences)."""
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == language]


def readme_command_lines() -> list[str]:
    """Every ``pathcond ...`` command of the README's unlabelled blocks (comments dropped,
    ``a; b`` split)."""
    commands = []
    for body in blocks(ROOT / "README.md", ""):
        for line in body.splitlines():
            for part in line.split("#", 1)[0].split(";"):
                if part.strip().startswith("pathcond "):
                    commands.append(part.strip())
    return commands


def inline_command_lines() -> list[tuple[str, str]]:
    """``(page, command)`` for every inline code span of README.md and docs/*.md that is a
    whole ``pathcond ...`` command: not a bare command name (``pathcond plot``) and without
    placeholders (``...``, an upper-case word such as ``NAME``)."""
    found = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text())
        for span in re.findall(r"`([^`]+)`", text):
            words = span.split()
            if (len(words) < 3 or words[0] != "pathcond" or "..." in span
                    or any(w.isupper() for w in words)):
                continue
            found.append((page.name, " ".join(words)))
    return found


def parse_command_line(line: str) -> None:
    """Parse (not run) ``pathcond ...`` with the CLI's own click commands: the subcommand
    and every option exist and every value converts."""
    args = shlex.split(line)[1:]
    group = typer.main.get_command(app)  # a click group (typer vendors click)
    with group.make_context("pathcond", list(args), resilient_parsing=True) as ctx:
        name, command, rest = group.resolve_command(ctx, list(args))
        assert command is not None, f"no command {name!r}"
        command.make_context(str(name), rest, parent=ctx)


def test_readme_python_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = blocks(ROOT / "README.md", "python")
    torch.manual_seed(0)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    report = namespace["report"]
    assert isinstance(report, pathcond.RescaleReport)
    assert report.converged
    assert "AM/GM" in capsys.readouterr().out


def test_batchnorm_doc_example_runs() -> None:
    """docs/batchnorm.md: the learning-rate factors of PathCond, on a BatchNorm MLP."""
    (code,) = blocks(ROOT / "docs" / "batchnorm.md", "python")
    torch.manual_seed(0)
    model = MLP([6, 8, 5, 3], batchnorm=True)
    namespace: dict[str, object] = {"pathcond": pathcond, "copy": copy, "model": model,
                                    "shape": (6,)}
    exec(compile(code, "docs/batchnorm.md", "exec"), namespace)
    factors = namespace["factors"]
    assert isinstance(factors, dict)
    params = dict(model.named_parameters())
    assert factors and set(factors) <= set(params)
    for name, factor in factors.items():
        assert factor.shape == params[name].shape, name


def test_methods_doc_example_runs() -> None:
    """docs/methods.md: every method built on a small CIFAR-shaped ResNet; the last
    optimizer (AdamW with weight fixing attached) then takes a step."""
    from pathcond.models import tiny_resnet
    from pathcond.optim import WeightFixing

    (code,) = blocks(ROOT / "docs" / "methods.md", "python")
    torch.manual_seed(0)
    model = tiny_resnet().double()
    namespace: dict[str, object] = {"model": model}
    with pytest.warns(UserWarning, match="exclude_batchnorm"):  # ENorm on a BatchNorm net
        exec(compile(code, "docs/methods.md", "exec"), namespace)
    assert isinstance(namespace["wf"], WeightFixing)
    opt = namespace["opt"]
    assert isinstance(opt, torch.optim.AdamW)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    model(x).square().mean().backward()
    opt.step()
    assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("line", readme_command_lines())
def test_readme_command_line_parses(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths are read from the repository root."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATHCOND_CIFAR10_DIR", str(ROOT))
    parse_command_line(line)


@pytest.mark.parametrize(("page", "line"), inline_command_lines())
def test_inline_command_parses(page: str, line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands quoted in the text (docs/RESULTS.md gives the one behind each number)."""
    monkeypatch.chdir(ROOT)
    parse_command_line(line)


def test_readme_lists_the_commands_it_shows() -> None:
    """The parametrised test above sees the README's commands (a broken extraction would
    make it vacuous)."""
    names = {shlex.split(line)[1] for line in readme_command_lines()}
    assert {"train", "compare", "plot", "rescale", "diagnose", "stats", "run",
            "experiments"} <= names
    assert len([page for page, _ in inline_command_lines() if page == "RESULTS.md"]) >= 20


def test_readme_yaml_example_validates() -> None:
    (text,) = blocks(ROOT / "README.md", "yaml")
    cfg = validate_config(yaml.safe_load(text), "README.md")
    assert cfg.name == "mnist-irregular"
    assert len(cfg.compare.methods) == 7


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_files(page: Path) -> None:
    missing = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_api_page_is_the_one_the_code_writes() -> None:
    """docs/api.md is regenerated from the docstrings by `python -m pathcond._apidoc`."""
    from pathcond._apidoc import render

    assert (ROOT / "docs" / "api.md").read_text() == render(), (
        "docs/api.md is stale: run `python -m pathcond._apidoc` from the repository root")


def test_every_public_name_and_method_has_a_docstring() -> None:
    from pathcond._apidoc import undocumented

    assert undocumented() == []
