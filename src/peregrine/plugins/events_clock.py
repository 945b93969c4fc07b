"""``clock(period)``: the simplest event plugin, a row every ``period`` seconds, for ever; and
``diff(query, period)``, which runs a query on that clock and yields only what changed.

Event plugins are table plugins whose generator never ends: they yield a row when something
happens and wait otherwise, through :meth:`QueryContext.wait`, so a cancel or a deadline wakes
them at once. A query over one ends only by its ``LIMIT``, its row limit, a cancel or a time-out.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Plugin, table
from peregrine.hookspecs import hookimpl

#: The shortest period a clock may tick at: faster would be a busy loop, not a clock.
MIN_PERIOD = 0.01


def ticks(ctx: QueryContext, period: float) -> Iterator[int]:
    """Tick numbers 1, 2, ... on a fixed schedule, the first at once. A tick missed because the
    consumer was slow is skipped, not bunched: the schedule never drifts and never bursts."""
    if period is None or float(period) < MIN_PERIOD:
        raise PluginError("clock", f"period must be at least {MIN_PERIOD} seconds, not {period!r}")
    period = float(period)
    start = time.monotonic()
    tick = 0
    while True:
        ctx.check()
        tick += 1
        yield tick
        late = time.monotonic() - start
        due = start + (int(late // period) + 1) * period
        ctx.wait(due - time.monotonic())


@table(
    name="clock",
    description=(
        "Event plugin (never ends): a row every `period` seconds, the first at once. Join a "
        "query to it to run that query periodically; `diff()` does that and keeps only changes."
    ),
    arguments=[Arg("period", "REAL", "Seconds between rows (at least 0.01).", default=1.0)],
    columns=[
        Col("tick", "INTEGER", "1 for the first row, then one more each period."),
        Col("time", "REAL", "When the row was made, seconds since the epoch."),
        Col("utc", "TEXT", "The same time in ISO 8601, UTC."),
    ],
    examples=("SELECT tick, utc FROM clock(0.5) LIMIT 3",),
    events=True,
)
def clock(ctx: QueryContext, period: float = 1.0) -> Iterator[dict[str, Any]]:
    for tick in ticks(ctx, period):
        now = time.time()
        yield {"tick": tick, "time": now, "utc": datetime.fromtimestamp(now, UTC).isoformat()}


def _results(ctx: QueryContext, query: str) -> tuple[list[str], Counter[tuple[Any, ...]]]:
    """Run ``query`` once as a nested query (same permissions, cancel and deadline)."""
    from peregrine.engine.executor import Engine  # the engine's own modules import plugins lazily

    result = Engine().execute(query, ctx=ctx.child())
    names = [c.name for c in result.columns]
    return names, Counter(result)


@table(
    name="diff",
    description=(
        "Event plugin (never ends): runs `query` every `period` seconds and yields only the rows "
        "added or removed since its last run (osquery's differential results); the first run's "
        "rows are all added. The query must end; its row is a JSON object (`row ->> 'pid'`)."
    ),
    arguments=[
        Arg("query", "TEXT", "The SQL to run again and again (a query that ends).", required=True),
        Arg("period", "REAL", "Seconds between runs (at least 0.01).", default=60.0),
    ],
    columns=[
        Col("_action", "TEXT", "added or removed."),
        Col("row", "JSON", "The row, as an object of its columns."),
        Col("tick", "INTEGER", "Which run saw the change: 1 is the first."),
        Col("time", "REAL", "When that run started, seconds since the epoch."),
    ],
    examples=(
        "SELECT _action, row ->> 'name' AS name FROM diff('SELECT name FROM users()', 5) LIMIT 3",
    ),
    events=True,
)
def diff(ctx: QueryContext, query: str, period: float = 60.0) -> Iterator[dict[str, Any]]:
    before: Counter[tuple[Any, ...]] = Counter()
    for tick in ticks(ctx, period):
        now = time.time()
        names, after = _results(ctx, str(query))
        for action, rows in (("removed", before - after), ("added", after - before)):
            for row in rows.elements():
                encoded = msgspec.json.encode(dict(zip(names, row, strict=True)))
                yield {"_action": action, "row": encoded.decode(), "tick": tick, "time": now}
        before = after


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [clock, diff]
