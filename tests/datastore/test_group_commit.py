"""Group commit: many store calls in one transaction, each atomic, each told only once durable."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from peregrine.datastore import (
    Datastore,
    FlowRecord,
    KeyMismatch,
    NotFound,
    database,
    open_datastore,
)

CLIENT = "C.00000000000000aa"


def flow(flow_id: str) -> FlowRecord:
    return FlowRecord(
        flow_id=flow_id,
        client_id=CLIENT,
        artifacts=[{"name": "Linux.Sys.Users", "parameters": {}}],
        request={},
        creator="alice",
        created=1.0,
        timeout=600.0,
        progress_timeout=120.0,
    )


class Gate:
    """A piece of work that holds the committer thread until opened."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self) -> str:
        self.entered.set()
        assert self.opened.wait(10), "the test never opened the gate"
        return "gate"


@pytest.fixture
def store(datastore: Datastore) -> Datastore:
    datastore.clients.enroll(CLIENT, b"key", 1.0)
    return datastore


def test_work_waiting_behind_a_batch_commits_together(store: Datastore) -> None:
    flows = [f"F.{n:016x}" for n in range(1, 201)]
    for flow_id in flows:
        store.collections.create(flow(flow_id))
    gate = Gate()
    first = store.group.submit(gate)
    assert gate.entered.wait(10)
    batches_before = store.group.batches
    pending = [
        store.group.submit(store.collections.apply, flow_id, seq, 2.0, rows=seq)
        for flow_id in flows
        for seq in (1, 2, 2)  # the repeated seq is a duplicate: not counted twice
    ]
    gate.opened.set()
    assert first.result(10) == "gate"
    results = [future.result(10) for future in pending]
    assert results == [True, True, False] * len(flows)
    # 600 calls queued while the writer was busy: they went in far fewer transactions.
    assert store.group.batches - batches_before <= 2
    for flow_id in flows:
        record = store.collections.get(flow_id)
        assert record is not None
        assert (record.rows, record.last_seq) == (3, 2)


def test_a_failing_piece_rolls_back_alone(store: Datastore) -> None:
    store.collections.create(flow("F.0000000000000001"))
    gate = Gate()
    store.group.submit(gate)
    assert gate.entered.wait(10)

    def counts_then_fails() -> None:
        store.collections.apply("F.0000000000000001", 1, 2.0, rows=5)
        raise RuntimeError("the piece failed after writing")

    before = store.group.submit(store.clients.enroll, "C.00000000000000bb", b"b", 2.0)
    failing = store.group.submit(counts_then_fails)
    unknown = store.group.submit(store.collections.apply, "F.00000000000000ff", 1, 2.0)
    mismatch = store.group.submit(store.clients.enroll, CLIENT, b"another key", 2.0)
    after = store.group.submit(store.clients.enroll, "C.00000000000000cc", b"c", 2.0)
    gate.opened.set()
    with pytest.raises(RuntimeError, match="failed after writing"):
        failing.result(10)
    with pytest.raises(NotFound):
        unknown.result(10)
    with pytest.raises(KeyMismatch):
        mismatch.result(10)
    assert before.result(10) is True and after.result(10) is True
    assert store.group.reruns == 1  # run once without savepoints, then again with them
    record = store.collections.get("F.0000000000000001")
    assert record is not None and (record.rows, record.last_seq) == (0, 0)
    assert store.clients.get("C.00000000000000bb") is not None
    assert store.clients.get("C.00000000000000cc") is not None


def test_a_result_is_given_only_after_the_commit(store: Datastore) -> None:
    """A piece that is done is not reported until its whole batch is durable."""
    hold = Gate()
    store.group.submit(hold)
    assert hold.entered.wait(10)
    enrolled = store.group.submit(store.clients.enroll, "C.00000000000000dd", b"d", 2.0)
    later = Gate()
    store.group.submit(later)
    hold.opened.set()
    assert later.entered.wait(10)  # same batch as the enrollment, which has run
    assert not enrolled.done()
    assert store.clients.get("C.00000000000000dd") is None  # not visible outside the batch
    later.opened.set()
    assert enrolled.result(10) is True
    assert store.clients.get("C.00000000000000dd") is not None


def test_reads_inside_a_batch_see_its_earlier_changes(store: Datastore) -> None:
    gate = Gate()
    store.group.submit(gate)
    assert gate.entered.wait(10)
    store.group.submit(store.clients.enroll, "C.00000000000000ee", b"e", 2.0)
    seen = store.group.submit(store.clients.get, "C.00000000000000ee")
    gate.opened.set()
    record = seen.result(10)
    assert record is not None and record.public_key == b"e"


def test_many_threads_at_once_lose_nothing(store: Datastore) -> None:
    futures: list[Future[Any]] = []
    lock = threading.Lock()

    def submitter(offset: int) -> None:
        for n in range(50):
            enroll = store.group.submit(
                store.clients.enroll, f"C.{offset * 100 + n + 1:016x}", b"k", 2.0
            )
            with lock:
                futures.append(enroll)

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(future.result(10) is True for future in futures)
    assert len(store.clients.all_for_index("", 10_000)) == 1 + 8 * 50


