"""clock(period): a never-ending plugin streams its rows, in the engine and through a worker,
and stops by LIMIT, by the row limit, by cancel and by a time-out."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from peregrine.engine import (
    Engine,
    PermissionDenied,
    PluginError,
    QueryCancelled,
    QueryLimits,
    QuerySyntaxError,
    QueryTimeout,
)
from peregrine.engine.worker import IsolatedQuery
from tests.plugins.event_queries import rows_while


def test_rows_stream_as_they_come_in_the_engine() -> None:
    engine = Engine()
    started = time.monotonic()
    seen = []
    for row in engine.execute("SELECT tick, time, utc FROM clock(0.2) LIMIT 3"):
        seen.append((row[0], time.monotonic() - started))
    assert [tick for tick, _ in seen] == [1, 2, 3]
    assert seen[0][1] < 0.1, "the first tick comes at once"
    assert 0.3 < seen[2][1] < 1.0, "a tick each period, not all at the end"


def test_rows_stream_out_of_a_worker_before_the_query_ends() -> None:
    query = IsolatedQuery("SELECT tick FROM clock(0.2)")
    started = time.monotonic()
    got: list[tuple[int, float]] = []
    with pytest.raises(QueryCancelled):
        for (tick,) in query:
            got.append((tick, time.monotonic() - started))
            if len(got) == 4:
                query.cancel()
    assert [tick for tick, _ in got] == [1, 2, 3, 4]
    # Each row crossed the pipe within its period plus the writer's 0.1 s flush.
    assert got[3][1] - got[1][1] == pytest.approx(0.4, abs=0.15)


def test_limit_stops_the_generator_in_a_worker() -> None:
    query = IsolatedQuery("SELECT tick FROM clock(0.05) LIMIT 5")
    assert [row[0] for row in query] == [1, 2, 3, 4, 5]


def test_the_row_limit_stops_it() -> None:
    result = Engine().execute("SELECT tick FROM clock(0.01)", limits=QueryLimits(max_rows=3))
    assert len(list(result)) == 3 and result.truncated


def test_cancel_wakes_a_clock_waiting_for_its_next_tick() -> None:
    result = Engine().execute("SELECT tick FROM clock(3600)")
    rows = iter(result)
    assert next(rows) == (1,)
    timer = threading.Timer(0.2, result.cancel)
    timer.start()
    started = time.monotonic()
    with pytest.raises(QueryCancelled):
        next(rows)
    assert time.monotonic() - started < 1.0


def test_a_timeout_ends_it_at_the_deadline_not_the_next_tick() -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout):
        list(Engine().execute("SELECT tick FROM clock(3600)", limits=QueryLimits(timeout=0.3)))
    assert time.monotonic() - started < 1.0


def test_a_period_too_short_is_refused_with_the_minimum() -> None:
    with pytest.raises(PluginError, match=r"at least 0\.01 seconds"):
        list(Engine().execute("SELECT * FROM clock(0)"))


def test_diff_yields_the_first_run_then_only_rows_added_and_removed(tmp_path: Path) -> None:
    (tmp_path / "kept").write_text("")
    (tmp_path / "goes").write_text("")
    query = f"SELECT name, size FROM glob({json.dumps(str(tmp_path / '*'))})"

    def change() -> None:
        (tmp_path / "goes").unlink()
        # Written beside, then renamed in: a run never sees it empty.
        staged = tmp_path.with_name(tmp_path.name + "-new")
        staged.write_text("abc")
        staged.rename(tmp_path / "new")

    rows = rows_while(
        "SELECT _action, row ->> 'name' AS name, row ->> 'size' AS size, tick "
        "FROM diff(:query, 0.1) LIMIT 4",
        change,
        params={"query": query},
    )
    first = sorted((r["_action"], r["name"]) for r in rows[:2])
    assert first == [("added", "goes"), ("added", "kept")]
    assert {r["tick"] for r in rows[:2]} == {1}
    assert [(r["_action"], r["name"], r["size"]) for r in rows[2:]] == [
        ("removed", "goes", 0),
        ("added", "new", 3),
    ]
    # The removal and the addition are two file operations: a run may fall between them.
    assert 1 < rows[2]["tick"] <= rows[3]["tick"]


def test_diff_keeps_the_permissions_of_the_query_it_is_in() -> None:
    with pytest.raises(PermissionDenied, match="FILESYSTEM_READ"):
        list(
            Engine().execute(
                "SELECT * FROM diff('SELECT * FROM glob(''/etc/*'')', 1)",
                permissions=frozenset(),
            )
        )


def test_diff_of_a_bad_query_says_what_is_wrong_with_it() -> None:
    with pytest.raises(QuerySyntaxError, match="unknown table"):
        list(Engine().execute("SELECT * FROM diff('SELECT * FROM nope()', 1)"))


def test_the_row_limit_stops_at_its_last_row_without_waiting_for_another_event() -> None:
    started = time.monotonic()
    result = Engine().execute(
        "SELECT tick FROM clock(3600)", limits=QueryLimits(max_rows=1, timeout=5)
    )
    assert list(result) == [(1,)] and result.truncated
    assert time.monotonic() - started < 2
