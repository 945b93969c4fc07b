"""After the bus was away: do what the notices dropped meanwhile would have done.

Notices between frontends are best-effort (``bus.py``). While Redis is unreachable a frontend
keeps serving its agents, but a "deliver" for a client it holds (a collection made through
another frontend's API), a hunt started elsewhere or a client relabelled elsewhere never
reaches it. The datastore holds all of that, so once the bus is back each frontend reads it
again: the pending tasks of the clients it holds are sent, the client index is read again,
and the running hunts are pushed again to the clients it holds (a client is scheduled at most
once, a datastore guarantee). A frontend is told by its own bus and by a ``resync`` notice
from any frontend that dropped notices (its own link may have been the one cut). A notice
that arrived while PostgreSQL was away, and what follows a finished flow (an interrogation's
facts) when it went away then, ask for a pass too (tried again every few seconds until the
datastore answers). Requests that come together are run as one pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed

from peregrine.datastore import DatastoreUnavailable
from peregrine.server.session import AgentSession
from peregrine.services.outage import OutageLog

if TYPE_CHECKING:
    from peregrine.server.app import Server

log = logging.getLogger(__name__)

#: Seconds a request waits for others (every frontend reconnects and asks at about once).
SETTLE_SECONDS = 1.0
#: Seconds before a pass that failed (the datastore away too) is tried again.
RETRY_SECONDS = 5.0


class Resync:
    """Re-reads, from the datastore, the work that bus notices would have announced."""

    def __init__(self, server: Server, settle: float = SETTLE_SECONDS) -> None:
        self.server = server
        self.settle = settle
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Passes completed (for the tests and the log).
        self.passes = 0

    def request(self) -> None:
        """Ask for a pass soon (several requests close together make one)."""
        self._wanted.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        outage = OutageLog(log, "resync")
        while True:
            await self._wanted.wait()
            await asyncio.sleep(self.settle)
            self._wanted.clear()
            try:
                await self.once()
            except DatastoreUnavailable as exc:  # away too: tried again until it answers
                outage.failed(exc)
                await asyncio.sleep(RETRY_SECONDS)
                self._wanted.set()
            except Exception as exc:  # a bug: its traceback, and the next request tries again
                outage.failed(exc)
            else:
                outage.passed()

    async def once(self) -> None:
        """One pass: pending tasks of the clients held here, the client index, hunts."""
        server = self.server
        held = server.held_here()
        waiting = await asyncio.to_thread(server.datastore.tasks.waiting, held)
        for client_id in waiting:
            session = server.connections.get(client_id)
            if isinstance(session, AgentSession):
                with contextlib.suppress(ConnectionClosed):  # it left: it gets them next time
                    await session.deliver_pending()
        await server.services.load_client_index()
        await server.hunts.load()
        self.passes += 1
        log.warning(
            "resync: pending work read again from the datastore; sent to %d of the %d "
            "client(s) held here",
            len(waiting),
            len(held),
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
