"""In-process notifications of what changed (a client came or went, a flow changed state).

Waiters (tests today; live views and the API later) sleep on one condition and re-check the
stored state when woken, so a notification can never be "missed": the state is the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class ServerEvents:
    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self.counts: Counter[str] = Counter()

    def _notify(self, what: str) -> None:
        self.counts[what] += 1

        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(wake())

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

    async def wait_changed(self, timeout: float) -> bool:
        """Sleep until something changes or ``timeout`` passes; True if something changed."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
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
                value = await check()
                if value:
                    return value
                async with self._changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), poll)
