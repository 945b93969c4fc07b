"""Group commit: many small write transactions from many agents, made durable by one commit.

A frontend stores four or more small updates per answered collection (its start, each result
batch's counts, each source's status, its end), and a new client's enrollment is one more. Each
as its own transaction is one synced commit on the single SQLite writer, which bounded a
frontend to a few hundred collections a second. Here a dedicated thread takes every piece of
work waiting, runs each in a savepoint of one shared transaction (a piece that fails rolls back
alone and gets its own exception), commits once, and only then resolves the pieces' futures:
a caller still learns of success only once its change is durable, so it may acknowledge. At low
rates a batch holds one piece and commits at once; under load, batches grow to thousands.

Work is ordinary store calls: while a batch runs, ``Database.write`` and ``Database.read`` on
this thread join the batch's transaction (see ``Database.joined``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .database import Database

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Most pieces of work in one transaction: bounds how long a batch holds the writer.
MAX_BATCH = 2000


@dataclass
class _Work:
    call: Callable[[], Any]
    future: Future[Any] = field(default_factory=Future)


class GroupCommitter:
    """Runs submitted work on one writer thread, a batch per transaction."""

    def __init__(self, db: Database, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self.batches = 0
        self.pieces = 0

    def submit(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``call(*args, **kwargs)``; the future resolves after its batch has committed
        (or raises what the call raised, or the commit's error)."""
        if self._closed:
            raise RuntimeError("the datastore is closed")
        work = _Work(lambda: call(*args, **kwargs))
        self._ensure_thread()
        self._queue.put(work)
        return work.future

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``submit`` for coroutines: waits without holding a worker thread."""
        return await asyncio.wrap_future(self.submit(call, *args, **kwargs))

    def close(self) -> None:
        """Commit what was submitted, then stop the thread."""
        with self._start_lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._loop, name="peregrine-group-commit", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    work = self._queue.get_nowait()
                except queue.Empty:
                    break
                if work is None:
                    stop = True
                    break
                batch.append(work)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Work]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            with self._db.write() as conn, self._db.joined(conn):
                for work in batch:
                    try:
                        with conn.begin_nested():
                            outcomes.append((work.call(), None))
                    except Exception as exc:
                        outcomes.append((None, exc))
        except Exception as exc:
            # The transaction itself failed (BEGIN or COMMIT): nothing of the batch is stored.
            log.error("a group commit of %d changes failed: %s", len(batch), exc)
            for work in batch:
                work.future.set_exception(exc)
            return
        self.batches += 1
        self.pieces += len(batch)
        for work, (value, error) in zip(batch, outcomes, strict=True):
            if error is not None:
                work.future.set_exception(error)
            else:
                work.future.set_result(value)
