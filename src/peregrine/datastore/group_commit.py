"""Group commit: many small write transactions from many agents, made durable by one commit.

A frontend stores four or more small updates per answered collection (its start, each result
batch's counts, each source's status, its end), and a new client's enrollment is one more. Each
as its own transaction is one synced commit on the single SQLite writer, which bounded a
frontend to a few hundred collections a second. Here a dedicated thread takes every piece of
work waiting, runs them all in one transaction, commits once, and only then answers their
callers: a caller still learns of success only once its change is durable, so it may
acknowledge. At low rates a batch holds one piece and commits at once; under load, batches grow
to thousands.

A piece that raises must not take the others down with it, nor leave half its changes: the
batch is then rolled back and run again with each piece in a savepoint of its own, so the
failing piece alone is undone and gets its exception. The same happens when an error left a
store call's ``write`` block but the call caught it (see ``Database.write``). Pieces therefore
may run twice, and must change nothing but the database (store calls do exactly that).
Savepoints only on that second run keep the common case at one statement per change.

With several frontends writing one PostgreSQL database, two batches can take row locks in
opposite orders (two frontends scheduling the same hunt on the same clients): one is chosen as
the deadlock victim. Such a piece is not at fault, so the whole batch is rolled back; after a
short random pause its pieces run one transaction each, so a conflict costs one piece's work
instead of a cycle of whole batches deadlocking again.

Work that is cheaper done together is folded (``run_together``): the items of one fold waiting
in a batch go to one call, so the flow messages of every session's run cost one read and one
``executemany`` for all their flows instead of a few statements each.

Work is ordinary store calls: while a batch runs, ``Database.write`` and ``Database.read`` on
this thread join the batch's transaction (see ``Database.joined``). Coroutines wait through
``run``: one wake-up of their event loop per batch, not one per piece.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from peregrine.metrics.instruments import ERRORS, GROUP_COMMIT_BATCH, GROUP_COMMIT_SECONDS

from .database import Database, unavailable
from .errors import DatastoreUnavailable

_random = random.Random()  # noqa: S311 (jitter; own state, so the global generator stays seeded)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Most pieces of work in one transaction: bounds how long a batch holds the writer.
MAX_BATCH = 2000
#: How long a batch keeps trying while the database is busy with another process's writes.
BUSY_RETRY_SECONDS = 60.0
#: How long a batch waits for a database that stopped answering, and its pauses meanwhile.
OUTAGE_RETRY_SECONDS = 30.0
OUTAGE_PAUSE_FIRST = 0.1
OUTAGE_PAUSE_MAX = 1.0
#: PostgreSQL's "try the transaction again" conditions: serialization failure, deadlock.
_RETRY_SQLSTATES = {"40001", "40P01"}


#: Work cheaper done together: one call for many items, one value (or the exception that
#: item fails with) per item. See ``GroupCommitter.run_together``.
Fold = Callable[[list[Any]], list[Any]]


@dataclass(slots=True)
class _Work:
    call: Callable[[], Any]
    future: Future[Any] | asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop | None = None  # set for an asyncio future
    value: Any = None
    error: BaseException | None = None
    fold: Fold | None = None  # set for work done together with others of its fold
    item: Any = None


class _PieceFailed(Exception):
    """Unwinds an optimistic batch (no savepoints) when one of its pieces raised."""


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
        self.reruns = 0
        self.busy_retries = 0

    def submit(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``call(*args, **kwargs)``; the future resolves after its batch has committed
        (or raises what the call raised, or the commit's error)."""
        future: Future[T] = Future()
        self._put(_Work(lambda: call(*args, **kwargs), future))
        return future

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``submit`` for coroutines: waits without holding a worker thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_Work(lambda: call(*args, **kwargs), future, loop))
        return await future

    async def run_together(self, fold: Fold, item: Any) -> Any:
        """``run`` for work cheaper done together (a statement for many items): every item
        of one ``fold`` waiting in a batch goes to one call ``fold(items)``, made at the
        first item's place in the batch. It returns one value per item, or the exception
        that item fails with, having then stored nothing of that item. When the batch runs
        again piece by piece (another piece raised), each item is folded alone."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        alone = functools.partial(_fold_alone, fold, item)
        self._put(_Work(alone, future, loop, fold=fold, item=item))
        return await future

    def close(self) -> None:
        """Commit what was submitted, then stop the thread."""
        with self._start_lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _put(self, work: _Work) -> None:
        if self._closed:
            raise RuntimeError("the datastore is closed")
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(
                        target=self._loop, name="peregrine-group-commit", daemon=True
                    )
                    self._thread.start()
        self._queue.put(work)

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
            started = time.monotonic()
            self._commit(batch)
            GROUP_COMMIT_SECONDS.observe(time.monotonic() - started)
            GROUP_COMMIT_BATCH.observe(len(batch))
            _answer(batch)
            if stop:
                return

    def _commit(self, batch: list[_Work]) -> None:
        """Run and commit the batch, leaving each piece's value or error on it.

        A busy database (another process's writer kept SQLite's lock past the busy time-out,
        or PostgreSQL chose this transaction as a deadlock victim) is waited out: the batch
        runs again, whole, for up to ``BUSY_RETRY_SECONDS``, rather than failing every piece.
        """
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        outage: _Outage | None = None
        while True:
            try:
                try:
                    self._run_batch(batch, savepoints=False)
                except _PieceFailed:
                    self.reruns += 1
                    self._run_batch(batch, savepoints=True)
            except DatastoreUnavailable as exc:
                outage = outage or _Outage(len(batch))
                if outage.wait():
                    continue
                self._fail(batch, exc)
                return
            except DBAPIError as exc:
                if _busy(exc) and time.monotonic() < deadline:
                    log.warning("datastore busy; retrying a group commit of %d", len(batch))
                    self.busy_retries += 1
                    if _conflict(exc) and len(batch) > 1:
                        time.sleep(_random.uniform(0.005, 0.05))
                        for work in batch:
                            self._commit([work])
                        return
                    continue
                self._fail(batch, exc)
                return
            except Exception as exc:
                self._fail(batch, exc)
                return
            self.batches += 1
            self.pieces += len(batch)
            if outage is not None:
                outage.over()
            return

    def _fail(self, batch: list[_Work], exc: Exception) -> None:
        # The transaction itself failed (BEGIN or COMMIT): nothing of the batch is stored.
        log.error("a group commit of %d changes failed: %s", len(batch), exc)
        ERRORS.labels(kind="group_commit").inc()
        for work in batch:
            work.value, work.error = None, exc

    def _run_batch(self, batch: list[_Work], *, savepoints: bool) -> None:
        with self._db.write() as conn, self._db.joined(conn, savepoints):
            folds: dict[Fold, list[_Work]] = {}
            for work in batch:
                work.value, work.error = None, None
                if work.fold is not None and not savepoints:
                    folds.setdefault(work.fold, []).append(work)
            for work in batch:
                try:
                    if savepoints:
                        with conn.begin_nested():
                            work.value = work.call()
                    else:
                        if work.fold is None:
                            work.value = work.call()
                        elif work.fold in folds:
                            _fold(work.fold, folds.pop(work.fold))
                        if self._db.take_spoiled():
                            # It caught an error of its own, whose writes are still in the
                            # transaction: only savepoints can take them out.
                            raise _PieceFailed
                except Exception as exc:
                    if isinstance(exc, DBAPIError) and (_busy(exc) or unavailable(exc)):
                        # Not this piece's fault: the transaction lost a race with another
                        # frontend (a deadlock victim), or the database went away. The
                        # whole batch runs again.
                        raise
                    if isinstance(exc, DatastoreUnavailable):
                        raise
                    if not savepoints:
                        raise _PieceFailed from exc  # rolls the batch back; rerun
                    work.error = exc


class _Outage:
    """The database stopped answering during a batch: the batch is retried, with pauses
    growing to ``OUTAGE_PAUSE_MAX``, for up to ``OUTAGE_RETRY_SECONDS``. Its callers wait
    (nothing of the batch is acknowledged meanwhile: their agents keep it spooled), and a
    PostgreSQL restart costs a pause instead of every piece failing. A batch whose COMMIT
    was lost with the connection may have been stored: it runs again, and its store calls
    are idempotent (a seq, a (hunt, client) pair or an id already there changes nothing)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.started = time.monotonic()
        self.pause = OUTAGE_PAUSE_FIRST
        log.warning("datastore unavailable; a group commit of %d waits for it", size)

    def wait(self) -> bool:
        """Pause before the next try; False once the outage has lasted too long."""
        if time.monotonic() - self.started > OUTAGE_RETRY_SECONDS:
            return False
        time.sleep(self.pause)
        self.pause = min(self.pause * 2, OUTAGE_PAUSE_MAX)
        return True

    def over(self) -> None:
        log.warning(
            "datastore back: a group commit of %d stored after %.1f s",
            self.size, time.monotonic() - self.started,
        )  # fmt: skip


