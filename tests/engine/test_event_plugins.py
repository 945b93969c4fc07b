"""How the engine runs event plugins (generators that never end): a join runs once per event."""

from __future__ import annotations

import dataclasses
import time

import psutil
import pytest

from peregrine.engine import Engine, QueryLimits, QueryTimeout
from peregrine.engine.registry import Registry
from peregrine.engine.worker import IsolatedQuery
from peregrine.plugin_manager import default_registry

#: split() is given its argument and clock() is not, so the planner, reading the costs alone,
#: would put split() outside; each word matches one tick.
JOIN = "SELECT c.tick, w.value FROM split('a,b') w JOIN clock() c ON c.tick = w.idx + 1 LIMIT 2"


def _registry(events: bool) -> Registry:
    registry = Registry()
    for plugin in default_registry():
        if plugin.name == "clock":
            plugin = dataclasses.replace(plugin, events=events)
        registry.add(plugin)
    return registry


def test_an_event_plugin_is_the_outer_loop_of_a_join() -> None:
    rows = list(Engine(_registry(events=True)).execute(JOIN, limits=QueryLimits(timeout=5)))
    assert rows == [(1, "a"), (2, "b")]


def test_without_the_mark_the_planner_puts_it_inside_and_the_join_never_ends() -> None:
    """Why the mark exists: as the inner loop, the clock is entered for the first word and
    never left, so the second word's row never comes."""
    with pytest.raises(QueryTimeout):
        list(Engine(_registry(events=False)).execute(JOIN, limits=QueryLimits(timeout=2.5)))


SPIN = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
#: A query idle for IDLE seconds (its clock waits), then busy on the second tick.
IDLE = 6
BURST = SPIN + (
    "SELECT tick, CASE WHEN tick = 2 THEN (SELECT x FROM c WHERE x = :n LIMIT 1) END "
    f"FROM clock({IDLE}) LIMIT 2"
)


def _burst_share(limits: QueryLimits, n: int) -> float:
    """The worker's CPU use during the busy part, as a share of one core: CPU seconds over wall
    seconds from the first row to the second, less the idle wait."""
    query = IsolatedQuery(BURST, {"n": n}, limits=limits)
    marks = []
    worker = None
    for _ in query:
        worker = worker or psutil.Process(query.pid)
        times = worker.cpu_times()  # a zombie's still reads: it is reaped after the loop
        marks.append((time.monotonic(), times.user + times.system))
    (wall0, cpu0), (wall1, cpu1) = marks
    return (cpu1 - cpu0) / (wall1 - wall0 - IDLE)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_cpu_limit_holds_after_a_long_idle_time() -> None:
    """An event query idle for seconds, then CPU-hungry, is held to its share at once: the
    limit holds over a short window, not over the query's life (which let it run at full speed
    on the share it had saved up: IDLE x 10% = 0.6 CPU seconds, more than the burst needs).
    Measured on a loaded 2-core box: 16% with the window, 80% without."""
    share = _burst_share(QueryLimits(cpu_limit=10), 2_000_000)
    assert share < 0.3, f"the busy part used {share:.0%} of a core"


@pytest.mark.timeout(30)
def test_a_worker_says_its_columns_before_the_first_event() -> None:
    """An event query's first row may be a long time coming; its columns (and so the news
    that it compiled and runs) come as soon as it is prepared."""
    query = IsolatedQuery("SELECT tick, utc FROM clock(3600) WHERE tick > 1")
    try:
        assert [c.name for c in query.columns] == ["tick", "utc"]
    finally:
        query.stop()
