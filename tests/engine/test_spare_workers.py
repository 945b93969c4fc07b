"""Warm query workers (engine/spare.py): a query takes a spare started ahead, a new one
replaces it, a worker still runs one query only, and spares never outlive their use (issue 17).
The watchdog's limits on a spare: ``test_worker.py`` (its ``workers`` fixture)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from peregrine.engine import QueryLimits
from peregrine.engine.spare import SpareWorkers
from peregrine.engine.worker import IsolatedQuery
from tests.engine.test_worker_isolation import markers, plant


@pytest.fixture
def spares() -> Iterator[SpareWorkers]:
    pool = SpareWorkers(1, idle_seconds=0)
    pool.fill()
    yield pool
    pool.close()


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return value


def gone(pid: int) -> bool:
    """Not running, and not a zombie either: reaped by whoever is its parent."""
    return not psutil.pid_exists(pid)


def test_a_query_takes_the_spare_and_a_new_spare_replaces_it(spares: SpareWorkers) -> None:
    [spare] = spares.pids
    query = IsolatedQuery("SELECT 1 + 1", workers=spares)
    assert query.pid == spare
    assert list(query) == [(2,)]
    [replacement] = wait_for(lambda: spares.pids)
    assert replacement != spare and psutil.Process(replacement).is_running()


def test_a_worker_runs_one_query_and_is_gone_before_the_next(spares: SpareWorkers) -> None:
    """Nothing of one query can reach the next: each runs in a process of its own, and the
    first one's process has ended (and been reaped) once its rows are read."""
    first = IsolatedQuery("SELECT 'first'", workers=spares)
    assert list(first) == [("first",)]
    wait_for(lambda: spares.pids)
    second = IsolatedQuery("SELECT 'second'", workers=spares)
    assert second.pid != first.pid
    assert gone(first.pid)
    assert list(second) == [("second",)]
    assert gone(second.pid)


def test_close_stops_and_reaps_the_spares_and_starts_no_more(spares: SpareWorkers) -> None:
    [spare] = spares.pids
    spares.close()
    assert gone(spare)
    assert spares.pids == []
    query = IsolatedQuery("SELECT 3", workers=spares)  # still answers, with a worker of its own
    assert list(query) == [(3,)]
    time.sleep(0.5)
    assert spares.pids == []


def test_spares_not_taken_for_their_idle_time_are_stopped() -> None:
    pool = SpareWorkers(1, idle_seconds=0.5)
    try:
        pool.fill()
        [spare] = pool.pids
        wait_for(lambda: not pool.pids)
        assert gone(spare)
        # The next query starts a worker of its own (and spares again).
        assert list(IsolatedQuery("SELECT 2", workers=pool)) == [(2,)]
    finally:
        pool.close()


def test_a_spare_that_died_waiting_is_not_handed_out(spares: SpareWorkers) -> None:
    [spare] = spares.pids
    os.kill(spare, signal.SIGKILL)
    wait_for(lambda: psutil.Process(spare).status() == psutil.STATUS_ZOMBIE)
    query = IsolatedQuery("SELECT 4", workers=spares)
    assert query.pid != spare
    assert list(query) == [(4,)]
    assert gone(spare)


@pytest.mark.timeout(60)
def test_a_spare_whose_parent_was_killed_exits_by_itself(tmp_path: Path) -> None:
    """kill -9 of the process holding the spare (an agent): the spare reads the end of its
    input and exits, instead of waiting for a query for ever."""
    code = (
        "import sys, time\n"
        "from peregrine.engine.spare import SpareWorkers\n"
        "pool = SpareWorkers(1, idle_seconds=0)\n"
        "pool.fill()\n"
        "print(pool.pids[0], flush=True)\n"
        "time.sleep(3600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            spare = psutil.Process(int(parent.stdout.readline()))
            time.sleep(1.0)  # let it warm up and wait for its request
            assert spare.is_running() and spare.status() != psutil.STATUS_ZOMBIE
        finally:
            parent.kill()
    spare.wait(30)  # raises TimeoutExpired if it stays


def test_a_spare_started_from_a_planted_directory_imports_nothing_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spare is started in ``/`` as ``python -I`` like any worker: modules planted where its
    parent runs are never imported, and a relative path still means the caller's directory."""
    planted = plant(tmp_path / "planted")
    (planted / "notes.txt").write_text("relative")
    monkeypatch.chdir(planted)
    pool = SpareWorkers(1, idle_seconds=0)
    try:
        pool.fill()
        query = IsolatedQuery("SELECT data FROM read_file('notes.txt')", workers=pool)
        assert list(query) == [(b"relative",)]
    finally:
        pool.close()
    assert markers(planted) == []


def test_a_spares_warm_up_is_not_charged_to_its_query(spares: SpareWorkers) -> None:
    """The CPU limit counts the query's own CPU: the share of a second a spare spent importing
    before its query came is where the watchdog's count starts, not CPU the query used."""
    time.sleep(1.0)  # warmed up
    [spare] = spares.pids
    warm_up = psutil.Process(spare).cpu_times()
    query = IsolatedQuery("SELECT 1", limits=QueryLimits(cpu_limit=50), workers=spares)
    assert query.pid == spare
    baseline = wait_for(lambda: query._cpu_samples[0][1])
    assert baseline >= warm_up.user + warm_up.system > 0
    assert list(query) == [(1,)]
