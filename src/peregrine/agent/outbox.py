"""Which spooled messages the agent sends now, and in which frames.

Every unacknowledged spooled message is sent once per connection, in order. To a server that
takes ``FlowBatch`` frames (its ``Welcome`` says so), consecutive messages go packed: a small
collection's start, rows, source status and end become one frame, stored as one run and
acknowledged by one ``Ack`` (about five frames before, each costing the server TLS records,
WebSocket framing and a trip through its event loop; a hunt over thousands of agents is made of
them). A collection's start is held back while it is the only message of its flow, for up to
``START_HOLD_SECONDS``, so a collection that ends within that time goes out whole; a longer one
sends its start then.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from peregrine.protocol.messages import EVENT_STREAM_PREFIX, pack_flow_messages

#: How long a collection's first message waits for the rest of a small collection.
START_HOLD_SECONDS = 1.0


class Spooled(Protocol):
    @property
    def flow_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def payload(self) -> bytes: ...


class Outbox:
    """The send state of one connection: what was sent, and starts held back."""

    def __init__(self, batches: bool, hold: float = START_HOLD_SECONDS) -> None:
        self.batches = batches
        self.hold = hold
        self._sent: set[tuple[str, int]] = set()
        self._held_since: dict[str, float] = {}  # flow -> when its lone start was first seen

    def resend_all(self) -> None:
        """The server dropped what it could not store: everything goes again."""
        self._sent.clear()

    def take(self, pending: Iterable[Spooled], now: float) -> tuple[list[bytes], int, float | None]:
        """The frames to send now, how many messages they hold (marked sent), and in how many
        seconds a held start is due (None: nothing held)."""
        fresh = [item for item in pending if (item.flow_id, item.seq) not in self._sent]
        counts: dict[str, int] = {}
        for item in fresh:
            counts[item.flow_id] = counts.get(item.flow_id, 0) + 1
        due: float | None = None
        out: list[Spooled] = []
        for item in fresh:
            flow = not item.flow_id.startswith(EVENT_STREAM_PREFIX)
            if self.batches and flow and item.seq == 1 and counts[item.flow_id] == 1:
                since = self._held_since.setdefault(item.flow_id, now)
                left = since + self.hold - now
                if left > 0:
                    due = left if due is None else min(due, left)
                    continue
            self._held_since.pop(item.flow_id, None)
            self._sent.add((item.flow_id, item.seq))
            out.append(item)
        if not self.batches:
            return [item.payload for item in out], len(out), due
        frames: list[bytes] = []
        run: list[bytes] = []  # consecutive flow messages, packed together
        for item in out:
            if item.flow_id.startswith(EVENT_STREAM_PREFIX):
                frames.extend(pack_flow_messages(run))
                run = []
                frames.append(item.payload)  # event rows go alone, in their place
            else:
                run.append(item.payload)
        frames.extend(pack_flow_messages(run))
        return frames, len(out), due
