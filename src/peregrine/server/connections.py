"""The frontend's live agent connections, in one place, with one way to shut them all down.

Each connection registers itself when its agent is authenticated and removes itself when it
ends, so ``get(client_id)`` is always the agent's current connection (what the collection service
pushes requests to) and ``shutdown()`` can stop them all: close with a time-out, then cancel.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Connection(Protocol):
    client_id: str
    address: str | None

    async def send(self, payload: bytes) -> None: ...

    async def alive(self, timeout: float) -> bool: ...

    async def close(self, code: int, reason: str) -> None: ...


class ConnectionRegistry:
    def __init__(self) -> None:
        self._connections: dict[str, Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._claims: dict[str, asyncio.Lock] = {}
        self.accepting = True

    def __len__(self) -> int:
        return len(self._connections)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._connections

    def get(self, client_id: str) -> Connection | None:
        return self._connections.get(client_id)

    def claim(self, client_id: str) -> asyncio.Lock:
        """Held while a connection checks for a duplicate of ``client_id`` and registers, so
        two connections with one id cannot both find the other absent."""
        return self._claims.setdefault(client_id, asyncio.Lock())

    def add(self, connection: Connection) -> None:
        self._connections[connection.client_id] = connection

    def remove(self, connection: Connection) -> None:
        if self._connections.get(connection.client_id) is connection:
            del self._connections[connection.client_id]
            lock = self._claims.get(connection.client_id)
            if lock is not None and not lock.locked():
                del self._claims[connection.client_id]

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
            return False
        try:
            await connection.send(payload)
        except Exception as exc:  # its handler notices and cleans up
            log.info("push to %s failed: %s", client_id, exc)
            return False
        return True

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Stop accepting, close every connection, wait up to ``timeout``, then cancel."""
        self.accepting = False
        connections = list(self._connections.values())
        await asyncio.gather(
            *(c.close(1001, "server shutting down") for c in connections),
            return_exceptions=True,
        )
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
