"""Run an event query (one that never ends) in the engine while something happens beside it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from peregrine.engine import Engine, QueryLimits


def rows_while(
    sql: str,
    action: Callable[[], object],
    *,
    params: dict[str, Any] | None = None,
    delay: float = 0.5,
    timeout: float = 15,
) -> list[dict[str, Any]]:
    """The rows of ``sql`` (which must end, by its LIMIT) as dicts; ``action`` runs in a thread
    ``delay`` seconds after the query was prepared (its plugin starts right then), so the
    plugin is already watching however long the engine took to start on a loaded machine."""
    engine = Engine()
    timer = threading.Timer(delay, action)
    try:
        result = engine.execute(
            sql, params, limits=QueryLimits(timeout=timeout), on_columns=lambda _: timer.start()
        )
        names = [c.name for c in result.columns]
        return [dict(zip(names, row, strict=True)) for row in result]
    finally:
        timer.cancel()
        timer.join()
