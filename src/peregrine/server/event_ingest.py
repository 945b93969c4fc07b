"""Store what agents send of their event artifacts, then publish it.

A run of ``EventRows`` is written to the filestore in a file thread (each batch durable, and
ignored when its ``seq`` is there already), then each batch is published on the process's
``EventStream`` and only then acknowledged (``Ack(stream, seq)``): a subscriber never sees an
event a crash could still lose. A batch sent again after a lost acknowledgement is published
again (at least once; ``EventBatch`` names each event for good, so consumers can tell).
Statuses (``EventStatus``) go into the datastore through the group commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from peregrine.events.stream import EventBatch
from peregrine.filestore import StorageFull
from peregrine.protocol.messages import EventRows, EventStatus
from peregrine.services.event_monitoring import EventMonitoring

log = logging.getLogger(__name__)

#: Threads writing event files (they wait in fsync most of the time).
FILE_THREADS = 8
#: The place of a batch that was not stored at all (an artifact the server does not know).
DROPPED = ("", -1)


class EventIngestor:
    def __init__(self, monitoring: EventMonitoring) -> None:
        self.monitoring = monitoring
        self._files = ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="peregrine-events")
        #: Rows dropped because their artifact is not an event artifact here.
        self.dropped = 0

    def close(self) -> None:
        self._files.shutdown(wait=True)

    async def store(
        self, client_id: str, batches: list[EventRows]
    ) -> tuple[int, StorageFull | None]:
        """Store and publish ``batches`` in order; how many were stored (the first ones), and
        the error that stopped the rest if the filestore is full. A batch of an artifact that
        is not an event artifact here is dropped (and counts as done: the agent may forget it),
        so an agent cannot make folders and files under made-up names."""
        loop = asyncio.get_running_loop()
        placed, full = await loop.run_in_executor(self._files, self._write, client_id, batches)
        stored = len(placed)
        received = time.time()
        hostname, labels = self.monitoring.describe(client_id)
        for batch, where in zip(batches, placed, strict=False):
            if where is DROPPED:
                continue
            self.monitoring.publish(
                EventBatch(
                    client_id=client_id,
                    artifact=batch.artifact,
                    source=batch.source,
                    first_seq=batch.seq,
                    rows=[dict(zip(batch.columns, row, strict=True)) for row in batch.rows],
                    received=received,
                    hostname=hostname,
                    labels=labels,
                )
            )
        new = [
            (batch, *where)
            for batch, where in zip(batches, placed, strict=False)
            if where is not None and where is not DROPPED
        ]
        await self.monitoring.tell_followers_elsewhere(client_id, new)
        return stored, full

    def _write(
        self, client_id: str, batches: list[EventRows]
    ) -> tuple[list[tuple[str, int] | None], StorageFull | None]:
        """Each batch's place (None: stored before), up to the first the disk refused."""
        files = self.monitoring.files
        placed: list[tuple[str, int] | None] = []
        for batch in batches:
            if not self.monitoring.is_event_artifact(batch.artifact):
                self.dropped += len(batch.rows)
                log.warning("dropped %d rows of %s from %s: not an event artifact here",
                            len(batch.rows), batch.artifact[:200], client_id)  # fmt: skip
                placed.append(DROPPED)
                continue
            try:
                placed.append(
                    files.append(
                        client_id, batch.artifact, batch.source, batch.seq, batch.time,
                        batch.columns, batch.rows,
                    )
                )  # fmt: skip
            except StorageFull as exc:
                return placed, exc
        return placed, None

    async def status(self, client_id: str, status: EventStatus) -> None:
        await self.monitoring.record_status(client_id, status)
