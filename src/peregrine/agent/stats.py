"""What the agent counts about itself, for its metrics file (``agent/metrics_file.py``).

Standard library only: the agent process stays lean (``tests/agent/test_lean_imports.py``).
One set per process, since a process runs one agent; collection threads add to it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

#: How the artifact runner words a source whose query worker was killed (``Type: message``;
#: the engine's ``WorkerKilled``, named here so the agent need not import the engine).
WORKER_KILLED = "WorkerKilled: "


@dataclass
class AgentStats:
    rows_collected: int = 0
    messages_sent: int = 0
    sources_failed: int = 0
    worker_kills: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def rows(self, n: int) -> None:
        with self._lock:
            self.rows_collected += n

    def sent(self, n: int = 1) -> None:
        with self._lock:
            self.messages_sent += n

    def source_done(self, status: str, error: str | None) -> None:
        if status != "error":
            return
        with self._lock:
            self.sources_failed += 1
            if (error or "").startswith(WORKER_KILLED):
                self.worker_kills += 1


STATS = AgentStats()
