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
import time
from concurrent.futures import ThreadPoolExecutor

from peregrine.events.stream import EventBatch
from peregrine.filestore import StorageFull
from peregrine.protocol.messages import EventRows, EventStatus
from peregrine.services.event_monitoring import EventMonitoring

#: Threads writing event files (they wait in fsync most of the time).
FILE_THREADS = 8


class EventIngestor:
    def __init__(self, monitoring: EventMonitoring) -> None:
        self.monitoring = monitoring
        self._files = ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="peregrine-events")

    def close(self) -> None:
        self._files.shutdown(wait=True)

    async def store(
        self, client_id: str, batches: list[EventRows]
    ) -> tuple[int, StorageFull | None]:
        """Store and publish ``batches`` in order; how many were stored (the first ones), and
        the error that stopped the rest if the filestore is full."""
        loop = asyncio.get_running_loop()
        placed, full = await loop.run_in_executor(self._files, self._write, client_id, batches)
        stored = len(placed)
        received = time.time()
        hostname, labels = self.monitoring.describe(client_id)
        for batch in batches[:stored]:
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
        new = [(batch, *where) for batch, where in zip(batches, placed, strict=False) if where]
        await self.monitoring.tell_followers_elsewhere(client_id, new)
        return stored, full

    def _write(
        self, client_id: str, batches: list[EventRows]
    ) -> tuple[list[tuple[str, int] | None], StorageFull | None]:
        """Each batch's place (None: stored before), up to the first the disk refused."""
        files = self.monitoring.files
        placed: list[tuple[str, int] | None] = []
        for batch in batches:
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
