"""The bus between frontend processes of one server: small notices, delivered best-effort.

A collection created by the API in one process is for a client whose connection may be held by
another: the request is stored first (a task), then a ``deliver`` notice tells whichever process
holds the client to send its pending tasks. Notices carry no state of their own — the datastore
is the truth — so a lost notice only delays (the client gets its tasks at its next check-in).

``LocalBus``: one process, nothing to send. ``UnixBus``: processes on one host, one Unix
datagram socket each in a shared directory. ``RedisBus`` (``bus_redis.py``, imported only when
configured): frontends on several hosts. All three are a ``Bus``; ``cluster.make_bus`` picks one.
A notice may be addressed to one frontend (``to``, its ``name``); buses that cannot address
send it to everyone, which is always correct since a frontend ignores what is not for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from peregrine.metrics.instruments import BUS_PUBLISH_SECONDS

log = logging.getLogger(__name__)
BUS_PUBLISH_UNIX = BUS_PUBLISH_SECONDS.labels(bus="unix")

Handler = Callable[[dict[str, Any]], Awaitable[None]]
MAX_NOTICE_BYTES = 60_000
#: The notice a bus that dropped notices hands everyone once it works again (``resync.py``).
RESYNC = "resync"
#: Dropped notices are reported at most this often (with how many).
DROP_REPORT_SECONDS = 10.0


class Bus(Protocol):
    """What a frontend needs of the bus between frontends."""

    @property
    def workers(self) -> int:
        """Frontend processes of this server on this host."""

    @property
    def name(self) -> str:
        """This frontend's name on the bus (the ``from`` of its notices, others' ``to``)."""

    @property
    def shared(self) -> bool:
        """Whether other frontends may be listening (no point publishing otherwise)."""

    @property
    def healthy(self) -> bool:
        """False while notices cannot be sent or received."""

    @property
    def degraded_reason(self) -> str | None:
        """Why the bus is not healthy (for the log and the server's status)."""

    async def start(self, handler: Handler) -> None: ...

    async def publish(self, notice: dict[str, Any], to: str | None = None) -> None: ...

    async def close(self) -> None: ...


class LocalBus:
    """A single process: every notice would only reach itself, so nothing is sent."""

    workers = 1
    name = "local"
    shared = False
    healthy = True
    degraded_reason: str | None = None

    async def start(self, handler: Handler) -> None:
        return None

    async def publish(self, notice: dict[str, Any], to: str | None = None) -> None:
        return None

    async def close(self) -> None:
        return None


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.tasks: set[asyncio.Task[None]] = set()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            notice = json.loads(data)
        except ValueError:
            log.warning("bus: ignoring a malformed notice")
            return
        if isinstance(notice, dict):
            task = asyncio.get_running_loop().create_task(self._handle(notice))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _handle(self, notice: dict[str, Any]) -> None:
        try:
            await self.handler(notice)
        except Exception:
            log.exception("bus: handling %s failed", notice.get("kind"))


class UnixBus:
    """Processes of one server on one host, each with a datagram socket in ``directory``.
    Notices go to every process (``to`` is not used: each is one ``sendto``)."""

    shared = True
    healthy = True
    degraded_reason: str | None = None

    def __init__(self, directory: Path, workers: int) -> None:
        self.directory = directory
        self.workers = workers
        self.name = str(os.getpid())
        self.path = directory / f"w-{os.getpid()}.sock"
        self._transport: asyncio.DatagramTransport | None = None
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._peers: list[Path] = []
        self._peers_listed: int | None = None  # the directory's mtime when listed
        self._dropped = 0
        self._drop_reported = float("-inf")

    async def start(self, handler: Handler) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path.unlink(missing_ok=True)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(handler), local_addr=str(self.path), family=socket.AF_UNIX
        )
        self._transport = transport
        self.path.chmod(0o600)

    async def publish(self, notice: dict[str, Any], to: str | None = None) -> None:
        data = json.dumps({**notice, "from": self.name}).encode()
        if len(data) > MAX_NOTICE_BYTES:
            raise ValueError(f"a bus notice of {len(data)} bytes is too large")
        with BUS_PUBLISH_UNIX.time():
            self._send(data)

    def _send(self, data: bytes) -> None:
        for peer in self._current_peers():
            try:
                self._sender.sendto(data, str(peer))
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    peer.unlink()  # a process that is gone
                self._peers_listed = None
            except BlockingIOError:
                self._report_drop(peer)

    def _current_peers(self) -> list[Path]:
        """The other processes' sockets, listed again only when the directory changed (a
        listing per notice cost more than the notice)."""
        try:
            changed = self.directory.stat().st_mtime_ns
        except OSError:
            changed = None
        if changed is None or changed != self._peers_listed:
            self._peers = [p for p in self.directory.glob("w-*.sock") if p != self.path]
            self._peers_listed = changed
        return self._peers

    def _report_drop(self, peer: Path) -> None:
        """Count a notice the peer had no room for; warn at most every few seconds."""
        self._dropped += 1
        now = time.monotonic()
        if now - self._drop_reported >= DROP_REPORT_SECONDS:
            log.warning("bus: %s is not keeping up; %d notice(s) dropped", peer.name, self._dropped)
            self._dropped, self._drop_reported = 0, now

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._sender.close()
        self.path.unlink(missing_ok=True)
