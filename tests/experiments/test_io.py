"""Result storage: packed tables round-trip exactly, the store reads both layouts, and a
read-only store never writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathcond.errors import ConfigError
from pathcond.experiments._io import (
    COLUMNS,
    UnitStore,
    atomic_write_json,
    compact,
    pack_tables,
    read_units,
    unpack_tables,
)

SCALARS = st.none() | st.booleans() | st.integers(-10**6, 10**6) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5)
KEYS = st.text("abcdefg_", min_size=1, max_size=4)


def _rows(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Lists of dicts with the same keys (tables), beside arbitrary lists and dicts."""
    table = st.lists(KEYS, min_size=1, max_size=4, unique=True).flatmap(
        lambda keys: st.lists(st.fixed_dictionaries({k: children for k in keys}),
                              min_size=0, max_size=5))
    return table | st.lists(children, max_size=4) | st.dictionaries(KEYS, children,
                                                                     max_size=4)


JSON = st.recursive(SCALARS, _rows, max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_pack_then_unpack_is_the_identity(value: Any) -> None:
    packed = pack_tables(value)
    assert unpack_tables(json.loads(json.dumps(packed))) == value


def test_history_is_stored_by_columns_and_smaller() -> None:
    history = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_acc": None} for e in range(50)]
    record = {"status": "completed", "history": history, "one": [{"a": 1}]}
    packed = pack_tables(record)
    assert packed["history"] == {COLUMNS: {"epoch": list(range(50)),
                                           "train_loss": [h["train_loss"] for h in history],
                                           "val_acc": [None] * 50}}
    assert packed["one"] == [{"a": 1}]  # a single row stays as it is
    assert len(json.dumps(packed)) < 0.6 * len(json.dumps(record))
    # rows whose keys differ (or come in another order) are not a table
    mixed = [{"a": 1, "b": 2}, {"b": 2, "a": 1}]
    assert pack_tables(mixed) == mixed
    assert pack_tables([{}, {}]) == [{}, {}]


def test_store_reads_packed_and_plain_files(tmp_path: Path) -> None:
    history = [{"epoch": e, "loss": float(e)} for e in range(3)]
    store = UnitStore(tmp_path / "a", {"experiment": "x"}, resume=True)
    store.put("u", {"n": 1}, {"history": history})
    raw = json.loads((tmp_path / "a" / "units.json").read_text())
    assert COLUMNS in raw["units"]["u"]["result"]["history"]
    again = UnitStore(tmp_path / "a", {"experiment": "x"}, resume=True)
    assert again.get("u", {"n": 1}) == {"history": history}
    # a file written before packing (plain rows) reads the same
    atomic_write_json(tmp_path / "b" / "units.json",
                      {"header": {"experiment": "x"},
                       "units": {"u": {"spec": {"n": 1}, "result": {"history": history}}}})
    plain = UnitStore(tmp_path / "b", {"experiment": "x"}, resume=True)
    assert plain.get("u", {"n": 1}) == {"history": history}
    assert read_units(tmp_path / "a" / "units.json") == read_units(tmp_path / "b" / "units.json")
    assert read_units(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_units(tmp_path / "bad.json") is None
    fresh = UnitStore(tmp_path / "c", {"experiment": "x"}, resume=True)
    assert fresh.adopt(tmp_path / "b" / "units.json") == 1
    assert fresh.get("u", {"n": 1}) == {"history": history}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1,
                max_size=5))
def test_a_unit_just_put_equals_the_unit_read_back(tmp_path_factory: pytest.TempPathFactory,
                                                   xs: list[float]) -> None:
    """What ``put`` returns is what a later run reads: a summary computed right after a unit
    finished equals the one a ``--no-train`` republish computes from disk, to the bit."""
    out = tmp_path_factory.mktemp("store")
    result = {"history": [{"epoch": i, "loss": x / 3} for i, x in enumerate(xs)], "v": xs[0] / 7}
    stored = UnitStore(out, {"experiment": "x"}, resume=True).put("u", {"n": 1}, result)
    assert UnitStore(out, {"experiment": "x"}, resume=True).get("u", {"n": 1}) == stored
    assert stored == compact(result)


def test_read_only_store_never_writes(tmp_path: Path) -> None:
    store = UnitStore(tmp_path, {"experiment": "x"}, resume=True, read_only=True)
    assert store.run("a", {"n": 1}, lambda: 1.0) == 1.0
    store.flush()
    assert not (tmp_path / "units.json").exists()


def test_store_refuses_another_runs_units(tmp_path: Path) -> None:
    store = UnitStore(tmp_path, {"experiment": "x", "scale": "cpu"}, resume=True)
    store.put("u", {"n": 1}, 1.0)
    before = (tmp_path / "units.json").read_bytes()
    for header in ({"experiment": "y", "scale": "cpu"}, {"experiment": "x", "scale": "full"}):
        for resume in (True, False):
            with pytest.raises(ConfigError, match=r"holds the units of x \(cpu\)"):
                UnitStore(tmp_path, header, resume=resume)
    assert (tmp_path / "units.json").read_bytes() == before
    # the same run may restart: it starts empty, and its first put replaces the file
    assert UnitStore(tmp_path, {"experiment": "x", "scale": "cpu"}, resume=False).units == {}