def _fold_alone(fold: Fold, item: Any) -> Any:
    """An item folded on its own, its failure raised."""
    (value,) = fold([item])
    if isinstance(value, Exception):
        raise value
    return value


def _fold(fold: Fold, works: list[_Work]) -> None:
    """Fold the items in one call; an item's failure is its own (nothing of it stored)."""
    values = fold([work.item for work in works])
    if len(values) != len(works):
        raise RuntimeError(f"a fold gave {len(values)} values for {len(works)} items")
    for work, value in zip(works, values, strict=True):
        if isinstance(value, Exception):
            work.error = value
        else:
            work.value = value


def _conflict(exc: DBAPIError) -> bool:
    """Whether PostgreSQL refused the transaction over another's locks (deadlock, serialization)."""
    return getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES


def _busy(exc: DBAPIError) -> bool:
    """Whether the error means "busy, try again", not "this is wrong"."""
    if _conflict(exc):
        return True
    message = str(exc.orig).lower()
    return "database is locked" in message or "database is busy" in message


def _answer(batch: list[_Work]) -> None:
    """Resolve the batch's futures: thread futures at once, each event loop's in one call."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Work]] = {}
    for work in batch:
        if work.loop is None:
            _settle_one(work)
        else:
            by_loop.setdefault(work.loop, []).append(work)
    for loop, works in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, works)


def _settle(works: list[_Work]) -> None:
    for work in works:
        _settle_one(work)


def _settle_one(work: _Work) -> None:
    future = work.future
    if future.done():  # an asyncio waiter that was cancelled
        return
    if work.error is not None:
        future.set_exception(work.error)
    else:
        future.set_result(work.value)
