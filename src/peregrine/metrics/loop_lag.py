"""A task that measures how late the event loop wakes it: the lag every agent's message and
every API request of this process waits behind."""

from __future__ import annotations

import asyncio
import time

from peregrine.metrics.instruments import EVENT_LOOP_LAG

INTERVAL = 0.5


async def sample_loop_lag(interval: float = INTERVAL) -> None:
    """Sleep ``interval``, record how much longer the sleep took, forever."""
    while True:
        asked = time.monotonic()
        await asyncio.sleep(interval)
        EVENT_LOOP_LAG.set(max(0.0, time.monotonic() - asked - interval))
