"""The API reference page ``docs/api.md``, written from the public modules' ``__all__`` and
docstrings: each public name once, with its signature and the first paragraph of its
docstring. ``python -m pathcond._apidoc`` rewrites the page; ``tests/test_docs.py`` checks
that the committed page is the one this module writes, so it cannot fall behind the code.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MODULES = (
    "pathcond", "pathcond.graph", "pathcond.lifting", "pathcond.solver", "pathcond.rescale",
    "pathcond.optim", "pathcond.models", "pathcond.data", "pathcond.train",
    "pathcond.experiments", "pathcond.diagnostics",
)
PAGE = Path("docs") / "api.md"


def first_paragraph(obj: Any) -> str:
    """The first paragraph of ``obj``'s own docstring, on one line ("" without one)."""
    doc = obj.__doc__ if isinstance(obj, type) else inspect.getdoc(obj)
    if not doc or (isinstance(obj, type) and doc.startswith(f"{obj.__name__}(")):
        return ""  # none, or the signature dataclasses write in place of one
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _annotation(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return ""
    return value if isinstance(value, str) else inspect.formatannotation(value)


def _default(value: Any) -> str:
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    text = repr(value)
    if " at 0x" in text:  # an object's identity is not documentation, and changes each run
        raise ValueError(f"default {text} has no stable text; give it a repr")
    return text


def signature(obj: Callable[..., Any], *, drop_self: bool = False, returns: bool = True
              ) -> str:
    """``(a: int, *, b: str = 'x') -> R`` with the annotations as written in the source."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    parts: list[str] = []
    star_done = False
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name in ("self", "cls"):
        params = params[1:]
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
        star_done |= p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
        prefix = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        text = prefix + p.name
        ann = _annotation(p.annotation)
        if ann:
            text += f": {ann}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {_default(p.default)}" if ann else f"={_default(p.default)}"
        parts.append(text)
        if p.kind is p.POSITIONAL_ONLY and (i + 1 == len(params)
                                            or params[i + 1].kind is not p.POSITIONAL_ONLY):
            parts.append("/")
    ret = _annotation(sig.return_annotation) if returns else ""
    return f"({', '.join(parts)})" + (f" -> {ret}" if ret else "")


def public_members(cls: type) -> Iterator[tuple[str, Any]]:
    """Methods and properties ``cls`` defines itself (not inherited), public ones only."""
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, staticmethod | classmethod):
            yield name, member.__func__
        elif isinstance(member, property) or inspect.isfunction(member):
            yield name, member


def _is_pydantic(obj: Any) -> bool:
    return isinstance(obj, type) and hasattr(obj, "model_fields")


def describe(name: str, obj: Any) -> list[str]:
    """The page's lines for one public name."""
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return [f"### exception `{name}`", "", first_paragraph(obj), ""]
    if isinstance(obj, type) and issubclass(obj, enum.Enum):
        values = ", ".join(repr(m.value) for m in obj)
        return [f"### enum `{name}`", "", f"{first_paragraph(obj)} Values: {values}.", ""]
    if _is_pydantic(obj):
        fields = ", ".join(f"`{f}`" for f in obj.model_fields)
        return [f"### config `{name}`", "", first_paragraph(obj), "", f"Fields: {fields}.", ""]
    if isinstance(obj, type):
        kind = "dataclass" if dataclasses.is_dataclass(obj) else "class"
        lines = [f"### {kind} `{name}{signature(obj, returns=False)}`", "",
                 first_paragraph(obj), ""]
        for member_name, member in public_members(obj):
            if isinstance(member, property):
                lines.append(f"- property `{member_name}`: {first_paragraph(member)}")
            else:
                lines.append(f"- `{member_name}{signature(member, drop_self=True)}`: "
                             f"{first_paragraph(member)}")
        return [*lines, ""] if lines[-1] else lines
    if typing.get_origin(obj) is typing.Literal:
        values = ", ".join(repr(v) for v in typing.get_args(obj))
        return [f"### type `{name}`", "", f"One of {values}.", ""]
    if callable(obj):
        return [f"### `{name}{signature(obj)}`", "", first_paragraph(obj), ""]
    if isinstance(obj, dict):
        keys = ", ".join(f"`{k}`" for k in obj)
        return [f"### `{name}`", "", f"A dict keyed by {keys}.", ""]
    if isinstance(obj, tuple | list | frozenset):
        values = ", ".join(f"`{v}`" for v in obj)
        return [f"### `{name}`", "", f"A {type(obj).__name__} of {values}.", ""]
    return [f"### `{name}`", "", f"`{obj!r}`", ""]


def undocumented() -> list[str]:
    """Public names (and their public methods) without a docstring of their own."""
    missing = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not first_paragraph(obj):
                missing.append(f"{module_name}.{name}")
            if inspect.isclass(obj) and not issubclass(obj, BaseException | enum.Enum):
                missing += [f"{module_name}.{name}.{m}" for m, member in public_members(obj)
                            if not first_paragraph(member)]
    return missing


def render() -> str:
    """The text of ``docs/api.md``."""
    lines = [
        "# API reference",
        "",
        "Every public name of pathcond's modules (their `__all__`), with its signature and the",
        "first paragraph of its docstring; `help(name)` has the rest. A name exported by several",
        "modules is described under the first and listed under the others. Written by",
        "`python -m pathcond._apidoc` (a test checks that this page is the one it writes).",
        "",
    ]
    seen: dict[int, str] = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", first_paragraph(module), ""]
        again = []
        for name in module.__all__:
            obj = getattr(module, name)
            described = seen.get(id(obj)) if not isinstance(obj, int | float | str) else None
            if described is not None:
                again.append(f"`{name}` ({described})")
                continue
            seen[id(obj)] = f"`{module_name}`"
            lines += describe(name, obj)
        if again:
            lines += ["Also exported here: " + ", ".join(again) + ".", ""]
    return "\n".join(line.rstrip() for line in lines).rstrip() + "\n"


def main() -> None:
    """Rewrite ``docs/api.md`` (run from the repository root)."""
    from ._files import atomic_write_text

    if not PAGE.parent.is_dir():
        sys.exit(f"error: no {PAGE.parent}/ here; run from the repository root")
    atomic_write_text(PAGE, render())
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
