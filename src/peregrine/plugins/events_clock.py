"""``clock(period)``: the simplest event plugin, a row every ``period`` seconds, for ever.

Event plugins are table plugins whose generator never ends: they yield a row when something
happens and wait otherwise, through :meth:`QueryContext.wait`, so a cancel or a deadline wakes
them at once. A query over one ends only by its ``LIMIT``, its row limit, a cancel or a time-out.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

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


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [clock]
