"""Which process does the singleton work (flow monitor, hunt expiry, recurring hunts).

In the embedded mode with several frontend processes on one host, the leader is whichever holds
an exclusive ``flock`` on ``<data_dir>/leader.lock``: the kernel releases it when that process
dies, and another takes it at its next try. (The distributed mode uses a PostgreSQL advisory
lock the same way.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class LeaderLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def is_leader(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Become the leader if nobody is; cheap to call again and again."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class AlwaysLeader:
    """One process: it is the leader."""

    is_leader = True

    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None
