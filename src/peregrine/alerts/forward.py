"""Forwarding raised alerts out of Peregrine: each sink has a bounded queue and one task.

An alert is handed to every sink without waiting (``Forwarding.submit``); a sink that cannot
keep up drops the newest alerts and counts them (``dropped``) rather than grow without bound or
slow the rules. Only alerts this frontend newly stored are submitted, so each is forwarded once
in the fleet; one raised just before a crash is stored but may not be forwarded (the API and
``peregrine alerts list`` still show it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from peregrine.datastore.alerts import AlertRecord
from peregrine.metrics.instruments import ALERTS_FORWARDED

log = logging.getLogger(__name__)


def alert_document(alert: AlertRecord) -> dict[str, Any]:
    """An alert as JSON: what the API returns and every sink sends."""
    return dataclasses.asdict(alert)


class Sink(ABC):
    """One destination: a bounded queue drained by one task calling ``deliver``."""

    name = "sink"

    def __init__(self, queue_size: int) -> None:
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"alerts-{self.name}")

    def submit(self, document: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(document)
        except asyncio.QueueFull:
            self.dropped += 1
            ALERTS_FORWARDED.labels(destination=self.name, outcome="dropped").inc()
            log.warning(
                "alert %s not sent to %s: its queue is full", document["alert_id"], self.name
            )

    async def drain(self) -> None:
        """Wait until every alert submitted so far was delivered or given up."""
        await self._queue.join()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.shut()

    async def _run(self) -> None:
        while True:
            document = await self._queue.get()
            try:
                await self.deliver(document)
                self.delivered += 1
                ALERTS_FORWARDED.labels(destination=self.name, outcome="sent").inc()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed += 1
                ALERTS_FORWARDED.labels(destination=self.name, outcome="failed").inc()
                log.warning("alert %s not sent to %s: %s", document["alert_id"], self.name, exc)
            finally:
                self._queue.task_done()

    @abstractmethod
    async def deliver(self, document: dict[str, Any]) -> None:
        """Send one alert, retrying as the sink sees fit; raise when it gives up."""

    async def shut(self) -> None:
        """Release what the sink holds (connections, files)."""
        return None


class Forwarding:
    """Every configured sink."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def submit(self, alert: AlertRecord) -> None:
        document = alert_document(alert)
        for sink in self.sinks:
            sink.submit(document)

    async def drain(self) -> None:
        await asyncio.gather(*(sink.drain() for sink in self.sinks))

    async def close(self) -> None:
        await asyncio.gather(*(sink.close() for sink in self.sinks))
