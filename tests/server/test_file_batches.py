"""The file batcher: runs of many sessions share one durable batch, each answered only once its
batch is durable; a run that raises fails alone, a commit that fails fails its whole batch."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from peregrine.filestore import DurableBatch, Filestore
from peregrine.server.file_batches import FileBatcher

CLIENT = "C.0123456789abcdef"


def flow(n: int) -> str:
    return f"F.{n:016X}"


def test_waiting_runs_share_a_batch_and_are_durable_when_answered(tmp_path: Path) -> None:
    store = Filestore(tmp_path / "fs", min_free_bytes=0)
    seen_batches: set[int] = set()

    def write(n: int, batch: DurableBatch) -> int:
        seen_batches.add(id(batch))
        return store.append_rows(CLIENT, flow(n), "A", "s", 1, ["n"], [[n]], batch)

    batcher: FileBatcher[int, int] = FileBatcher(store, write)

    async def one(n: int) -> None:
        assert await batcher.run(n) > 0
        # Answered: committed, so readable (and durable) now.
        assert store.read_rows(CLIENT, flow(n), "A", "s") == [{"n": n}]

    async def scenario() -> None:
        await asyncio.gather(*(one(n) for n in range(200)))

    try:
        asyncio.run(scenario())
    finally:
        batcher.close()
    assert batcher.runs == 200
    assert batcher.batches < 20, "runs waiting together were not batched"


def test_a_failing_run_fails_alone_and_a_failing_commit_fails_all(tmp_path: Path) -> None:
    store = Filestore(tmp_path / "fs", min_free_bytes=0)

    def write(n: int, batch: DurableBatch) -> int:
        if n == 0:
            time.sleep(0.3)  # holds the thread, so the next runs gather into one batch
        if n == 13:
            raise ValueError("not this one")
        written = store.append_rows(CLIENT, flow(n), "A", "s", 1, ["n"], [[n]], batch)
        if n == 99:
            shutil.rmtree(store.flow_dir(CLIENT, flow(99)))  # its commit record cannot be written
        return written

    batcher: FileBatcher[int, int] = FileBatcher(store, write)

    async def after_a_busy_batch(*numbers: int) -> list[object]:
        busy = asyncio.ensure_future(batcher.run(0))
        await asyncio.sleep(0.1)
        runs = [batcher.run(n) for n in numbers]
        return list(await asyncio.gather(busy, *runs, return_exceptions=True))[1:]

    try:
        three, thirteen = asyncio.run(after_a_busy_batch(3, 13))
        four, ninety_nine = asyncio.run(after_a_busy_batch(4, 99))
    finally:
        batcher.close()
    assert isinstance(three, int) and three > 0
    assert isinstance(thirteen, ValueError)
    assert store.row_count(CLIENT, flow(3), "A", "s") == 1
    assert isinstance(four, FileNotFoundError) and isinstance(ninety_nine, FileNotFoundError)
    assert store.row_count(CLIENT, flow(4), "A", "s") == 0  # rolled back: never acknowledged
    assert store.append_rows(CLIENT, flow(4), "A", "s", 1, ["n"], [[4]]) > 0  # the resend
