"""A live view never sleeps through a change: one that lands while its state is being read
wakes it at once, not at its next poll (up to a second on a collection's way to the analyst)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from peregrine.api.routes.events import changes
from peregrine.services.events import ServerEvents

#: The stream's poll, so long that only a wake-up can end the test in time.
NEVER = 3600.0


async def _connected() -> bool:
    return False


def test_a_change_made_while_the_state_is_read_wakes_the_stream() -> None:
    events = ServerEvents()
    stored = {"state": "In progress"}

    async def snapshot() -> tuple[Any, bool]:
        seen = dict(stored)
        if seen["state"] == "In progress":
            # The flow's end is stored, and announced, while this read is under way.
            stored["state"] = "Finished"
            events.flow_changed("F.0123456789abcdef")
        return seen, seen["state"] == "Finished"

    async def scenario() -> list[Any]:
        async with asyncio.timeout(10):
            return [
                json.loads(message.decode().removeprefix("data: "))
                async for message in changes(events, _connected, snapshot, poll=NEVER)
            ]

    assert asyncio.run(scenario()) == [{"state": "In progress"}, {"state": "Finished"}]


def test_a_waiter_that_saw_every_change_sleeps_until_the_next() -> None:
    events = ServerEvents()

    async def scenario() -> tuple[bool, bool]:
        since = events.version
        quiet = await events.wait_changed(0.05, since)  # nothing changed: it waits it out
        asyncio.get_running_loop().call_later(0.01, events.hunt_changed, "H.0123456789abcdef")
        async with asyncio.timeout(10):
            woken = await events.wait_changed(NEVER, since)
        return quiet, woken

    assert asyncio.run(scenario()) == (False, True)
