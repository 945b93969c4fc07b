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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.recv_messages.frames.queue = FrameList()  # type: ignore[assignment]

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


def limited(handshake_bytes: int) -> type[AgentConnection]:
    """An ``AgentConnection`` class with this budget (what ``serve(create_connection=)`` takes)."""
    return type("AgentConnection", (AgentConnection,), {"handshake_bytes": handshake_bytes})
