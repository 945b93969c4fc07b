"""Table plugins as SQLite virtual tables: arguments, the planner, lazy columns, errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from peregrine.engine import (
    Arg,
    Col,
    Engine,
    Lazy,
    MissingArgumentError,
    PluginError,
    QueryContext,
    QuerySyntaxError,
    Registry,
    table,
)


@table(
    name="people",
    description="Fixed people with homes.",
    columns=[Col("name"), Col("home"), Col("age", "INTEGER")],
    arguments=[Arg("name", "TEXT", "filter")],
)
def people(ctx: QueryContext, name: str | None = None) -> Iterator[dict[str, Any]]:
    rows = [
        {"name": "ann", "home": "/home/ann", "age": 30},
        {"name": "bob", "home": "/home/bob", "age": 40},
    ]
    seen_filters.append(name)
    yield from (r for r in rows if name is None or r["name"] == name)


@table(
    name="listdir",
    description="Fake directory listing of a required directory.",
    columns=[Col("path")],
    arguments=[
        Arg("dir", "TEXT", "directory", required=True),
        Arg("count", "INTEGER", "n", default=2),
    ],
)
def listdir(ctx: QueryContext, dir: str, count: int) -> Iterator[tuple[str]]:
    if dir == "bad":
        raise PluginError("listdir", "bad is not a directory")
    for i in range(int(count)):
        yield (f"{dir}/f{i}",)


computed: list[str] = []
seen_filters: list[str | None] = []


def expensive(path: str) -> str:
    computed.append(path)
    return "digest:" + path


@table(
    name="files",
    description="Files with an expensive digest column.",
    columns=[Col("path"), Col("digest", expensive=True, hidden=True)],
)
def files(ctx: QueryContext) -> Iterator[tuple[str, Lazy]]:
    for p in ("a", "b", "c"):
        yield (p, Lazy(expensive, p))


@table(name="broken", description="A plugin that fails.", columns=[Col("x")])
def broken(ctx: QueryContext) -> Iterator[tuple[int]]:
    yield (1,)
    raise OSError("disk on fire")


kinds_read: list[str] = []
kinds_filters: list[Any] = []


def _read_kind(name: str, kind: str) -> str:
    kinds_read.append(name)
    return kind


@table(
    name="kinds",
    description="Entries with a kind; the kind filter is applied exactly, so SQLite skips it.",
    columns=[Col("name"), Col("kind")],
    arguments=[Arg("kind", "TEXT", "exact filter", exact=True)],
)
def kinds(ctx: QueryContext, kind: Any = None) -> Iterator[tuple[str, Lazy]]:
    kinds_filters.append(kind)
    for name, k in (("a", "file"), ("b", "dir"), ("c", "file"), ("d", "FILE")):
        if kind is None or (isinstance(kind, str) and k == kind):
            yield (name, Lazy(_read_kind, name, k))  # a read of the kind is recorded


batches_closed: list[int] = []


@table(
    name="in_batches",
    description="n rows handed over in lists of 3; the last batch fails if asked to.",
    columns=[Col("n", "INTEGER")],
    arguments=[Arg("count", "INTEGER", "rows"), Arg("fail", "INTEGER", "raise at the end")],
    batches=True,
)
def in_batches(ctx: QueryContext, count: int, fail: int = 0) -> Iterator[list[tuple[int]]]:
    try:
        numbers = list(range(count))
        for start in range(0, count, 3):
            yield [(n,) for n in numbers[start : start + 3]]
        if fail:
            raise OSError("lost the disk")
    finally:
        batches_closed.append(count)


@table(name="windows_only", description="x", columns=[Col("x")], platforms=("win32",))
def windows_only(ctx: QueryContext) -> Iterator[tuple[int]]:
    yield (1,)


@pytest.fixture(scope="module")
def eng() -> Engine:
    registry = Registry()
    for plugin in (people, listdir, files, broken, windows_only, kinds, in_batches):
        registry.add(plugin)
    return Engine(registry)


def rows(eng: Engine, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    return list(eng.execute(sql, params))


def test_argument_given_positionally_and_in_where_is_the_same(eng: Engine) -> None:
    assert rows(eng, "SELECT path FROM listdir('/x')") == [("/x/f0",), ("/x/f1",)]
    assert rows(eng, "SELECT path FROM listdir WHERE dir = '/x'") == [("/x/f0",), ("/x/f1",)]
    assert rows(eng, "SELECT path FROM listdir('/x', 1)") == [("/x/f0",)]


def test_argument_value_is_visible_as_hidden_column(eng: Engine) -> None:
    assert rows(eng, "SELECT dir, count FROM listdir('/y') LIMIT 1") == [("/y", 2)]
    assert rows(eng, "SELECT * FROM listdir('/y') LIMIT 1") == [("/y/f0",)]


def test_missing_required_argument_is_refused_by_the_planner(eng: Engine) -> None:
    with pytest.raises(MissingArgumentError, match=r"listdir\(\) needs its required argument dir"):
        eng.execute("SELECT * FROM listdir()")


def test_join_supplies_required_argument_from_another_table(eng: Engine) -> None:
    # listdir comes first in the text; the planner must put people in the outer loop.
    got = rows(eng, "SELECT p.name, l.path FROM listdir(p.home) l JOIN people() p ORDER BY 2")
    assert got == [
        ("ann", "/home/ann/f0"),
        ("ann", "/home/ann/f1"),
        ("bob", "/home/bob/f0"),
        ("bob", "/home/bob/f1"),
    ]


def test_filter_argument_is_pushed_down_and_rechecked(eng: Engine) -> None:
    seen_filters.clear()
    assert rows(eng, "SELECT age FROM people() WHERE name = 'bob'") == [(40,)]
    assert seen_filters == ["bob"]
    seen_filters.clear()
    assert rows(eng, "SELECT count(*) FROM people() WHERE name LIKE 'a%'") == [(1,)]
    assert seen_filters == [None]


def test_expensive_column_computed_only_when_used(eng: Engine) -> None:
    computed.clear()
    assert len(rows(eng, "SELECT path FROM files()")) == 3
    assert rows(eng, "SELECT * FROM files()") == [("a",), ("b",), ("c",)]  # not in SELECT *
    assert computed == []
    assert rows(eng, "SELECT digest FROM files() WHERE path = 'b'") == [("digest:b",)]
    assert computed == ["b"]


def test_plugin_error_names_the_plugin(eng: Engine) -> None:
    with pytest.raises(PluginError, match=r"listdir\(\): bad is not a directory"):
        rows(eng, "SELECT * FROM listdir('bad')")


def test_unexpected_plugin_exception_becomes_plugin_error(eng: Engine) -> None:
    with pytest.raises(PluginError, match=r"broken\(\): OSError: disk on fire"):
        rows(eng, "SELECT * FROM broken()")


def test_plugin_for_another_os_says_so(eng: Engine) -> None:
    with pytest.raises(PluginError, match="not supported on this OS"):
        rows(eng, "SELECT * FROM windows_only()")


def test_unknown_table_suggests_close_names(eng: Engine) -> None:
    with pytest.raises(QuerySyntaxError, match=r"unknown table 'peeple'.*did you mean people"):
        eng.execute("SELECT * FROM peeple()")


def test_bad_sql_is_a_syntax_error(eng: Engine) -> None:
    with pytest.raises(QuerySyntaxError, match="bad SQL"):
        eng.execute("SELEKT 1")


def test_null_required_argument_gives_no_rows_like_a_join(eng: Engine) -> None:
    assert rows(eng, "SELECT * FROM listdir(NULL)") == []
    got = rows(
        eng,
        "SELECT x.d, l.path FROM (SELECT NULL AS d UNION ALL SELECT '/z') x JOIN listdir(x.d) l",
    )
    assert got == [("/z", "/z/f0"), ("/z", "/z/f1")]


def test_exact_filter_is_not_checked_again_by_sqlite(eng: Engine) -> None:
    kinds_read.clear()
    kinds_filters.clear()
    assert rows(eng, "SELECT name FROM kinds WHERE kind = 'file'") == [("a",), ("c",)]
    assert kinds_filters == ["file"]
    assert kinds_read == []  # SQLite never read the column to compare it
    # IN is one call per value, still without a second check.
    assert rows(eng, "SELECT name FROM kinds WHERE kind IN ('dir', 'file')") == [
        ("b",),
        ("a",),
        ("c",),
    ]
    assert kinds_read == []
    # Reading the column still gives its value.
    assert rows(eng, "SELECT name, kind FROM kinds WHERE kind = 'dir'") == [("b", "dir")]


def test_exact_filter_given_null_matches_nothing_without_calling_the_plugin(eng: Engine) -> None:
    kinds_filters.clear()
    assert rows(eng, "SELECT name FROM kinds WHERE kind = NULL") == []
    got = rows(eng, "SELECT x.k, s.name FROM (SELECT NULL AS k) x JOIN kinds s ON s.kind = x.k")
    assert got == []
    assert kinds_filters == []


def test_filter_with_another_collation_is_left_to_sqlite(eng: Engine) -> None:
    # Handed 'BOB', the plugin (comparing as Python does) would have found no one.
    seen_filters.clear()
    assert rows(eng, "SELECT age FROM people() WHERE name = 'BOB' COLLATE NOCASE") == [(40,)]
    assert seen_filters == [None]
    kinds_filters.clear()
    got = rows(eng, "SELECT name FROM kinds WHERE kind = 'file' COLLATE NOCASE")
    assert got == [("a",), ("c",), ("d",)]
    assert kinds_filters == [None]  # not pushed down: the plugin compares case-sensitively


def test_exact_filter_must_name_a_column() -> None:
    with pytest.raises(ValueError, match="cannot be an exact filter"):
        table(
            name="bad_exact",
            description="x",
            columns=[Col("x")],
            arguments=[Arg("y", "TEXT", "not a column", exact=True)],
        )(lambda ctx, y=None: iter(()))


def test_rows_handed_over_in_batches_come_out_one_by_one(eng: Engine) -> None:
    batches_closed.clear()
    assert rows(eng, "SELECT n FROM in_batches(7)") == [(n,) for n in range(7)]
    assert rows(eng, "SELECT count(*) FROM in_batches(0)") == [(0,)]
    assert rows(eng, "SELECT n FROM in_batches(7) LIMIT 4") == [(n,) for n in range(4)]
    assert batches_closed == [7, 0, 7]  # the generator is closed when the query stops early
    with pytest.raises(PluginError, match=r"in_batches\(\): OSError: lost the disk"):
        rows(eng, "SELECT n FROM in_batches(4, 1)")
