"""The frontend's live agent connections, in one place, with one way to shut them all down.

Each connection registers itself when its agent is authenticated and removes itself when it
ends, so ``get(client_id)`` is always the agent's current connection (what the collection service
pushes requests to) and ``shutdown()`` can stop them all: close with a time-out, then cancel.
``Keepalive`` pings every websocket of the frontend from one task. Admission is here too: how
many logins may be in progress at once (``handshakes``) and how fast new clients may enroll
(``enrollments``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Protocol

from peregrine.config.model import AgentLimits
from peregrine.metrics.instruments import AGENTS_CONNECTED
from peregrine.server.budget import TokenBucket

_random = random.Random()  # noqa: S311 (jitter; own state, so the global generator stays seeded)

log = logging.getLogger(__name__)

#: A draining frontend closes its agents' connections in at most this many batches.
DRAIN_BATCHES = 20


class Connection(Protocol):
    client_id: str
    address: str | None

    async def send(self, payload: bytes) -> None: ...

    async def alive(self, timeout: float) -> bool: ...

    async def close(self, code: int, reason: str) -> None: ...

    async def drain(self, code: int, reason: str) -> None:
        """Close once what is being stored now is stored and acknowledged."""


class Pingable(Protocol):
    """What the keepalive needs of a websocket (websockets' connections have it)."""

    async def ping(self) -> Awaitable[float]: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Keepalive:
    """Pings every websocket it holds every ``interval`` seconds and closes one whose pong has
    not come ``timeout`` seconds after its ping (code 1011), like websockets' own keepalive
    (``ping_interval``, ``ping_timeout``) but from one task for all of them: that one keeps a
    task, a coroutine and timers per connection (1.4 KB; a frontend holds ~35 KB an idle agent).

    Websockets wait in a wheel of ``interval / tick`` slots, one slot visited every ``tick``
    seconds, so a connection is visited every ``interval`` from when it was added (pings stay
    spread as connections came). A visit sends a ping unless the last one is unanswered, and
    closes the connection when that one is ``timeout`` old: the time-out is noticed at the first
    visit after it, so it is a multiple of ``interval`` in effect (the server's 120 s of 60 s).
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


class _Claim:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class PushWatch:
    """Whether something was pushed to a client while its login had not registered it yet
    (``ConnectionRegistry.watch_pushes``)."""

    __slots__ = ("missed",)

    def __init__(self) -> None:
        self.missed = False


class ConnectionRegistry:
    def __init__(
        self,
        ping_interval: float = 60.0,
        ping_timeout: float = 120.0,
        limits: AgentLimits | None = None,
    ) -> None:
        limits = limits or AgentLimits()
        #: Logins in progress; a connection waits for a slot before its challenge is sent.
        self.handshakes = asyncio.Semaphore(limits.max_handshakes)
        #: New clients a second (one bucket for the frontend process, whatever the source).
        self.enrollments = TokenBucket(limits.enrollments_per_second, limits.enrollment_burst)
        self._connections: dict[str, Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._claims: dict[str, _Claim] = {}
        self._watches: dict[str, list[PushWatch]] = {}
        self.accepting = True
        self.keepalive = Keepalive(ping_interval, ping_timeout)

    def __len__(self) -> int:
        return len(self._connections)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._connections

    def get(self, client_id: str) -> Connection | None:
        return self._connections.get(client_id)

    @contextlib.asynccontextmanager
    async def claim(self, client_id: str) -> AsyncIterator[None]:
        """Held while a connection checks for a duplicate of ``client_id`` and registers, so
        two connections with one id cannot both find the other absent. The lock exists while
        someone holds or waits for it, not for the connection's life."""
        claim = self._claims.get(client_id)
        if claim is None:
            claim = self._claims[client_id] = _Claim()
        claim.users += 1
        try:
            async with claim.lock:
                yield
        finally:
            claim.users -= 1
            if claim.users == 0:
                del self._claims[client_id]

    @contextlib.contextmanager
    def watch_pushes(self, client_id: str) -> Iterator[PushWatch]:
        """Note pushes to ``client_id`` that find it not connected here while a login runs:
        a login that enrolled the client knows its tasks without reading them, unless one
        came meanwhile (then it reads them, as every other login does)."""
        watch = PushWatch()
        self._watches.setdefault(client_id, []).append(watch)
        try:
            yield watch
        finally:
            watches = self._watches[client_id]
            watches.remove(watch)
            if not watches:
                del self._watches[client_id]

    def missed(self, client_id: str) -> None:
        """A push or a delivery notice for ``client_id`` found it not connected here."""
        for watch in self._watches.get(client_id, ()):
            watch.missed = True

    def add(self, connection: Connection) -> None:
        replaced = connection.client_id in self._connections
        self._connections[connection.client_id] = connection
        if not replaced:
            AGENTS_CONNECTED.inc()

    def remove(self, connection: Connection) -> None:
        if self._connections.get(connection.client_id) is connection:
            del self._connections[connection.client_id]
            AGENTS_CONNECTED.dec()

    def client_ids(self) -> list[str]:
        return list(self._connections)

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a background task (a connection's handler) until it finishes by itself."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send(self, client_id: str, payload: bytes) -> bool:
        """Push to the agent if it is connected here; False if it is not (it will get the
        task when it next connects)."""
        connection = self._connections.get(client_id)
        if connection is None:
            self.missed(client_id)
            return False
        try:
            await connection.send(payload)
        except Exception as exc:  # its handler notices and cleans up
            log.info("push to %s failed: %s", client_id, exc)
            return False
        return True

    async def shutdown(self, timeout: float = 10.0, spread: float = 0.0) -> None:
        """Stop accepting and drain every connection (each closes once what it is storing is
        stored and acknowledged), then wait for their handlers; what is left ``timeout``
        seconds after the start is cancelled. With ``spread``, connections close in up to
        ``DRAIN_BATCHES`` batches over about that many seconds, jittered, so their agents
        reconnect elsewhere a few at a time rather than all at once."""
        self.accepting = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        spread = min(spread, timeout / 2)
        draining: set[Connection] = set()
        closing: list[asyncio.Task[None]] = []
        while waiting := [c for c in self._connections.values() if c not in draining]:
            # Logins in progress when accepting stopped register afterwards: the loop takes
            # them too.
            size = max(1, math.ceil(len(waiting) / DRAIN_BATCHES)) if spread else len(waiting)
            for start in range(0, len(waiting), size):
                if start and spread:
                    pause = spread * size / len(waiting) * _random.uniform(0.5, 1.5)
                    await asyncio.sleep(max(0.0, min(pause, deadline - loop.time())))
                batch = waiting[start : start + size]
                draining.update(batch)
                closing += [
                    asyncio.create_task(c.drain(1001, "server shutting down")) for c in batch
                ]
            spread = 0.0  # latecomers: at once
        if closing:
            await asyncio.wait(closing, timeout=max(0.1, deadline - loop.time()))
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=max(0.1, deadline - loop.time()))
            for task in pending:
                task.cancel()
        for task in closing:
            task.cancel()
        await self.keepalive.stop()
