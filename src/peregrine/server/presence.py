"""Which clients are connected to which frontend: ``Presence``, and how it is shared.

Each frontend knows its own connections; ``Presence`` tells it about the others'
(``Server.online()``, ``is_online()``, and which frontend to address a delivery to). Two
implementations, chosen by ``cluster.make_presence``:

* ``BusPresence`` (one host, ``--workers N``): changes go out on the bus in batches, and a full
  list every few seconds corrects anything lost; a process whose list stops coming expires.
* ``RedisPresence`` (``presence_redis.py``, a cluster): each frontend's clients in a Redis set
  that lives only while the frontend keeps refreshing it, so one that dies drops out within
  seconds, however it died.

``PresenceAnnouncer`` does the batching: one bus notice per connection and disconnection
flooded the Unix datagram bus when tens of thousands of agents connected at once (83,000
notices dropped in a 50,000-agent run). Changes wait a moment in a dict (the latest state of
each client wins) and go out as a few notices listing many clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from peregrine.server.bus import Bus

log = logging.getLogger(__name__)

#: Seconds changes wait to be sent together.
PRESENCE_BATCH_SECONDS = 0.2
#: Client ids per notice (client ids are 18 bytes: well under a datagram's limit).
IDS_PER_NOTICE = 2000
#: How often frontend processes share who they hold, and when a silent one's list expires.
PRESENCE_INTERVAL = 3.0
PRESENCE_EXPIRY = 10.0
#: The bus notices ``BusPresence`` reads.
PRESENCE_KINDS = frozenset({"presence", "online", "offline"})

Publish = Callable[[dict[str, Any]], Awaitable[None]]
#: This frontend's clients now.
LocalClients = Callable[[], list[str]]
#: Called with clients newly seen on another frontend (perhaps enrolled there).
Appeared = Callable[[list[str]], Awaitable[None]]


class Presence(Protocol):
    """Connections told to the other frontends, and theirs as last heard."""

    def online(self, client_id: str) -> None:
        """A client connected here."""

    def offline(self, client_id: str) -> None:
        """A client left this frontend."""

    def remote(self) -> list[set[str]]:
        """The clients of each other frontend still alive (its last list)."""

    def holder(self, client_id: str) -> str | None:
        """The other frontend that holds the client, if known."""

    async def start(self, local: LocalClients, appeared: Appeared) -> None: ...

    async def on_notice(self, notice: dict[str, Any]) -> None:
        """A bus notice of one of ``PRESENCE_KINDS``."""

    async def close(self) -> None: ...


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


class BusPresence:
    """Presence shared on the bus (processes of one host): batched changes, plus each
    process's full list every ``PRESENCE_INTERVAL``; a list not refreshed within
    ``PRESENCE_EXPIRY`` is dropped (its process died or stopped talking)."""

    def __init__(self, bus: Bus, interval: float = PRESENCE_INTERVAL) -> None:
        self.bus = bus
        self.interval = interval
        self.announcer = PresenceAnnouncer(bus.publish)
        #: Clients of the other processes, by sender, and when each last sent its full list.
        self.remote_online: dict[str, set[str]] = {}
        self._seen: dict[str, float] = {}
        self._parts: dict[str, set[str]] = {}
        self._appeared: Appeared | None = None
        self._task: asyncio.Task[None] | None = None

    def online(self, client_id: str) -> None:
        self.announcer.online(client_id)

    def offline(self, client_id: str) -> None:
        self.announcer.offline(client_id)

    def remote(self) -> list[set[str]]:
        return [clients for _, clients in self._live()]

    def holder(self, client_id: str) -> str | None:
        return next((sender for sender, clients in self._live() if client_id in clients), None)

    def _live(self) -> list[tuple[str, set[str]]]:
        now = time.monotonic()
        return [
            (sender, clients)
            for sender, clients in self.remote_online.items()
            if now - self._seen.get(sender, 0) < PRESENCE_EXPIRY
        ]

    async def start(self, local: LocalClients, appeared: Appeared) -> None:
        self._appeared = appeared
        if self.bus.shared:
            self._task = asyncio.create_task(self._share(local))

    async def _share(self, local: LocalClients) -> None:
        """Every few seconds, the full list of clients held here: incremental notices may be
        lost (a process starting), and a process that died stops refreshing its list."""
        while True:
            clients = local()
            step = IDS_PER_NOTICE
            chunks = [clients[i : i + step] for i in range(0, len(clients), step)] or [[]]
            for n, chunk in enumerate(chunks):
                notice = {"kind": "presence", "clients": chunk, "last": n == len(chunks) - 1}
                try:
                    await self.bus.publish(notice)
                except Exception:
                    log.exception("could not share the presence list")
            await asyncio.sleep(self.interval)

    async def on_notice(self, notice: dict[str, Any]) -> None:
        kind, sender = notice.get("kind"), str(notice.get("from", ""))
        clients = [str(client) for client in notice.get("clients", [])]
        if kind == "presence":
            self._parts.setdefault(sender, set()).update(clients)
            if notice.get("last"):
                self.remote_online[sender] = self._parts.pop(sender)
                self._seen[sender] = time.monotonic()
        elif kind == "online":
            self.remote_online.setdefault(sender, set()).update(clients)
            if self._appeared is not None:
                await self._appeared(clients)
        elif kind == "offline":
            self.remote_online.get(sender, set()).difference_update(clients)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.announcer.close()
