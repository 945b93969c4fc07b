"""Query workers started ahead, so a query does not wait for one to start.

Starting a worker (an isolated interpreter that imports the engine and registers every plugin)
takes 0.3 to 0.6 s; a small query then runs in milliseconds. :class:`SpareWorkers` keeps ``count``
workers started and warm, each blocked reading its ``Request``; :meth:`SpareWorkers.take` hands
one over, and once its query has ended (:meth:`SpareWorkers.done`) spares are started again, so
the next query finds one too. Not before: a replacement warming up while the query runs would
take CPU from it, and an artifact's precondition and its source each take a spare of their own
one after the other (most built-in artifacts have one), which ``count`` 2 covers.

Nothing of the isolation changes: a spare is the same ``python -I`` started in ``/`` as a
worker started on demand, the watchdog still watches it as its parent's child, and it still runs
one query and exits — a worker is never handed a second query, so nothing of one query reaches
another. Spares not taken for ``idle_seconds`` are stopped (an agent idle for hours keeps no
worker in memory; its next query starts one and spares again), :meth:`SpareWorkers.close` stops
them with the agent, and a spare whose parent died without a word reads the end of its input and
exits by itself.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections import deque
from typing import Protocol

from peregrine.engine.worker import start_worker

Worker = subprocess.Popen[bytes]


class WorkerSource(Protocol):
    """Where an :class:`~peregrine.engine.worker.IsolatedQuery` gets its worker process."""

    def take(self) -> Worker: ...

    def done(self) -> None: ...


class SpareWorkers:
    """``count`` warm workers waiting for a query; stopped after ``idle_seconds`` untaken
    (0: kept for good) and by :meth:`close`."""

    def __init__(self, count: int = 2, idle_seconds: float = 300.0) -> None:
        self.count = count
        self.idle_seconds = idle_seconds
        self._spares: deque[Worker] = deque()
        self._closed = False
        self._last_used = time.monotonic()
        self._changed = threading.Condition()
        self._expiry: threading.Thread | None = None

    @property
    def pids(self) -> list[int]:
        """The process ids of the spares waiting now."""
        with self._changed:
            return [worker.pid for worker in self._spares]

    def take(self) -> Worker:
        """A started worker for one query: a spare if one is alive, else a new one."""
        with self._changed:
            self._last_used = time.monotonic()
            worker = None
            while self._spares and worker is None:
                candidate = self._spares.popleft()
                if candidate.poll() is None:
                    worker = candidate
                else:
                    _stop(candidate)  # died waiting (killed from outside): reaped, pipes closed
            self._changed.notify_all()
        return worker if worker is not None else start_worker()

    def done(self) -> None:
        """A taken worker's query ended: start spares again, in the background."""
        if not self._closed:
            threading.Thread(target=self.fill, name="spare-workers", daemon=True).start()

    def fill(self) -> None:
        """Start spares until there are ``count`` (the first call also starts the clock that
        stops them when idle)."""
        with self._changed:
            while not self._closed and len(self._spares) < self.count:
                self._spares.append(start_worker())
                self._last_used = time.monotonic()  # a new spare waits its full idle time
            if self._expiry is None and self.idle_seconds > 0 and not self._closed:
                self._expiry = threading.Thread(
                    target=self._expire, name="spare-workers-expiry", daemon=True
                )
                self._expiry.start()

    def close(self) -> None:
        """Stop every spare and start none again (the agent is stopping)."""
        with self._changed:
            self._closed = True
            self._stop_spares()
            self._changed.notify_all()

    def _expire(self) -> None:
        with self._changed:
            while not self._closed:
                left = self._last_used + self.idle_seconds - time.monotonic()
                if left <= 0 and self._spares:
                    self._stop_spares()
                self._changed.wait(left if left > 0 else None)

    def _stop_spares(self) -> None:
        while self._spares:
            _stop(self._spares.popleft())


def _stop(worker: Worker) -> None:
    """Kill a worker that holds no query, reap it, and close our ends of its pipes."""
    with contextlib.suppress(ProcessLookupError):
        worker.kill()
    worker.wait()
    for pipe in (worker.stdin, worker.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