def test_close_commits_queued_work_then_refuses_more(datastore_url: str) -> None:
    datastore = open_datastore(datastore_url)
    gate = Gate()
    datastore.group.submit(gate)
    assert gate.entered.wait(10)
    queued = [
        datastore.group.submit(datastore.clients.enroll, f"C.{n:016x}", b"k", 1.0)
        for n in range(20)
    ]
    closer = threading.Thread(target=datastore.close)
    closer.start()
    gate.opened.set()
    closer.join(10)
    assert all(future.result(0) is True for future in queued)
    with pytest.raises(RuntimeError, match="closed"):
        datastore.group.submit(datastore.clients.get, CLIENT)
    reopened = open_datastore(datastore_url)
    try:
        assert len(reopened.clients.all_for_index("", 100)) == 20
    finally:
        reopened.close()


def test_coroutines_are_answered_after_the_commit(store: Datastore) -> None:
    async def enroll_many() -> list[bool]:
        calls = [
            store.group.run(store.clients.enroll, f"C.{n + 4096:016x}", b"k", 2.0)
            for n in range(300)
        ]
        return await asyncio.gather(*calls)

    assert asyncio.run(enroll_many()) == [True] * 300
    assert len(store.clients.all_for_index(None, 1000)) == 301


def test_a_coroutine_gets_the_exception_of_its_piece(store: Datastore) -> None:
    async def enroll_twice() -> None:
        await store.group.run(store.clients.enroll, CLIENT, b"another key", 2.0)

    with pytest.raises(KeyMismatch):
        asyncio.run(enroll_twice())


class EnrollAll:
    """A fold: enrolls each item's client in one call; "bad" items fail alone, unstored."""

    def __init__(self, store: Datastore) -> None:
        self.store = store
        self.calls: list[list[str]] = []

    def __call__(self, items: list[str]) -> list[Any]:
        self.calls.append(list(items))
        return [
            ValueError(f"refused {item}")
            if item.startswith("bad")
            else self.store.clients.enroll(item, b"k", 2.0)
            for item in items
        ]


async def fold_behind_a_gate(store: Datastore, fold: EnrollAll, also: Any = None) -> list[Any]:
    """Queue ``fold``'s items (and ``also``, a piece) while a gate holds the committer, so
    they share one batch; then open it."""
    gate = Gate()
    store.group.submit(gate)
    assert gate.entered.wait(10)
    items = ["C.00000000000000b1", "bad one", "C.00000000000000b2"]
    waiting = [asyncio.ensure_future(store.group.run_together(fold, item)) for item in items]
    await asyncio.sleep(0)  # each has queued its item
    extra = store.group.submit(also) if also is not None else None
    gate.opened.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    if extra is not None:
        with pytest.raises(RuntimeError):
            extra.result(10)
    return results


def test_folded_work_is_one_call_and_an_item_fails_alone(store: Datastore) -> None:
    fold = EnrollAll(store)
    results = asyncio.run(fold_behind_a_gate(store, fold))
    assert fold.calls == [["C.00000000000000b1", "bad one", "C.00000000000000b2"]]
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], ValueError)
    assert store.group.reruns == 0  # an item's own failure does not run the batch again
    assert store.clients.get("C.00000000000000b1") is not None


def test_folded_work_runs_item_by_item_when_another_piece_fails(store: Datastore) -> None:
    fold = EnrollAll(store)

    def fails() -> None:
        raise RuntimeError("another piece failed")

    results = asyncio.run(fold_behind_a_gate(store, fold, also=fails))
    assert fold.calls == [
        ["C.00000000000000b1", "bad one", "C.00000000000000b2"],  # rolled back
        ["C.00000000000000b1"], ["bad one"], ["C.00000000000000b2"],  # each in a savepoint
    ]  # fmt: skip
    assert store.group.reruns == 1
    assert results[0] is True and results[2] is True  # the rolled-back try left nothing
    assert isinstance(results[1], ValueError)
    assert store.clients.get("C.00000000000000b2") is not None


def test_a_batch_waits_out_another_process_holding_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer (here a plain sqlite3 connection, as another frontend process would be)
    keeps the lock past the busy time-out: the batch is retried, not failed."""
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "busy.db"
    datastore = open_datastore(f"sqlite:///{path}")
    try:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        pending = datastore.group.submit(datastore.clients.enroll, CLIENT, b"k", 1.0)
        time.sleep(1.0)  # several busy time-outs
        assert not pending.done()
        other.execute("ROLLBACK")
        other.close()
        assert pending.result(10) is True
        assert datastore.group.busy_retries >= 1
        assert datastore.clients.get(CLIENT) is not None
    finally:
        datastore.close()
