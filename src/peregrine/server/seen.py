"""Batched "last seen" writes: one datastore transaction for many agent contacts.

Every connection and disconnection notes when and from where its client was last seen. Written
one by one, that is one serialized, synced commit per connection, which bounded a frontend to a
few hundred connections a second. Here contacts wait in a dict while the previous batch is
being written, and the next batch takes them all (group commit): at low rates each is written
at once, at high rates a batch holds thousands. Last-seen is informational; a batch lost in a
crash is rewritten at the client's next contact. While the datastore is away, contacts are
kept (the latest per client) and written when it answers, with one warning each way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from peregrine.datastore import DatastoreUnavailable
from peregrine.services.outage import OutageLog

log = logging.getLogger(__name__)

#: Seconds between tries while the datastore is away.
RETRY_SECONDS = 1.0


class SeenStore(Protocol):
    def seen_many(self, contacts: list[tuple[str, float, str | None]]) -> None: ...


class SeenWriter:
    def __init__(self, store: SeenStore) -> None:
        self._store = store
        self._pending: dict[str, tuple[float, str | None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._outage = OutageLog(log, "last-seen writer")

    def note(self, client_id: str, now: float, address: str | None) -> None:
        """Record a contact; written with the next batch (the latest contact per client)."""
        self._pending[client_id] = (now, address)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            if self._closing:
                return
            if self._outage.down:
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()

    async def flush(self) -> None:
        """Write everything noted so far."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        contacts = [(client_id, now, address) for client_id, (now, address) in batch.items()]
        try:
            await asyncio.to_thread(self._store.seen_many, contacts)
        except DatastoreUnavailable as exc:
            self._pending = {**batch, **self._pending}  # kept; a newer contact wins
            self._outage.failed(exc)
        except Exception:
            log.exception("could not record %d client contacts", len(contacts))
        else:
            self._outage.passed()

    async def close(self) -> None:
        """Write what is left, then stop (a batch being written is waited for, not cut)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()
