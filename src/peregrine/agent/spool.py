"""The agent's on-disk spool: every message for the server is stored here before it is sent.

A message leaves the spool only when the server acknowledges that it has durably stored it, so
a crash of the agent, of the server or of the network between them loses nothing: after a
restart or a reconnect the agent sends what is still here, in order, and the server ignores what
it already has (by ``seq``). Per-flow sequence numbers are kept here too, so they continue
after a restart. SQLite in WAL mode with ``synchronous=FULL``: a committed append survives
``kill -9`` and power loss.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    flow_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (flow_id, seq)
);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    flow_id TEXT NOT NULL,
    local_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    announce BLOB NOT NULL        -- the spooled UploadStart, sent again after a reconnect
);
CREATE TABLE IF NOT EXISTS seen_hunts (
    hunt_id TEXT PRIMARY KEY,
    seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS flows (
    flow_id TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    state TEXT NOT NULL,          -- running, done
    request BLOB
);
"""


#: Builds a message's bytes once its ``seq`` is known.
PayloadFactory = Callable[[int], bytes]


class SpoolFull(Exception):
    """The spool holds ``max_bytes`` already: the collection must wait for the server."""


@dataclass(frozen=True)
class Spooled:
    flow_id: str
    seq: int
    payload: bytes


@dataclass(frozen=True)
class PendingUpload:
    """A file waiting to reach the server: where it is here, and the message announcing it."""

    upload_id: str
    flow_id: str
    local_path: str
    size: int
    announce: bytes


