"""The executor: read-only SQL, bound parameters, limits, cancellation, permissions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peregrine.engine import (
    Col,
    Engine,
    PermissionDenied,
    QueryCancelled,
    QueryContext,
    QueryLimits,
    QuerySyntaxError,
    QueryTimeout,
    Registry,
    table,
)

INFINITE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "


@table(
    name="slow",
    description="Yields one row, then works forever checking its deadline.",
    columns=[Col("x", "INTEGER")],
)
def slow(ctx: QueryContext) -> Iterator[tuple[int]]:
    yield (1,)
    while True:  # a plugin busy inside one row: only its own check() can stop it
        ctx.check()
        time.sleep(0.01)


@table(name="secret", description="Needs EXECVE.", columns=[Col("x")], permissions=("EXECVE",))
def secret(ctx: QueryContext) -> Iterator[tuple[str]]:
    yield ("ran",)


@pytest.fixture(scope="module")
def eng() -> Engine:
    registry = Registry()
    registry.add(slow)
    registry.add(secret)
    return Engine(registry)


def test_parameters_are_bound_not_pasted(eng: Engine) -> None:
    hostile = "x') UNION SELECT 'pwned' --"
    result = eng.execute("SELECT :v AS v", {"v": hostile})
    assert list(result) == [(hostile,)]
    assert list(eng.execute("SELECT ? + ?", (2, 3))) == [(5,)]


@pytest.mark.parametrize(
    "sql",
    [
        "ATTACH DATABASE '{path}' AS other",
        "VACUUM INTO '{path}'",
        "CREATE TABLE t(x)",
        "PRAGMA writable_schema = 1",
    ],
)
def test_only_read_only_statements_run_and_no_file_is_written(
    eng: Engine, tmp_path: Path, sql: str
) -> None:
    target = tmp_path / "written.db"
    with pytest.raises(QuerySyntaxError, match="read-only"):
        list(eng.execute(sql.format(path=target)))
    assert not target.exists()


def test_second_statement_is_refused(eng: Engine) -> None:
    with pytest.raises(QuerySyntaxError, match="only one SQL statement"):
        list(eng.execute("SELECT 1; SELECT 2"))


def test_max_rows_stops_and_says_truncated(eng: Engine) -> None:
    result = eng.execute(INFINITE + "SELECT x FROM c", limits=QueryLimits(max_rows=10))
    assert [r[0] for r in result] == list(range(1, 11))
    assert result.truncated


def test_timeout_interrupts_sqlite_itself(eng: Engine) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match=r"time-out of 0\.3 s"):
        list(eng.execute(INFINITE + "SELECT count(*) FROM c", limits=QueryLimits(timeout=0.3)))
    assert time.monotonic() - started < 3


def test_timeout_stops_a_plugin_busy_inside_a_row(eng: Engine) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout):
        list(eng.execute("SELECT * FROM slow()", limits=QueryLimits(timeout=0.3)))
    assert time.monotonic() - started < 3


def test_cancel_from_another_thread(eng: Engine) -> None:
    result = eng.execute("SELECT * FROM slow()")
    threading.Timer(0.2, result.cancel).start()
    got: list[Any] = []
    with pytest.raises(QueryCancelled):
        for row in result:
            got.append(row)
    assert got == [(1,)]


def test_cancel_interrupts_pure_sql_through_the_context(eng: Engine) -> None:
    # count(*) runs inside execute()'s first step, before a result exists to cancel:
    # cancelling the context the query was started with reaches it there too.
    ctx = QueryContext()
    threading.Timer(0.2, ctx.cancel).start()
    with pytest.raises(QueryCancelled):
        list(eng.execute(INFINITE + "SELECT count(*) FROM c", ctx=ctx))


def test_plugin_needing_a_permission_is_refused_without_it(eng: Engine) -> None:
    with pytest.raises(PermissionDenied, match=r"secret\(\) needs the EXECVE permission"):
        list(eng.execute("SELECT * FROM secret()", permissions=frozenset()))
    assert list(eng.execute("SELECT * FROM secret()", permissions=frozenset({"EXECVE"}))) == [
        ("ran",)
    ]


def test_result_columns_are_known_before_rows(eng: Engine) -> None:
    result = eng.execute("SELECT 1 AS one, 'x' AS two")
    assert [c.name for c in result.columns] == ["one", "two"]


def test_columns_are_known_even_without_rows(eng: Engine) -> None:
    result = eng.execute("SELECT 1 AS a, 2 AS b WHERE 0")
    assert [c.name for c in result.columns] == ["a", "b"]
    assert list(result) == []
