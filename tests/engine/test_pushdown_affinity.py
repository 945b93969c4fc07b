"""A filter pushed down to a plugin finds what SQLite's own ``=`` finds, whatever the types.

The same rows are in a plugin (which narrows by the filter itself, comparing as Python does) and
in an ordinary SQLite table with the same declared types: every query must give both the same
rows. ``=`` is the one operator pushed down (``IN`` arrives as one ``=`` per value).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apsw
import pytest

from peregrine.engine import Arg, Col, Engine, QueryContext, Registry, table

ROWS = [
    ("a", "5", 5, 5.0, "5"),
    ("b", "5.0", 7, 2.5, "1.0e+20"),
    ("c", "abc", 12, 12.0, "abc"),
    ("d", "12", 0, 0.5, "12"),
]
COLUMNS = "name TEXT, s TEXT, i INTEGER, r REAL, k TEXT"


def _narrowed(**given: Any) -> Iterator[tuple[Any, ...]]:
    """The rows equal (as Python compares) to every filter given: what a plugin does."""
    index = {"s": 1, "i": 2, "r": 3, "k": 4}
    for row in ROWS:
        if all(value is None or row[index[n]] == value for n, value in given.items()):
            yield row


@table(
    name="typed",
    description="Rows whose s, i and r filters the plugin applies itself; SQLite checks again.",
    columns=[Col("name"), Col("s"), Col("i", "INTEGER"), Col("r", "REAL"), Col("k")],
    arguments=[Arg("s"), Arg("i", "INTEGER"), Arg("r", "REAL")],
)
def typed(ctx: QueryContext, s: Any = None, i: Any = None, r: Any = None) -> Iterator[Any]:
    yield from _narrowed(s=s, i=i, r=r)


@table(
    name="typed_exact",
    description="The same rows; k is an exact filter (SQLite does not check it again).",
    columns=[Col("name"), Col("s"), Col("i", "INTEGER"), Col("r", "REAL"), Col("k")],
    arguments=[Arg("k", exact=True)],
)
def typed_exact(ctx: QueryContext, k: Any = None) -> Iterator[Any]:
    yield from _narrowed(k=k)


@pytest.fixture(scope="module")
def eng() -> Engine:
    registry = Registry()
    for plugin in (typed, typed_exact):
        registry.add(plugin)
    return Engine(registry)


@pytest.fixture(scope="module")
def sqlite() -> apsw.Connection:
    """The same rows in plain SQLite tables: what a filter must find."""
    db = apsw.Connection(":memory:")
    for name in ("typed", "typed_exact"):
        db.execute(f"CREATE TABLE {name}({COLUMNS})")
        db.executemany(f"INSERT INTO {name} VALUES (?, ?, ?, ?, ?)", ROWS)
    return db


LITERALS = ["5", "'5'", "5.0", "'5.0'", "' 5'", "'12'", "12", "1e20", "'abc'", "x'35'", "NULL"]


def _same(eng: Engine, sqlite: apsw.Connection, sql: str, params: Any = None) -> list[Any]:
    expected = sorted(sqlite.execute(sql, params).fetchall())
    assert sorted(eng.execute(sql, params)) == expected, sql
    return expected


@pytest.mark.parametrize("column", ["s", "i", "r"])
@pytest.mark.parametrize("value", LITERALS)
def test_an_equality_filter_finds_what_sqlite_finds(
    eng: Engine, sqlite: apsw.Connection, column: str, value: str
) -> None:
    _same(eng, sqlite, f"SELECT name FROM typed WHERE {column} = {value}")
    _same(eng, sqlite, f"SELECT name FROM typed WHERE {column} IN ({value}, 'none')")


@pytest.mark.parametrize("value", LITERALS)
def test_an_exact_filter_finds_what_sqlite_finds(
    eng: Engine, sqlite: apsw.Connection, value: str
) -> None:
    _same(eng, sqlite, f"SELECT name FROM typed_exact WHERE k = {value}")
    _same(eng, sqlite, f"SELECT name FROM typed_exact WHERE k IN ({value}, 'none')")


def test_the_cases_that_found_nothing_before(eng: Engine, sqlite: apsw.Connection) -> None:
    # A number against a text column, text against a numeric column, bound or written.
    assert _same(eng, sqlite, "SELECT name FROM typed WHERE s = 5") == [("a",)]
    assert _same(eng, sqlite, "SELECT name FROM typed WHERE i = ?", ("5",)) == [("a",)]
    assert _same(eng, sqlite, "SELECT name FROM typed WHERE r = '2.5'") == [("b",)]
    assert _same(eng, sqlite, "SELECT name FROM typed_exact WHERE k = 1e20") == [("b",)]


def test_a_filter_from_a_join_finds_what_sqlite_finds(eng: Engine, sqlite: apsw.Connection) -> None:
    # The right-hand side comes from another table's column, with an affinity of its own: an
    # INTEGER column against a text one compares as numbers ('5.0' = 5), text or none as text.
    for column in ("s", "i", "r"):
        for other in ("name", "s", "i", "r"):
            sql = f"SELECT a.name, b.name FROM typed a JOIN typed b ON b.{column} = a.{other}"
            _same(eng, sqlite, sql)
            for v in (other, f"+{other}"):  # +: the value without its column's affinity
                rhs = f"(SELECT {v} AS v FROM typed) x"
                _same(
                    eng, sqlite, f"SELECT x.v, t.name FROM {rhs} JOIN typed t ON t.{column} = x.v"
                )
    assert _same(eng, sqlite, "SELECT a.name, b.name FROM typed a JOIN typed b ON b.s = a.i") == [
        ("a", "a"),
        ("a", "b"),
        ("c", "d"),
    ]
