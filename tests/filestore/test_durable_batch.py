"""Appends in a durable batch: invisible until the batch commits, then each stored once; a
failed commit leaves every result set at its last commit; a batch never waits for a lock while
holding others; a writer killed mid-batch loses only what was never committed."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peregrine.filestore import DurableBatch, Filestore, StorageFull

from .conftest import CLIENT, FLOW
from .test_disk_full import COLUMNS, WithoutFloor, fill, rows, small, snapshot

__all__ = ["small"]  # the tmpfs fixture, used here too

OTHER_FLOW = "F.00000000000000AA"


@pytest.fixture(params=["syncfs", "fsync"])
def batch_of(request: pytest.FixtureRequest) -> Iterator[type[DurableBatch]]:
    """Both ways a batch syncs: one syncfs per round, or an fsync per file and folder."""
    use_syncfs = request.param == "syncfs"

    class Batch(DurableBatch):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.use_syncfs = use_syncfs and DurableBatch(self.root).use_syncfs

    yield Batch


def numbers(store: Filestore, flow: str = FLOW) -> list[int]:
    count = store.row_count(CLIENT, flow, "A", "s")
    return [r["n"] for r in store.read_rows(CLIENT, flow, "A", "s", limit=count)]


def test_appends_are_visible_once_the_batch_commits(
    store: Filestore, batch_of: type[DurableBatch]
) -> None:
    batch = batch_of(store.root)
    try:
        assert store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, rows(0, 600), batch) > 0
        # The same result set again in the same batch, a duplicate, and another flow.
        assert store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, rows(600, 600), batch) > 0
        assert store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, rows(600, 600), batch) == 0
        store.append_rows(CLIENT, OTHER_FLOW, "A", "s", 1, COLUMNS, rows(0, 5), batch)
        store.append_logs(CLIENT, FLOW, 3, [{"message": "m"}], batch)
        assert store.row_count(CLIENT, FLOW, "A", "s") == 0  # nothing committed yet
        assert store.result_sets(CLIENT, FLOW) == []
        batch.commit()
        assert batch.syncs == 2
    finally:
        batch.close()
    assert numbers(store) == list(range(1200))  # crossed an index interval inside the batch
    assert numbers(store, OTHER_FLOW) == list(range(5))
    assert store.log_count(CLIENT, FLOW) == 1
    assert not list(store.flow_dir(CLIENT, FLOW).rglob("*.tmp"))
    # Committed: the resends are duplicates, in a batch or not.
    assert store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, rows(600, 600)) == 0
    again = store.batch()
    try:
        assert store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, rows(0, 600), again) == 0
        assert store.append_rows(CLIENT, FLOW, "A", "s", 4, COLUMNS, rows(1200, 1), again) > 0
        again.commit()
    finally:
        again.close()
    assert numbers(store) == list(range(1201))


def test_a_batch_syncs_the_parent_of_every_folder_it_made(
    store: Filestore, batch_of: type[DurableBatch]
) -> None:
    """A new folder survives a power loss only once its parent is synced: the batch must know
    every folder it made, whether made from the filestore's root or from a client's known
    ``flows`` folder."""
    flows = store.root / "clients" / CLIENT / "flows"
    first = batch_of(store.root)
    try:
        store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, rows(0, 1), first)
        # The root's, clients', client's, flows' and flow's entries are new.
        assert first._new_dirs == {
            str(folder) for folder in (store.root, flows.parent.parent, flows.parent, flows)
        } | {str(flows / FLOW)}
        first.commit()
    finally:
        first.close()
    second = batch_of(store.root)
    try:
        store.append_rows(CLIENT, OTHER_FLOW, "A", "s", 1, COLUMNS, rows(0, 1), second)
        assert second._new_dirs == {str(flows), str(flows / OTHER_FLOW)}
        second.commit()
    finally:
        second.close()
    assert numbers(store) == [0]
    assert numbers(store, OTHER_FLOW) == [0]


def test_a_client_whose_folders_went_away_is_written_again(store: Filestore) -> None:
    """The filestore remembers which clients have a ``flows`` folder; a client removed since
    (by this process or another sharing the filestore) is written from the root again."""
    store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, rows(0, 1))
    shutil.rmtree(store.root / "clients" / CLIENT)  # another frontend deleted the client
    batch = store.batch()
    try:
        store.append_rows(CLIENT, OTHER_FLOW, "A", "s", 1, COLUMNS, rows(0, 3), batch)
        batch.commit()
    finally:
        batch.close()
    assert numbers(store, OTHER_FLOW) == [0, 1, 2]
    store.remove_flows(CLIENT, [OTHER_FLOW])
    store.append_logs(CLIENT, FLOW, 1, [{"message": "again"}])
    assert store.read_logs(CLIENT, FLOW)[0]["message"] == "again"


def test_a_batch_closed_without_commit_leaves_the_last_commit(store: Filestore) -> None:
    store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, rows(0, 10))
    before = snapshot(store)
    batch = store.batch()
    store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, rows(10, 10), batch)
    batch.close()
    assert snapshot(store) == before
    assert store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, rows(10, 10)) > 0
    assert numbers(store) == list(range(20))


def test_a_commit_on_a_full_disk_stores_nothing_of_the_batch(small: Path) -> None:
    store = WithoutFloor(small / "fs", min_free_bytes=0)
    store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, rows(0, 100))
    before = snapshot(store)
    filler = fill(small, leave=64 * 1024)
    batch = store.batch()
    try:
        with pytest.raises(StorageFull):
            # More than is free: the data write itself fails part-way ...
            for seq in range(2, 20):
                store.append_rows(CLIENT, FLOW, "A", "s", seq, COLUMNS, rows(seq * 100, 100), batch)
            batch.commit()  # ... or, if it all fitted, the commit records do not
    finally:
        batch.close()
    assert snapshot(store) == before
    filler.unlink()
    for seq in range(2, 20):
        store.append_rows(CLIENT, FLOW, "A", "s", seq, COLUMNS, rows(seq * 100, 100))
    assert numbers(store) == list(range(100)) + list(range(200, 2000))


def test_a_batch_meeting_a_locked_result_set_commits_before_it_waits(store: Filestore) -> None:
    store.append_rows(CLIENT, OTHER_FLOW, "A", "s", 1, COLUMNS, rows(0, 1))
    data = next(store.flow_dir(CLIENT, OTHER_FLOW).rglob("*.jsonl"))
    holder = os.open(data, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another writer (thread or process) holds it
    seen: list[int] = []

    def release() -> None:
        time.sleep(0.5)
        # By now the batch waits for this lock: what it wrote before must be committed.
        seen.append(store.row_count(CLIENT, FLOW, "A", "s"))
        os.close(holder)

    batch = store.batch()
    thread = threading.Thread(target=release)
    thread.start()
    try:
        store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, rows(0, 3), batch)
        store.append_rows(CLIENT, OTHER_FLOW, "A", "s", 2, COLUMNS, rows(1, 1), batch)
        batch.commit()
    finally:
        batch.close()
        thread.join()
    assert seen == [3]
    assert numbers(store, OTHER_FLOW) == [0, 1]


BATCHES = 300
PER_BATCH = 100
FLOWS = [f"F.{n:016X}" for n in range(4)]

WRITER = f"""
import sys
from pathlib import Path
from peregrine.filestore import Filestore
store = Filestore(Path(sys.argv[1]), min_free_bytes=0)
for seq in range(1, {BATCHES} + 1):
    batch = store.batch()
    for flow in {FLOWS!r}:
        start = (seq - 1) * {PER_BATCH}
        rows = [[i, "x" * 150] for i in range(start, start + {PER_BATCH})]
        store.append_rows("{CLIENT}", flow, "A", "s", seq, ["n", "pad"], rows, batch)
    batch.commit()
    batch.close()
    if seq == 3:
        print("started", flush=True)
"""


def test_sigkill_mid_batch_then_resend(tmp_path: Path) -> None:
    root = tmp_path / "fs"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"
    time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    store = Filestore(root, min_free_bytes=0)
    for flow in FLOWS:
        committed = store.row_count(CLIENT, flow, "A", "s")
        assert committed % PER_BATCH == 0  # only whole batches are ever visible
        assert 3 * PER_BATCH <= committed < BATCHES * PER_BATCH, "killed too late to test"
    # The agents resend everything not acknowledged (here: all of it), in batches.
    for seq in range(1, BATCHES + 1):
        batch = store.batch()
        for flow in FLOWS:
            start = (seq - 1) * PER_BATCH
            data = [[i, "x" * 150] for i in range(start, start + PER_BATCH)]
            store.append_rows(CLIENT, flow, "A", "s", seq, ["n", "pad"], data, batch)
        batch.commit()
        batch.close()
    total = BATCHES * PER_BATCH
    for flow in FLOWS:
        assert numbers(store, flow) == list(range(total))
