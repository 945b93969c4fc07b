"""This process's clients coming and going, told to the other frontend processes in batches.

One bus notice per connection and disconnection flooded the Unix datagram bus when tens of
thousands of agents connected at once (83,000 notices dropped in a 50,000-agent run). Changes
now wait a moment in a dict (the latest state of each client wins) and go out as a few notices
listing many clients. The full ``presence`` list every few seconds still corrects anything lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

#: Seconds changes wait to be sent together.
PRESENCE_BATCH_SECONDS = 0.2
#: Client ids per notice (client ids are 18 bytes: well under a datagram's limit).
IDS_PER_NOTICE = 2000

Publish = Callable[[dict[str, Any]], Awaitable[None]]


class PresenceAnnouncer:
    def __init__(self, publish: Publish, interval: float = PRESENCE_BATCH_SECONDS) -> None:
        self._publish = publish
        self._interval = interval
        self._changes: dict[str, bool] = {}
        self._task: asyncio.Task[None] | None = None

    def online(self, client_id: str) -> None:
        self._note(client_id, True)

    def offline(self, client_id: str) -> None:
        self._note(client_id, False)

    def _note(self, client_id: str, online: bool) -> None:
        self._changes[client_id] = online
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._send_soon())

    async def _send_soon(self) -> None:
        await asyncio.sleep(self._interval)
        await self.flush()

    async def flush(self) -> None:
        """Send every change noted so far."""
        changes, self._changes = self._changes, {}
        for kind, state in (("online", True), ("offline", False)):
            clients = [client_id for client_id, now in changes.items() if now is state]
            for start in range(0, len(clients), IDS_PER_NOTICE):
                try:
                    await self._publish(
                        {"kind": kind, "clients": clients[start : start + IDS_PER_NOTICE]}
                    )
                except Exception:
                    log.exception("could not announce %d clients %s", len(clients), kind)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.flush()
