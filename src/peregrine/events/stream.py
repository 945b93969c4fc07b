"""The in-process stream of event batches a frontend has just stored.

The ingest path publishes each batch once it is durable (stored and acknowledged to nobody yet
is not enough: a rule must never alert on an event that a crash could still lose, and never
twice for one event). Subscribers (alert rules, live followers) get every batch in the order it
was stored on this frontend. In a cluster each batch reaches exactly one frontend (the one its
agent is connected to), so a subscriber sees each event once across the cluster; what needs
the whole fleet's view (counts over many hosts) aggregates through the datastore or the bus.

A slow subscriber must not stall ingestion: ``publish`` hands the batch to each subscriber's
own bounded queue and drops (and counts) batches for a subscriber that is that far behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: Batches one subscriber may have waiting before newer ones are dropped for it.
SUBSCRIBER_BACKLOG = 1024


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Rows of one event source from one client, as stored.

    ``first_seq`` numbers the batch's first row in the client's stream of this artifact
    (row ``i`` is ``first_seq + i``): ``(client_id, artifact, source, seq)`` names one event
    for good, so a consumer that sees a batch again (redelivery after a crash) can tell.
    """

    client_id: str
    artifact: str
    source: str
    first_seq: int
    rows: list[dict[str, Any]]
    received: float  # server time (seconds since the epoch) the batch was stored
    hostname: str = ""
    labels: tuple[str, ...] = field(default=())


Subscriber = Callable[[EventBatch], Awaitable[None]]


class EventStream:
    """Fan-out of stored event batches to subscribers, each through its own queue."""

    def __init__(self, backlog: int = SUBSCRIBER_BACKLOG) -> None:
        self._backlog = backlog
        self._queues: dict[str, asyncio.Queue[EventBatch]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.dropped: dict[str, int] = {}

    def subscribe(self, name: str, subscriber: Subscriber) -> None:
        """Call ``subscriber`` for every batch published from now on (in a task of its own)."""
        if name in self._queues:
            raise ValueError(f"an event subscriber named {name!r} exists already")
        queue: asyncio.Queue[EventBatch] = asyncio.Queue(self._backlog)
        self._queues[name] = queue
        self.dropped[name] = 0
        self._tasks[name] = asyncio.get_running_loop().create_task(
            self._deliver(name, queue, subscriber), name=f"event-subscriber-{name}"
        )

    def unsubscribe(self, name: str) -> None:
        self._queues.pop(name, None)
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    def publish(self, batch: EventBatch) -> None:
        """Hand ``batch`` to every subscriber; never waits."""
        for name, queue in self._queues.items():
            try:
                queue.put_nowait(batch)
            except asyncio.QueueFull:
                self.dropped[name] += 1

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._queues.clear()
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(
        self, name: str, queue: asyncio.Queue[EventBatch], subscriber: Subscriber
    ) -> None:
        while True:
            batch = await queue.get()
            try:
                await subscriber(batch)
            except Exception:
                # One bad rule or follower must not stop the others or the stream.
                log.exception("event subscriber %s failed on %s", name, batch.client_id)
