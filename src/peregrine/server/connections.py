"""The frontend's live agent connections, in one place, with one way to shut them all down.

Each connection registers itself when its agent is authenticated and removes itself when it
ends, so ``get(client_id)`` is always the agent's current connection (what the collection service
pushes requests to) and ``shutdown()`` can stop them all: close with a time-out, then cancel.
``Keepalive`` (``protocol/keepalive.py``) pings every websocket of the frontend from one task.
Admission is here too: how many logins may be in progress at once (``handshakes``) and how fast
new clients may enroll (``enrollments``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

from peregrine.config.model import AgentLimits
from peregrine.metrics.instruments import AGENTS_CONNECTED
from peregrine.protocol.keepalive import Keepalive
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
        """Keep a connection's handler task until it ``untrack``s itself as it ends (so
        ``shutdown`` can wait for it); no done-callback list per idle connection."""
        self._tasks.add(task)

    def untrack(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)

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