class Spool:
    def __init__(self, path: Path, max_bytes: int = 1 << 30) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._bytes = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages"
        ).fetchone()[0]

    @property
    def size(self) -> int:
        """Bytes of messages waiting for an acknowledgement."""
        return int(self._bytes)

    def start_flow(self, flow_id: str, request: bytes, first: PayloadFactory | None = None) -> bool:
        """Remember a flow, and store ``first`` (its start) as its seq 1 in the same commit;
        False if it was already known (a request delivered twice: nothing is stored). The
        start is stored even in a full spool: a few bytes, and the collection's later
        messages wait for room as ever."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO flows (flow_id, next_seq, state, request) "
                    "VALUES (?, 1, 'running', ?)",
                    (flow_id, request),
                )
                new = cursor.rowcount == 1
                stored = self._insert(flow_id, 1, [first]) if new and first is not None else 0
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._bytes += stored
            return new

    def finish_flow(self, flow_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE flows SET state = 'done' WHERE flow_id = ?", (flow_id,))

    def interrupted_flows(self) -> list[str]:
        """Flows that were running when the agent stopped (it cannot resume a query)."""
        with self._lock:
            rows = self._db.execute("SELECT flow_id FROM flows WHERE state = 'running'")
            return [r[0] for r in rows]

    def open_stream(self, stream: str) -> None:
        """Number an event stream's messages like a flow's, but never as a flow that a
        restart interrupted (its state is ``events``; it has no end)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO flows (flow_id, next_seq, state) VALUES (?, 1, 'events')",
                (stream,),
            )

    def append(self, flow_id: str, payload_for_seq: PayloadFactory, span: int = 1) -> int:
        """Assign the flow's next ``seq``, build the payload with it, store it durably.
        ``span``: how many numbers the message takes (an event batch takes one per row)."""
        return self.append_all(flow_id, [payload_for_seq], span=span)[0]

    def append_all(
        self,
        flow_id: str,
        factories: list[PayloadFactory],
        *,
        span: int = 1,
        finish: bool = False,
    ) -> list[int]:
        """``append`` for several messages of one flow, in one durable commit (one ``fsync``,
        not one each); ``finish``: the flow's last, so it is marked done in that commit too."""
        with self._lock:
            if self._bytes >= self.max_bytes:
                raise SpoolFull(f"spool holds {self._bytes} bytes (limit {self.max_bytes})")
            row = self._db.execute(
                "SELECT next_seq FROM flows WHERE flow_id = ?", (flow_id,)
            ).fetchone()
            first = row[0] if row else 1
            self._db.execute("BEGIN IMMEDIATE")
            try:
                stored = self._insert(flow_id, first, factories, span)
                if finish:
                    self._db.execute(
                        "UPDATE flows SET state = 'done' WHERE flow_id = ?", (flow_id,)
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._bytes += stored
            return [first + i * span for i in range(len(factories))]

    def _insert(
        self, flow_id: str, first: int, factories: list[PayloadFactory], span: int = 1
    ) -> int:
        """Build and insert messages numbered from ``first``, and move the flow's next number
        past them (inside the caller's transaction). Returns the bytes stored."""
        stored = 0
        seq = first
        for factory in factories:
            payload = factory(seq)
            self._db.execute(
                "INSERT INTO messages (flow_id, seq, payload) VALUES (?, ?, ?)",
                (flow_id, seq, payload),
            )
            stored += len(payload)
            seq += span
        self._db.execute(
            "INSERT INTO flows (flow_id, next_seq, state) VALUES (?, ?, 'running') "
            "ON CONFLICT (flow_id) DO UPDATE SET next_seq = excluded.next_seq",
            (flow_id, seq),
        )
        return stored

    def pending(self) -> Iterator[Spooled]:
        """Unacknowledged messages, in order of flow and seq (a snapshot)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT flow_id, seq, payload FROM messages ORDER BY rowid"
            ).fetchall()
        return (Spooled(f, s, p) for f, s, p in rows)

    def ack(self, flow_id: str, seq: int) -> int:
        """Drop everything of ``flow_id`` up to ``seq``; returns how many messages went."""
        with self._lock:
            freed = self._db.execute(
                "SELECT COALESCE(SUM(LENGTH(payload)), 0), COUNT(*) FROM messages "
                "WHERE flow_id = ? AND seq <= ?",
                (flow_id, seq),
            ).fetchone()
            self._db.execute("DELETE FROM messages WHERE flow_id = ? AND seq <= ?", (flow_id, seq))
            self._bytes -= freed[0]
            return int(freed[1])

    def forget_done_flows(self) -> None:
        """Drop bookkeeping of finished flows whose messages are all acknowledged."""
        with self._lock:
            self._db.execute(
                "DELETE FROM flows WHERE state = 'done' AND flow_id NOT IN "
                "(SELECT DISTINCT flow_id FROM messages)"
            )

    def add_upload(self, upload: PendingUpload) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?)",
                (upload.upload_id, upload.flow_id, upload.local_path, upload.size, upload.announce),
            )

    def incomplete_uploads(self, flow_id: str | None = None) -> list[PendingUpload]:
        with self._lock:
            rows = self._db.execute(
                "SELECT upload_id, flow_id, local_path, size, announce FROM uploads "
                "WHERE ? IS NULL OR flow_id = ?",
                (flow_id, flow_id),
            ).fetchall()
        return [PendingUpload(*row) for row in rows]

    def upload_done(self, upload_id: str) -> PendingUpload | None:
        with self._lock:
            row = self._db.execute(
                "SELECT upload_id, flow_id, local_path, size, announce FROM uploads "
                "WHERE upload_id = ?",
                (upload_id,),
            ).fetchone()
            self._db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
        return PendingUpload(*row) if row else None

    def saw_hunt(self, hunt_id: str, now: float) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO seen_hunts VALUES (?, ?)", (hunt_id, now))

    def seen_hunts(self, limit: int = 1000) -> list[str]:
        """The hunts this agent has been given (newest first), for its Hello."""
        with self._lock:
            rows = self._db.execute(
                "SELECT hunt_id FROM seen_hunts ORDER BY seen DESC LIMIT ?", (limit,)
            )
            return [r[0] for r in rows]

    def clear(self) -> None:
        """Forget everything (a cloned machine's copy of another agent's spool)."""
        with self._lock:
            self._db.execute("DELETE FROM messages")
            self._db.execute("DELETE FROM flows")
            self._db.execute("DELETE FROM uploads")
            self._db.execute("DELETE FROM seen_hunts")
            self._bytes = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
