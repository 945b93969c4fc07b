"""One keepalive task for many websockets: the frontend's agents, or the simulator's fleet.

websockets' own keepalive (``ping_interval``) keeps a task, a coroutine and timers per
connection (1.4 KB each, and a wake-up per connection per interval); a process holding tens of
thousands of idle connections pings them all from one timer wheel instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Protocol

log = logging.getLogger(__name__)


class Pingable(Protocol):
    """What the keepalive needs of a websocket (websockets' connections have it). One that
    also has a ``heard`` attribute sets it when the peer sends anything (``AgentConnection``
    does), and is not pinged while it keeps doing so."""

    async def ping(self) -> Awaitable[float]: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Keepalive:
    """Pings every websocket it holds every ``interval`` seconds and closes one whose pong has
    not come ``timeout`` seconds after its ping (code 1011), like websockets' own keepalive
    (``ping_interval``, ``ping_timeout``) but from one task for all of them.

    Websockets wait in a wheel of ``interval / tick`` slots, one slot visited every ``tick``
    seconds, so a connection is visited every ``interval`` from when it was added (pings stay
    spread as connections came). A visit sends a ping unless the last one is unanswered, and
    closes the connection when that one is ``timeout`` old: the time-out is noticed at the first
    visit after it, so it is a multiple of ``interval`` in effect (the server's 120 s of 60 s).

    A websocket whose peer was heard from since the last visit (``heard``: agents ping every
    30 s themselves) is not pinged: it is alive, and the agent's own pings find a dead link
    from its side. Its flag is cleared, so a peer that falls silent is pinged at the next
    visit and closed at the first visit ``timeout`` or more after that ping: at most
    ``2 * interval`` plus ``timeout`` rounded up to a multiple of ``interval`` after it was
    last heard from (240 s with the server's 60 s and 120 s).
    """

    def __init__(self, interval: float, timeout: float, tick: float = 1.0) -> None:
        if interval <= 0 or timeout <= 0 or tick <= 0:
            raise ValueError("keepalive interval, timeout and tick must be positive")
        self.interval, self.timeout, self.tick = interval, timeout, tick
        self._slots: list[dict[Pingable, None]] = [
            {} for _ in range(max(1, round(interval / tick)))
        ]
        self._slot_of: dict[Pingable, int] = {}
        #: Websockets whose last ping is unanswered: when it was sent, and the task awaiting it.
        self._pinged: dict[Pingable, tuple[float, asyncio.Task[None]]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._visited = 0
        #: Pings sent, and visits that sent none because the peer had been heard from.
        self.pings = self.skipped = 0

    def __len__(self) -> int:
        return len(self._slot_of)

    def hold(self, ws: Pingable) -> None:
        """Keep ``ws`` alive until ``release``; the first ping goes in ``interval`` seconds."""
        if self._task is None:
            self._visited = self._slot_now()
            self._task = asyncio.create_task(self._run(), name="keepalive")
        slot = self._visited % len(self._slots)  # visited now: next visit in `interval`
        self._slots[slot][ws] = None
        self._slot_of[ws] = slot

    def release(self, ws: Pingable) -> None:
        slot = self._slot_of.pop(ws, None)
        if slot is not None:
            self._slots[slot].pop(ws, None)
        pinged = self._pinged.pop(ws, None)
        if pinged is not None:
            pinged[1].cancel()

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *(p[1] for p in self._pinged.values())) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._pinged.clear()

    def _slot_now(self) -> int:
        return int(asyncio.get_running_loop().time() / self.tick)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            now = asyncio.get_running_loop().time()
            current = self._slot_now()
            # Every slot passed since the last visit (a late wake-up skips none), at most a round.
            first = max(self._visited + 1, current - len(self._slots) + 1)
            for number in range(first, current + 1):
                for ws in list(self._slots[number % len(self._slots)]):
                    self._visit(ws, now)
            self._visited = current

    def _visit(self, ws: Pingable, now: float) -> None:
        pinged = self._pinged.get(ws)
        if pinged is not None:
            sent, task = pinged
            if now - sent < self.timeout - self.tick:  # visits are a tick late or early
                return  # wait for the pong, as websockets does
            task.cancel()
            self.release(ws)
            log.info(
                "closing the connection from %s: no pong %.0f s after a keepalive ping",
                getattr(ws, "remote_address", None), now - sent,
            )  # fmt: skip
            closing = asyncio.create_task(ws.close(1011, "keepalive ping timeout"))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            return
        if getattr(ws, "heard", False):
            ws.heard = False  # type: ignore[attr-defined]  # the Protocol cannot say "maybe"
            self.skipped += 1
            return
        self.pings += 1
        self._pinged[ws] = (now, asyncio.create_task(self._ping(ws)))

    async def _ping(self, ws: Pingable) -> None:
        """Send a ping and wait for its pong (a task: sending may wait for a full buffer)."""
        try:
            pong = await ws.ping()
            await pong
        except asyncio.CancelledError:
            raise
        except Exception:  # closed: its handler releases it
            return
        # Answered: forget it (only if the entry is still this task's).
        pinged = self._pinged.get(ws)
        if pinged is not None and pinged[1] is asyncio.current_task():
            del self._pinged[ws]
