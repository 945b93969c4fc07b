"""Queries in a worker process: streaming, limits, watchdog and denylist (real processes)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from peregrine.engine import (
    QueryCancelled,
    QueryDenied,
    QueryLimits,
    QuerySyntaxError,
    QueryTimeout,
    WorkerKilled,
)
from peregrine.engine.denylist import Denylist
from peregrine.engine.spare import SpareWorkers
from peregrine.engine.worker import IsolatedQuery

INFINITE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
HOG = INFINITE + "SELECT group_concat(printf('%.1000c', 'x')) FROM c"


@pytest.fixture
def denylist(tmp_path: Path) -> Denylist:
    return Denylist(tmp_path / "denylist.json", seconds=600)


@pytest.fixture(params=["started", "spare"])
def workers(request: pytest.FixtureRequest) -> Iterator[SpareWorkers | None]:
    """A worker started for the query, or a warm spare taken (engine/spare.py): the watchdog
    holds both to the same limits."""
    if request.param == "started":
        yield None
        return
    spares = SpareWorkers(1, idle_seconds=0)
    spares.fill()
    yield spares
    spares.close()


def test_rows_and_columns_come_back_with_types() -> None:
    query = IsolatedQuery("SELECT 1 AS n, 'a' AS s, x'00ff' AS b, 2.5 AS f, NULL AS z")
    assert [c.name for c in query.columns] == ["n", "s", "b", "f", "z"]
    assert list(query) == [(1, "a", b"\x00\xff", 2.5, None)]


def test_bound_parameters_reach_the_worker() -> None:
    query = IsolatedQuery("SELECT :a || :b", {"a": "x'", "b": "; DROP"})
    assert list(query) == [("x'; DROP",)]


def test_rows_stream_from_a_query_that_never_ends() -> None:
    query = IsolatedQuery(INFINITE + "SELECT x FROM c")
    got = []
    with pytest.raises(QueryCancelled):
        for row in query:
            got.append(row[0])
            if len(got) == 5000:
                query.cancel()
    assert got[:5000] == list(range(1, 5001))


def test_errors_cross_the_process_boundary_with_their_kind() -> None:
    with pytest.raises(QuerySyntaxError, match="unknown table"):
        IsolatedQuery("SELECT * FROM no_such_plugin()").columns  # noqa: B018


@pytest.mark.timeout(30)
def test_cancel_kills_a_worker_stuck_before_its_first_row(
    denylist: Denylist, workers: SpareWorkers | None
) -> None:
    """A query with no row yet, stuck where neither SQLite nor a plugin can look at the cancel
    token (a regular expression backtracking in C, holding the GIL for hours), is stopped by
    ``cancel()`` within a second: its worker is killed, it reads as cancelled, and it is not
    taken for a query that crashed its worker (no denylist entry)."""
    sql = "SELECT count(*) FROM (SELECT 1) WHERE regexp('^(a+)+$', :s)"
    query = IsolatedQuery(sql, {"s": "a" * 40 + "!"}, denylist=denylist, workers=workers)
    worker = psutil.Process(query.pid)
    time.sleep(1.0)  # started, and stuck in the regex
    assert worker.is_running() and query.rows_returned == 0
    started = time.monotonic()
    query.cancel()
    with pytest.raises(QueryCancelled):
        list(query)
    assert time.monotonic() - started < 2.0
    assert not psutil.pid_exists(query.pid)
    assert denylist.entry(sql) is None


def test_soft_timeout_is_reported_as_timeout() -> None:
    with pytest.raises(QueryTimeout):
        list(IsolatedQuery(INFINITE + "SELECT count(*) FROM c", limits=QueryLimits(timeout=0.3)))


def test_max_rows_truncates() -> None:
    query = IsolatedQuery(INFINITE + "SELECT x FROM c", limits=QueryLimits(max_rows=3))
    assert list(query) == [(1,), (2,), (3,)]
    assert query.truncated


def test_hard_timeout_kills_the_worker_and_denylists_the_query(
    denylist: Denylist, workers: SpareWorkers | None
) -> None:
    started = time.monotonic()
    sql = INFINITE + "SELECT count(*) FROM c"
    limits = QueryLimits(hard_timeout=0.5)
    with pytest.raises(WorkerKilled, match=r"hard time-out of 0\.5 s"):
        list(IsolatedQuery(sql, limits=limits, denylist=denylist, workers=workers))
    assert time.monotonic() - started < 5
    # The same query, even spaced differently, is now refused without starting a worker.
    with pytest.raises(QueryDenied, match="killed its worker"):
        IsolatedQuery(sql.replace(" ", "  "), denylist=denylist)
    assert denylist.remove(sql)
    assert denylist.entry(sql) is None


def test_memory_limit_kills_the_worker(denylist: Denylist, workers: SpareWorkers | None) -> None:
    limits = QueryLimits(max_memory_mb=150)
    with pytest.raises(WorkerKilled, match="over the memory limit of 150 MB"):
        list(IsolatedQuery(HOG, limits=limits, denylist=denylist, workers=workers))
    entry = denylist.entry(HOG)
    assert entry is not None and "memory limit" in entry["reason"]


def test_denylist_entries_expire(tmp_path: Path) -> None:
    denylist = Denylist(tmp_path / "d.json", seconds=0.2)
    denylist.add("SELECT 1", "test")
    with pytest.raises(QueryDenied):
        denylist.check("SELECT 1")
    time.sleep(0.3)
    denylist.check("SELECT 1")


def test_cpu_limit_throttles_the_worker(workers: SpareWorkers | None) -> None:
    """A CPU-bound query limited to 20% of a core uses about that share of a core over its
    run. Measured as a share (CPU seconds over wall seconds), not as a slowdown: on a loaded
    machine an unlimited query gets less than a core too, and a slowdown hides the limit."""
    sql = INFINITE + "SELECT x FROM c WHERE x = 1500000 LIMIT 1"

    def share(limits: QueryLimits) -> float:
        query = IsolatedQuery(sql, limits=limits, workers=workers)
        worker = psutil.Process(query.pid)
        started = time.monotonic()
        for (x,) in query:
            assert x == 1500000
            times = worker.cpu_times()  # a zombie's still reads until the query is reaped
            wall = time.monotonic() - started
        return (times.user + times.system) / wall

    free = share(QueryLimits())
    if free < 0.4:
        pytest.skip(f"this machine gives an unlimited query {free:.0%} of a core: too busy to tell")
    throttled = share(QueryLimits(cpu_limit=20))
    assert throttled < 0.3, (free, throttled)


def test_upload_dir_reaches_the_worker(tmp_path: Path) -> None:
    from peregrine.engine.context import UploadSink

    evidence = tmp_path / "evidence.txt"
    evidence.write_text("hello")
    sink = UploadSink(str(tmp_path / "uploads"), max_bytes=1000)
    query = IsolatedQuery("SELECT upload(:p)", {"p": str(evidence)}, uploads=sink)
    [(stored,)] = list(query)
    assert '"size": 5' in stored
    assert (tmp_path / "uploads" / "files" / str(evidence).lstrip("/")).read_text() == "hello"


def test_the_same_file_uploaded_twice_is_stored_once(tmp_path: Path) -> None:
    from peregrine.engine.context import UploadSink

    dotfile = tmp_path / ".bashrc"
    dotfile.write_text("alias ll='ls -l'")
    sink = UploadSink(str(tmp_path / "uploads"))
    first = list(IsolatedQuery("SELECT upload(:p)", {"p": str(dotfile)}, uploads=sink))
    second = list(IsolatedQuery("SELECT upload(:p)", {"p": str(dotfile)}, uploads=sink))
    assert first == second
    stored = list((tmp_path / "uploads" / "files").rglob("*bashrc*"))
    assert [p.name for p in stored] == [".bashrc"]


def test_warnings_past_the_limit_are_counted_and_said_in_the_last_one(tmp_path: Path) -> None:
    """1,500 warnings (read_file() of a directory warns each time): the first 1,000 are kept,
    the last warning says 500 more were dropped, in the worker and in this process alike."""
    from peregrine.engine import Engine
    from peregrine.engine.context import MAX_WARNINGS

    sql = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1500) "
        "SELECT count(*) FROM c JOIN read_file(:dir || substr(x, 1, 0))"
    )
    isolated = IsolatedQuery(sql, {"dir": str(tmp_path)})
    local = Engine().execute(sql, {"dir": str(tmp_path)})
    for query in (isolated, local):
        assert list(query) == [(0,)]
        assert len(query.warnings) == MAX_WARNINGS + 1
        assert "is a dir, not a file" in query.warnings[0]
        assert query.warnings[-1] == "500 more warnings were dropped (a query keeps its first 1000)"
        assert query.warnings_dropped == 500


def test_the_upload_limit_holds_for_the_collection_across_workers(tmp_path: Path) -> None:
    """Each source of a collection runs in its own worker; the byte budget is the collection's,
    not each worker's. A file left out is listed in skipped.jsonl (the status counts it)."""
    import json

    from peregrine.engine.context import UploadSink

    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(b"1" * 600)
    second.write_bytes(b"2" * 600)
    sink = UploadSink(str(tmp_path / "uploads"), max_bytes=1000)
    [(stored,)] = list(IsolatedQuery("SELECT upload(:p)", {"p": str(first)}, uploads=sink))
    assert json.loads(stored)["size"] == 600
    query = IsolatedQuery("SELECT upload(:p)", {"p": str(second)}, uploads=sink)
    assert list(query) == [(None,)]
    assert "would pass the upload limit of 1000 bytes (600 used)" in query.warnings[0]
    skipped = (tmp_path / "uploads" / "skipped.jsonl").read_text().splitlines()
    assert [json.loads(line)["path"] for line in skipped] == [str(second)]
