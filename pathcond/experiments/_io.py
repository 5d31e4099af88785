"""Resumable result storage for experiments: atomic JSON writes and a store of finished
units of work.

An experiment is split into *units* (one training run, one rescaled network, one
trajectory). Each finished unit is written to ``<out_dir>/units.json`` at once, atomically
(write to a temporary file, then ``os.replace``), with the *spec* it was computed from. On a
rerun a unit whose key and spec are both unchanged is skipped; a unit whose spec changed
(e.g. more epochs) is computed again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._files import atomic_write_text
from ..errors import ConfigError

__all__ = ["UnitStore", "atomic_write_json", "atomic_write_text", "compact", "jsonable",
           "pack_tables", "read_units", "unpack_tables"]

UNITS_FILE = "units.json"
#: The key of a packed table (:func:`pack_tables`); no result uses it for anything else.
COLUMNS = "__columns__"


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, non-finite floats as ``None``, numpy/torch scalars
    as Python numbers: what ``json.dumps`` writes and reads back unchanged."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)
    if callable(item):
        return jsonable(item())
    return str(value)


def compact(value: Any, digits: int = 10) -> Any:
    """:func:`jsonable` with floats rounded to ``digits`` significant digits."""
    value = jsonable(value)
    if isinstance(value, dict):
        return {k: compact(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v, digits) for v in value]
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    return value


def pack_tables(value: Any) -> Any:
    """``value`` with every list of two or more dicts sharing the same keys (in the same
    order), such as a per-epoch history, stored by columns: ``{"__columns__": {key:
    [values]}}``. A third smaller on disk for training histories; :func:`unpack_tables`
    restores ``value`` exactly."""
    if isinstance(value, Mapping):
        return {k: pack_tables(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        rows = list(value)
        if len(rows) >= 2 and all(isinstance(r, Mapping) for r in rows):
            keys = list(rows[0])
            if keys and all(list(r) == keys for r in rows[1:]):
                return {COLUMNS: {k: [pack_tables(r[k]) for r in rows] for k in keys}}
        return [pack_tables(v) for v in rows]
    return value


def unpack_tables(value: Any) -> Any:
    """The inverse of :func:`pack_tables` (values never packed pass through unchanged)."""
    if isinstance(value, dict):
        if len(value) == 1 and COLUMNS in value and isinstance(value[COLUMNS], dict):
            columns = {k: unpack_tables(v) for k, v in value[COLUMNS].items()}
            n = len(next(iter(columns.values()))) if columns else 0
            return [{k: col[i] for k, col in columns.items()} for i in range(n)]
        return {k: unpack_tables(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unpack_tables(v) for v in value]
    return value


def _read_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` when it is missing, unreadable or not one."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_units(path: str | Path) -> dict[str, Any] | None:
    """The ``units`` of a store or published results file (tables unpacked), or ``None``
    when the file is missing or unreadable."""
    data = _read_object(Path(path))
    return None if data is None else dict(unpack_tables(data.get("units") or {}))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON, atomically."""
    atomic_write_text(path, json.dumps(jsonable(obj), indent=indent) + "\n")


def _describe(header: Mapping[str, Any]) -> str:
    name = header.get("experiment", "an unnamed run")
    return f"{name} ({header['scale']})" if header.get("scale") else str(name)


class UnitStore:
    """Finished units of one experiment run, persisted in ``<out_dir>/units.json``.

    Args:
        out_dir: the experiment's output directory.
        header: identifies the experiment and scale (stored; a file whose header differs
            is refused with :class:`~pathcond.errors.ConfigError`, with or without resume).
        resume: keep the units already in the file; ``False`` starts empty.
    """

    def __init__(self, out_dir: str | Path, header: Mapping[str, Any], *, resume: bool,
                 read_only: bool = False) -> None:
        self.path = Path(out_dir) / UNITS_FILE
        self.header = jsonable(dict(header))
        self.read_only = read_only
        self.units: dict[str, dict[str, Any]] = {}
        #: keys of the units this run looked up with a matching spec or computed
        self.used: set[str] = set()
        #: keys of the units this run computed (and stored)
        self.computed: set[str] = set()
        #: keys of the units this run computed again because their spec had changed
        self.replaced: list[str] = []
        data = _read_object(self.path)
        if data is not None:
            theirs = dict(data.get("header") or {})
            if any(theirs.get(k) != v for k, v in self.header.items()):
                # Writing here would replace another run's units (restart included).
                raise ConfigError(f"{self.path} holds the units of {_describe(theirs)}, not "
                                  f"of {_describe(self.header)}: choose another directory")
            if resume:
                self.units = dict(unpack_tables(data.get("units") or {}))

    def _matching(self, key: str, spec: Mapping[str, Any]) -> dict[str, Any] | None:
        """The entry of unit ``key`` if it was finished with ``spec`` (then marked used)."""
        entry = self.units.get(key)
        if entry is None or entry.get("spec") != jsonable(dict(spec)):
            return None
        self.used.add(key)
        return entry

    def get(self, key: str, spec: Mapping[str, Any]) -> Any | None:
        """The result of unit ``key`` if it was finished with the same ``spec``."""
        entry = self._matching(key, spec)
        return None if entry is None else entry.get("result")

    def done(self, key: str, spec: Mapping[str, Any]) -> bool:
        """Whether unit ``key`` is finished with this ``spec``."""
        return self._matching(key, spec) is not None

    def put(self, key: str, spec: Mapping[str, Any], result: Any) -> Any:
        """Record a finished unit and write the store to disk (atomically). Returns the
        result as stored (:func:`compact`): what a later run reads back, so that a summary
        is the same whether its units were just computed or read from disk."""
        if key in self.units and key not in self.computed:
            self.replaced.append(key)
        self.units[key] = {"spec": jsonable(dict(spec)), "result": compact(result)}
        self.used.add(key)
        self.computed.add(key)
        self.flush()
        return self.units[key]["result"]

    def flush(self) -> None:
        """Write the store to disk (histories packed by :func:`pack_tables`), unless it is
        read-only (a process that only draws, beside one that trains into the same
        directory)."""
        if self.read_only:
            return
        atomic_write_json(self.path, {"header": self.header, "units": pack_tables(self.units)},
                          indent=None)

    def run(self, key: str, spec: Mapping[str, Any], fn: Callable[[], Any]) -> Any:
        """The stored result of ``key``, or ``fn()`` stored and returned."""
        if self.done(key, spec):
            return self.units[key]["result"]
        return self.put(key, spec, fn())

    def adopt(self, path: str | Path) -> int:
        """Copy into this store the units of another store file that this one lacks (an
        experiment sharing units with another, e.g. App M with Fig 5); a unit is still used
        only if its spec matches. Returns the number of units copied."""
        units = read_units(path)
        if units is None:
            return 0
        count = 0
        for key, entry in units.items():
            if key not in self.units:
                self.units[key] = entry
                count += 1
        return count

    def used_units(self) -> dict[str, dict[str, Any]]:
        """The units this run used: what a published result must keep to be redrawn (not
        the store's other units, e.g. stale specs or another run's units sharing the
        directory)."""
        return {k: v for k, v in self.units.items() if k in self.used}

    def results(self, prefix: str = "") -> dict[str, Any]:
        """Results of the units whose key starts with ``prefix``."""
        return {k: v["result"] for k, v in self.units.items() if k.startswith(prefix)}
