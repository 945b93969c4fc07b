"""The agent listener's websocket: a stranger may send only a few bytes before logging in.

websockets buffers up to ``max_size`` (4 MiB) of a frame, and ``max_queue`` whole frames, before
the session reads any of it: hundreds of connections that never log in could each pin megabytes
for the whole handshake time-out. Until the session calls ``logged_in()``, every byte received
counts against ``handshake_bytes`` (the HTTP upgrade request too); past it the connection is
failed (close 1009) and what was not yet received is never buffered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode
from websockets.protocol import State

log = logging.getLogger(__name__)
#: What websockets logs about agent connections (its own logger, shared by all of them).
_WEBSOCKETS_LOG = logging.getLogger("websockets.server")


class FrameList(list[Any]):
    """What websockets' receive queue does with its deque (``append``, ``popleft``,
    ``extendleft``, ``len``), in a list: an empty deque keeps a 64-slot block (760 bytes) for
    the connection's life, and an idle agent's queue is empty; it seldom holds more than a
    few frames (websockets pauses reading at ``max_queue``)."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)

    def extendleft(self, items: Iterable[Any]) -> None:
        self[0:0] = reversed(list(items))


class AgentConnection(ServerConnection):
    # Our attributes in slots: websockets' own are some thirty, and past thirty an instance
    # dict stops sharing its keys with the class's other instances (1.5 KB more each).
    __slots__ = ("_arrival", "heard", "unauthenticated_budget")

    #: Bytes still allowed before login; None once logged in. Set per class by ``limited``.
    handshake_bytes = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unauthenticated_budget: int | None = self.handshake_bytes
        #: The agent sent something since the keepalive last looked (``protocol/keepalive.py``).
        self.heard = False
        # A frontend holds tens of thousands of these for months; websockets gives each its
        # own LoggerAdapter (with a dict and a weak proxy) and an empty deque (760 bytes) of
        # drain waiters, which it only appends to, removes from and iterates: a list does.
        self.protocol.logger = self.logger = _WEBSOCKETS_LOG
        self.drain_waiters = []  # type: ignore[assignment]
        #: Done when bytes next arrive or the connection is lost (see ``arrival``).
        self._arrival: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.recv_messages.frames.queue = FrameList()  # type: ignore[assignment]

    def forget_handshake(self) -> None:
        """Drop what websockets keeps of the opening handshake for the connection's life and
        never reads again once it is open (≈ 0.7 KB an agent): the request's headers (the
        request itself stays: websockets' parser holds it, and takes the first event of a
        connection whose request is None for the handshake), the response, and the future
        that waited for the request."""
        if self.request is not None:
            self.request.headers.clear()
        self.response = None
        self.request_rcvd = None  # type: ignore[assignment]

    def arrival(self) -> asyncio.Future[None] | None:
        """What an idle session awaits instead of ``recv()``: a future done when bytes next
        arrive or the connection is lost, or None when ``recv()`` will not wait for bytes (a
        frame is queued, or the connection is closing: ``recv()`` then says so). ``recv()``
        waiting keeps three coroutines and a future (≈ 0.6 KB) for an idle agent's life."""
        if len(self.recv_messages.frames) or self.protocol.state is not State.OPEN:
            return None
        if self._arrival is None or self._arrival.done():
            self._arrival = self.loop.create_future()
        return self._arrival

    def _arrived(self) -> None:
        arrival, self._arrival = self._arrival, None
        if arrival is not None and not arrival.done():
            arrival.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._arrived()

    def logged_in(self) -> None:
        """The agent proved who it is: from now on only the frame size limit applies."""
        self.unauthenticated_budget = None

    def data_received(self, data: bytes) -> None:
        self.heard = True
        budget = self.unauthenticated_budget
        if budget is not None:
            budget -= len(data)
            self.unauthenticated_budget = budget
            if budget < 0:
                self.unauthenticated_budget = None  # fail once, then discard as websockets does
                log.warning(
                    "closing the connection from %s: over %d bytes before login",
                    self.remote_address, self.handshake_bytes,
                )  # fmt: skip
                self.protocol.fail(
                    CloseCode.MESSAGE_TOO_BIG,
                    f"over {self.handshake_bytes} bytes sent before login",
                )
                data = b""  # sends the close frame and EOF; the rest is never buffered
        super().data_received(data)
        if self._arrival is not None:
            self._arrived()


def limited(handshake_bytes: int) -> type[AgentConnection]:
    """An ``AgentConnection`` class with this budget (what ``serve(create_connection=)`` takes)."""
    return type("AgentConnection", (AgentConnection,), {"handshake_bytes": handshake_bytes})
