"""Batched last-seen writes: contacts noted while a batch is written go in the next one."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from peregrine.datastore import DatastoreUnavailable
from peregrine.server.seen import SeenWriter
from tests.server.harness import wait_until


class SlowStore:
    """Records each batch; the first write blocks until released, so contacts pile up."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, float, str | None]]] = []
        self.release = threading.Event()

    def seen_many(self, contacts: list[tuple[str, float, str | None]]) -> None:
        self.batches.append(list(contacts))
        if len(self.batches) == 1:
            self.release.wait(10)


def test_contacts_noted_during_a_write_go_in_one_batch_latest_per_client() -> None:
    async def scenario() -> SlowStore:
        store = SlowStore()
        writer = SeenWriter(store)
        writer.note("C.1", 1.0, "a")
        await asyncio.sleep(0.05)  # the first batch is being written (and blocks)
        for n in range(100):
            writer.note(f"C.{n % 10}", 2.0 + n, None)
        store.release.set()
        await writer.close()
        return store

    store = asyncio.run(scenario())
    assert store.batches[0] == [("C.1", 1.0, "a")]
    assert len(store.batches) == 2
    assert sorted(store.batches[1]) == sorted((f"C.{k}", 92.0 + k, None) for k in range(10))


def test_close_writes_what_is_pending() -> None:
    async def scenario() -> SlowStore:
        store = SlowStore()
        store.release.set()
        writer = SeenWriter(store)
        writer.note("C.1", 1.0, None)
        await writer.close()
        return store

    assert asyncio.run(scenario()).batches == [[("C.1", 1.0, None)]]


class AwayStore:
    """A datastore that does not answer until ``back`` is set (an outage), then records."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, float, str | None]]] = []
        self.back = threading.Event()
        self.refused = 0

    def seen_many(self, contacts: list[tuple[str, float, str | None]]) -> None:
        if not self.back.is_set():
            self.refused += 1
            raise DatastoreUnavailable("the datastore (db) does not answer")
        self.batches.append(list(contacts))


def test_contacts_wait_out_a_datastore_outage_with_one_warning_each_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> AwayStore:
        store = AwayStore()
        writer = SeenWriter(store)
        writer.note("C.1", 1.0, "a")
        await asyncio.sleep(0.05)  # its batch failed; kept
        writer.note("C.1", 2.0, "b")
        writer.note("C.2", 3.0, None)
        await wait_until(lambda: store.refused >= 3, 10)
        store.back.set()
        await wait_until(lambda: store.batches, 10)
        await writer.close()
        return store

    with caplog.at_level(logging.WARNING, logger="peregrine.server.seen"):
        store = asyncio.run(scenario())
    assert store.batches == [[("C.1", 2.0, "b"), ("C.2", 3.0, None)]]  # nothing lost, latest
    said = [r.getMessage() for r in caplog.records if r.name == "peregrine.server.seen"]
    assert len(said) == 2, said
    assert "does not answer" in said[0] and "answers again" in said[1]
