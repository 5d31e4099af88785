"""Checks of what a user gives ``pathcond run`` (:func:`pathcond.experiments.run_experiment`):
``--set`` values against the parameters they replace, the output directory, ``--only``
filters. Each failure is one line naming the problem and what to do."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ._io import UNITS_FILE, _read_object, jsonable

if TYPE_CHECKING:
    from .registry import RunContext

__all__ = ["check_only", "check_out_dir", "check_overrides"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _positive_int(v: Any) -> bool:
    return _is_int(v) and v > 0


def _seed(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _positive(v: Any) -> bool:
    return _is_number(v) and v > 0


#: What the parameters most experiments share must be, beyond the type of their default:
#: name -> (description, check of the value).
_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "epochs": ("a positive integer", _positive_int),
    "batch_size": ("a positive integer", _positive_int),
    "threads": ("a positive integer", _positive_int),
    "limit": ("a positive integer", _positive_int),
    "steps": ("a positive integer", _positive_int),
    "points": ("a positive integer", _positive_int),
    "seed": ("a non-negative integer", _seed),
    "lr": ("a positive number", _positive),
    "device": ("a device name such as cpu, cuda or auto", lambda v: isinstance(v, str)),
}
#: The same for the lists: name -> (description of the elements, check of each element).
_LIST_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "seeds": ("non-negative integers", _seed),
    "lrs": ("positive numbers", _positive),
    "ks": ("positive integers", _positive_int),
    "depths": ("positive integers", _positive_int),
    "methods": ("method names (or method mappings)", lambda v: isinstance(v, str | Mapping)),
}


def _expected(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if _is_int(default):
        return "an integer"
    if _is_number(default):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, list):
        return "a list such as [" + ", ".join(str(jsonable(v)) for v in default[:3]) + "]"
    if isinstance(default, Mapping):
        return "a mapping such as {" + ", ".join(f"{k}: ..." for k in list(default)[:3]) + "}"
    return type(default).__name__


def _fits(value: Any, default: Any) -> bool:
    """Whether ``value`` has the type of ``default`` (an integer is a number; lists and
    mappings elementwise, against the default's first element and its keys)."""
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if _is_int(default):
        return _is_int(value)
    if _is_number(default):
        return _is_number(value)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, list):
        return isinstance(value, list) and (not default or all(_fits(v, default[0])
                                                               for v in value))
    if isinstance(default, Mapping):
        return isinstance(value, Mapping) and all(
            v is None or _fits(v, default[k]) for k, v in value.items() if k in default)
    return True


def check_overrides(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` (one line, naming the parameter) unless every override
    has the type of the parameter it replaces in ``params`` (a scale's parameters, before
    the overrides) and, for the parameters most experiments share, a valid value."""
    def fail(key: str, value: Any, expected: str) -> None:
        raise ConfigError(f"--set {key}={json.dumps(jsonable(value))}: expected {expected}")

    def walk(prefix: str, over: Mapping[str, Any], base: Mapping[str, Any]) -> None:
        for key, value in over.items():
            name = f"{prefix}{key}"
            default = base.get(key)
            if isinstance(value, Mapping) and isinstance(default, Mapping):
                walk(name + ".", value, default)
                continue
            if value is None and prefix:
                continue  # an option of a section (e.g. data.limit) left to its default
            if not prefix and key in _RULES:
                expected, ok = _RULES[key]
                if not ok(value):
                    fail(name, value, expected)
                continue
            if not prefix and key in _LIST_RULES:
                what, ok = _LIST_RULES[key]
                if not isinstance(value, list) or not value or not all(ok(v) for v in value):
                    simple = [str(v) for v in default or [] if isinstance(v, str | int | float)]
                    fail(name, value, f"a non-empty list of {what}" + (
                        f", e.g. {name}=[{', '.join(simple[:2])}]" if simple else ""))
                continue
            if default is not None and not _fits(value, default):
                fail(name, value, _expected(default))
            if isinstance(default, list) and default and isinstance(value, list) and not value:
                fail(name, value, "at least one value")

    walk("", overrides, params)


def check_only(ctx: RunContext, groups: tuple[frozenset[str], ...]) -> None:
    """After the runner: a ``--only`` group naming no part of any unit key is an error (it
    matched nothing, so nothing was trained); a part no key has, beside others that
    matched, is noted."""
    if not groups:
        return
    parts = {p for key in ctx.considered | ctx.store.used for p in key.split("/")}
    for group in groups:
        unknown = sorted(group - parts)
        if not unknown:
            continue
        known = ", ".join(sorted(parts, key=lambda p: (p.split("=")[0], len(p), p)))
        if len(unknown) == len(group):
            raise ConfigError(f"--only {','.join(sorted(group))}: no unit of {ctx.name} "
                              f"({ctx.scale}) has this key part; parts: {known}")
        ctx.note(f"--only: no unit has the key part {', '.join(unknown)}")


def check_out_dir(out: Path, name: str, scale: str, tag: str | None = None) -> None:
    """Refuse an output directory that holds something other than this experiment's run
    at this scale and variant ``tag`` (another experiment's units, another variant's
    summary, a training run, other files): running into it would replace its summary, or
    its units."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{str(out)!r} exists and is not a directory")
    if not any(out.iterdir()):
        return
    what = f"{name} ({scale})"
    units = out / UNITS_FILE
    summary = _read_object(out / "summary.json")
    if units.exists():
        data = _read_object(units)
        if data is None:
            raise ConfigError(f"{units} is unreadable: move it away, or choose another --out")
        header = dict(data.get("header") or {})
        if (header.get("experiment"), header.get("scale")) != (name, scale):
            raise ConfigError(f"{str(out)!r} holds the run of {header.get('experiment')} "
                              f"({header.get('scale')}), not of {what}: choose another --out")
    elif (summary or {}).get("experiment") != name or (summary or {}).get("scale") != scale:
        raise ConfigError(f"{str(out)!r} is not empty and holds no run of {what}: choose a "
                          "new or empty --out")
    theirs = dict((summary or {}).get("variant") or {}).get("tag")
    if summary is not None and theirs != tag:
        again = "no --tag" if theirs is None else f"--tag {theirs}"
        raise ConfigError(f"{str(out)!r} holds the summary of {_variant(theirs)} of {what}, "
                          f"not of {_variant(tag)}: choose another --out, or run with {again}")


def _variant(tag: str | None) -> str:
    return "the untagged run" if tag is None else f"variant {tag!r}"
