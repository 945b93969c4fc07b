"""In-process notifications of what changed (a client came or went, a flow changed state).

Waiters (tests, the API's live views) sleep until the next change and re-check the stored
state when woken, so a notification can never be "missed": the state is the truth. A waiter
notes ``version`` before it reads the state and waits ``since`` it: a change that came while it
read wakes it at once (else it would sleep until its poll, up to a second on a collection's
path from its end to the analyst).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class ServerEvents:
    def __init__(self) -> None:
        # Made when someone waits, resolved (and dropped) by the next change: a change with
        # nobody waiting costs a counter increment, which matters at thousands a second.
        self._next_change: asyncio.Future[None] | None = None
        self.counts: Counter[str] = Counter()
        #: Changes so far: what a waiter notes before it reads the state.
        self.version = 0

    def _notify(self, what: str) -> None:
        self.counts[what] += 1
        self.version += 1
        waiter, self._next_change = self._next_change, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def client_connected(self, client_id: str) -> None:
        self._notify("connected")

    def client_disconnected(self, client_id: str) -> None:
        self._notify("disconnected")

    def clone_detected(self, client_id: str) -> None:
        self._notify("clone")

    def flow_changed(self, flow_id: str) -> None:
        self._notify("flow")

    def hunt_changed(self, hunt_id: str) -> None:
        self._notify("hunt")

    async def wait_changed(self, timeout: float, since: int | None = None) -> bool:
        """Sleep until something changes or ``timeout`` passes; True if something changed.
        ``since``: a ``version`` noted earlier; a change after it returns at once."""
        if since is not None and since != self.version:
            return True
        if self._next_change is None:
            self._next_change = asyncio.get_running_loop().create_future()
        try:
            # Shielded: one waiter's time-out must not cancel the change others wait for.
            await asyncio.wait_for(asyncio.shield(self._next_change), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_for(
        self, check: Callable[[], Awaitable[T | None]], timeout: float, poll: float = 0.5
    ) -> T:
        """Wait until ``check()`` returns something (re-checked on every change, and every
        ``poll`` seconds for changes made by another process); TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                since = self.version
                value = await check()
                if value:
                    return value
                await self.wait_changed(poll, since)
