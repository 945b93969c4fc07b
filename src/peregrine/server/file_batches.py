"""The file part of many sessions' messages in one durable batch of the filestore.

Thousands of agents answering a hunt at once each bring a new flow's first result batch. Stored
one by one, each cost five ``fsync`` calls; here one thread takes every run of messages waiting (as
the datastore's group commit takes every piece), writes them all into one
:class:`~peregrine.filestore.DurableBatch`, commits it (two sync rounds for the lot) and only
then answers the sessions, which then record the counts and acknowledge. While a batch syncs,
the next one gathers.

A run that raises (a flow not the agent's own) fails alone. A commit that fails fails every run
of the batch: none of it is acknowledged, and the agents' resends find what was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from peregrine.filestore import DurableBatch, Filestore, StorageFull

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Most runs in one batch: bounds how long the first of them waits.
MAX_RUNS = 4000


@dataclass(slots=True)
class _Run(Generic[T, R]):
    job: T
    future: asyncio.Future[R]
    loop: asyncio.AbstractEventLoop
    value: R | None = None
    error: BaseException | None = None


class FileBatcher(Generic[T, R]):
    """Runs ``store(job, batch)`` for every job waiting in one batch on one thread."""

    def __init__(self, filestore: Filestore, store: Callable[[T, DurableBatch], R]) -> None:
        self._filestore = filestore
        self._store = store
        self._queue: queue.SimpleQueue[_Run[T, R] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="peregrine-file-batch")
        self._thread.daemon = True
        self._started = False
        self._lock = threading.Lock()
        self.batches = 0
        self.runs = 0

    async def run(self, job: T) -> R:
        """Store ``job`` in the next batch; returns once that batch is durable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        self._queue.put(_Run(job, future, loop))
        return await future

    def close(self) -> None:
        """Store what was submitted, then stop the thread."""
        with self._lock:
            started, self._started = self._started, False
        if started:
            self._queue.put(None)
            self._thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            runs, stop = [first], False
            while len(runs) < MAX_RUNS:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                runs.append(more)
            self._batch(runs)
            _answer(runs)
            if stop:
                return

    def _batch(self, runs: list[_Run[T, R]]) -> None:
        try:
            batch = self._filestore.batch()
        except OSError as exc:
            _fail(runs, exc)
            return
        try:
            for run in runs:
                try:
                    run.value = self._store(run.job, batch)
                except Exception as exc:  # this run's own fault: the others go on
                    run.error = exc
            batch.commit()
            if batch.failed is not None:  # an earlier commit, inside one of the runs
                raise batch.failed
        except Exception as exc:
            if not isinstance(exc, StorageFull):
                log.error("a file batch of %d runs failed: %s", len(runs), exc)
            _fail(runs, exc)
        finally:
            batch.close()
        self.batches += 1
        self.runs += len(runs)


def _fail(runs: list[_Run[T, R]], exc: BaseException) -> None:
    for run in runs:
        run.value, run.error = None, exc


def _answer(runs: list[_Run[T, R]]) -> None:
    """Resolve the runs' futures: one call into each event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Run[T, R]]] = {}
    for run in runs:
        by_loop.setdefault(run.loop, []).append(run)
    for loop, mine in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, mine)


def _settle(runs: list[_Run[T, R]]) -> None:
    for run in runs:
        if run.future.done():  # a waiter that was cancelled
            continue
        if run.error is not None:
            run.future.set_exception(run.error)
        else:
            run.future.set_result(run.value)  # type: ignore[arg-type]
