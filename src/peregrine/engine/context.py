"""The per-query context handed to every plugin: limits, deadline and cancel token.

SQLite's interrupt only acts between virtual-machine steps, so a plugin stuck walking a huge tree
or hashing a huge file must stop itself: it calls :meth:`QueryContext.check` in its loops.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from peregrine.engine.errors import QueryCancelled, QueryTimeout

T = TypeVar("T")

#: Every permission a plugin can require; ``ALL_PERMISSIONS`` is what a local operator has.
KNOWN_PERMISSIONS = frozenset({"EXECVE", "FILESYSTEM_READ"})
ALL_PERMISSIONS = KNOWN_PERMISSIONS
#: Warnings one query keeps; past it they are only counted (a walk over a million unreadable
#: files must not hold a million messages).
MAX_WARNINGS = 1000


class Warnings(list[str]):
    """A query's warnings: the first :data:`MAX_WARNINGS` kept, the rest counted in
    ``dropped``. Nested queries share their parent's."""

    dropped = 0

    def add(self, message: str) -> None:
        if len(self) < MAX_WARNINGS:
            self.append(message)
        else:
            self.dropped += 1

    def report(self) -> list[str]:
        """The warnings kept and, if some were dropped, a last one that says how many."""
        if not self.dropped:
            return list(self)
        return [
            *self,
            f"{self.dropped} more warnings were dropped (a query keeps its first {len(self)})",
        ]


@dataclass
class QueryLimits:
    """Limits for one query. ``None`` means no limit.

    ``timeout`` is soft: plugins and SQLite stop themselves. ``hard_timeout`` and ``max_memory_mb``
    are enforced by the watchdog, which kills the worker process; ``cpu_limit`` (percent of one
    core) by the watchdog pausing it.
    """

    timeout: float | None = None
    max_rows: int | None = None
    hard_timeout: float | None = None
    max_memory_mb: int | None = None
    cpu_limit: float | None = None

    def effective_hard_timeout(self) -> float | None:
        """The kill deadline: the given one, or the soft one plus a grace period."""
        if self.hard_timeout is not None:
            return self.hard_timeout
        if self.timeout is not None:
            return self.timeout * 1.5 + 5.0
        return None


#: In an upload sink's directory: one JSON line per file ``upload()`` left out for the limit.
SKIPPED_UPLOADS = "skipped.jsonl"


@dataclass
class UploadSink:
    """Where ``upload()`` copies files for a collection, and its byte budget."""

    directory: str
    max_bytes: int | None = None
    used: int = 0


@dataclass
class QueryContext:
    """What a running query knows about itself; shared by SQLite hooks and plugins."""

    limits: QueryLimits = field(default_factory=QueryLimits)
    permissions: frozenset[str] = ALL_PERMISSIONS
    started: float = field(default_factory=time.monotonic)
    _cancelled: threading.Event = field(default_factory=threading.Event)
    warnings: Warnings = field(default_factory=Warnings)
    #: Where ``upload()`` stores files; None refuses uploads. Shared with nested queries.
    uploads: UploadSink | None = None
    #: Set when an event plugin (one that never ends) starts in this query: a row limit then
    #: stops at its last row instead of waiting for one more event to say there were more.
    events: bool = False
    #: The columns the statement reads from the table plugin starting now (set just before its
    #: generator starts; None: all, as when a plugin is called outside SQLite). ``glob`` then
    #: stats an entry only when a stat column is read.
    columns_read: frozenset[str] | None = None
    #: What a plugin keeps for the rest of this query, under its own name (``yara_process``
    #: scans a library mapped by many processes once). Shared with nested queries.
    plugin_state: dict[str, Any] = field(default_factory=dict)
    #: The processes that hold this query's text, its rules and parameters: this one, and in a
    #: query worker the agent (or CLI) that sent it. ``yara_process`` leaves them out unless
    #: asked: their memory matches every rule's own strings.
    scanner_pids: frozenset[int] = field(default_factory=lambda: frozenset({os.getpid()}))

    @property
    def deadline(self) -> float | None:
        if self.limits.timeout is None:
            return None
        return self.started + self.limits.timeout

    def child(self) -> QueryContext:
        """A context for a nested query (an artifact used as a table): the same deadline,
        cancel token, permissions and warnings, but no row limit of its own."""
        return QueryContext(
            limits=QueryLimits(timeout=self.limits.timeout),
            permissions=self.permissions,
            started=self.started,
            _cancelled=self._cancelled,
            warnings=self.warnings,
            uploads=self.uploads,
            plugin_state=self.plugin_state,
            scanner_pids=self.scanner_pids,
        )

    def cancel(self) -> None:
        """Ask the query to stop; safe from any thread."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def expired(self) -> bool:
        deadline = self.deadline
        return deadline is not None and time.monotonic() > deadline

    def check(self) -> None:
        """Raise if the query was cancelled or ran past its deadline. Cheap: call it often."""
        if self._cancelled.is_set():
            raise QueryCancelled("the query was cancelled")
        deadline = self.deadline
        if deadline is not None and time.monotonic() > deadline:
            raise QueryTimeout(f"the query ran past its time-out of {self.limits.timeout:g} s")

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking at once to raise when the query is cancelled or
        reaches its deadline: how an event plugin that never ends waits for what comes next."""
        deadline = self.deadline
        if deadline is not None:
            seconds = min(seconds, max(0.0, deadline - time.monotonic()))
        self._cancelled.wait(max(0.0, seconds))
        self.check()

    def checked(self, items: Iterable[T], every: int = 64) -> Iterator[T]:
        """Iterate ``items``, checking the deadline every ``every`` items."""
        for n, item in enumerate(items):
            if n % every == 0:
                self.check()
            yield item

    def warn(self, message: str) -> None:
        """Note something skipped (unreadable file, vanished process) without failing."""
        self.warnings.add(message)
