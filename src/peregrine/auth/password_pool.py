"""The threads that check and hash passwords for the API, apart from everything else.

argon2 costs 64 MiB and tens of milliseconds of CPU per password, on purpose. On the event
loop's default thread pool, a flood of logins queued every other thread job behind it: agent
handshakes and API reads stalled for seconds. Here a few threads of their own do that work, and
at most ``max_waiting`` more logins may queue for them: the rest are refused at once
(``PoolBusy``), so a flood costs the server a bounded amount of CPU and memory and nobody else
waits on it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

#: What a refused caller is told to wait, in seconds.
BUSY_RETRY_AFTER = 1


class PoolBusy(Exception):
    """Every hashing thread is busy and the queue is full: try again after ``retry_after``."""

    def __init__(self, retry_after: int = BUSY_RETRY_AFTER) -> None:
        super().__init__(f"too many logins at once: try again in {retry_after} s")
        self.retry_after = retry_after


class PasswordPool:
    """Runs password work on ``workers`` threads with at most ``max_waiting`` jobs queued."""

    def __init__(self, workers: int = 1, max_waiting: int = 16) -> None:
        if workers < 1 or max_waiting < 0:
            raise ValueError("a password pool needs a worker and a non-negative queue")
        self.capacity = workers + max_waiting
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="peregrine-passwords")
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Jobs running or queued now."""
        return self._admitted

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` on a password thread; PoolBusy at once when the queue is full."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise PoolBusy()
            self._admitted += 1
        try:
            future = self._executor.submit(call, *args)
        except BaseException:
            self._release(None)
            raise
        # Counted until the job itself ends, even if the caller stops waiting for it.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _: Future[Any] | None) -> None:
        with self._lock:
            self._admitted -= 1

    def close(self) -> None:
        """Stop the threads (jobs already queued still run)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
