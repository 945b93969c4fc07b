"""One database, either backend: the engine chosen by URL, and read and write connections.

SQLite (the embedded default) runs in WAL mode with foreign keys on and a busy time-out. Its
writes go through one writer: a lock held for the whole ``BEGIN IMMEDIATE`` transaction, so
threads of this process queue on the lock instead of failing with "database is locked", and
other processes wait on the busy time-out. Reads take no lock and run beside the writer (WAL
gives them a snapshot). ``sqlite://`` (in memory, for tests) is a single shared connection, so
there reads take the lock too.

PostgreSQL (the distributed mode) needs no lock: each statement that must be atomic is written
as one conditional UPDATE, which row locks make safe across threads and processes. Its driver,
psycopg, is imported only when a ``postgresql://`` URL is opened.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert

from peregrine.metrics.instruments import DATASTORE_SECONDS

from .errors import DatastoreError, DatastoreUnavailable

DATASTORE_READ = DATASTORE_SECONDS.labels(op="read")
DATASTORE_WRITE = DATASTORE_SECONDS.labels(op="write")

#: How long a SQLite writer waits for another process's write before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000
_WRITE = "peregrine_write"


def parse_url(url: str) -> URL:
    """Check a datastore URL and name the driver Peregrine uses for it."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatastoreError(f"not a datastore URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.get_driver_name() == "pysqlite":
        return parsed
    if backend == "postgresql" and parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    raise DatastoreError(
        f"unsupported datastore URL {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///absolute/path.db, sqlite:// (in memory) or postgresql://user@host:port/db"
    )


class Database:
    """The engine of one datastore and the only way the stores reach it."""

    def __init__(self, url: str) -> None:
        parsed = parse_url(url)
        self.url = parsed.render_as_string(hide_password=True)
        self.backend: str = parsed.get_backend_name()
        self._write_lock = FairLock()
        self._lock_reads = False
        self._joined = threading.local()
        if self.backend == "sqlite":
            self.engine = self._sqlite_engine(parsed)
        else:
            self.engine = self._postgresql_engine(parsed)
        self._closed = False
        event.listen(self.engine, "checkin", self._close_when_closed)

    def _sqlite_engine(self, url: URL) -> Engine:
        args: dict[str, Any] = {"check_same_thread": False}
        if not url.database or url.database == ":memory:":
            self._lock_reads = True
            engine = create_engine(url, connect_args=args, poolclass=StaticPool)
        else:
            _create_private_file(Path(url.database))
            engine = create_engine(url, connect_args=args)

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            # Take transactions out of the sqlite3 module's hands: SQLAlchemy's begin event
            # below issues BEGIN itself, IMMEDIATE for writes.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            # FULL: an acknowledged write survives a power cut, not only a crash.
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            write = connection.get_execution_options().get(_WRITE, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def _postgresql_engine(self, url: URL) -> Engine:
        try:
            return create_engine(url, pool_pre_ping=True)
        except ImportError as exc:
            raise DatastoreError(
                "a postgresql:// datastore needs psycopg: pip install 'peregrine[postgres]'"
            ) from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed on success, rolled back on error.

        Inside ``joined`` (a group commit), the group's transaction instead. An error that
        leaves this block then cannot undo this write alone: it marks the batch ``spoiled``
        (the committer runs it again with savepoints), or, in a batch run with savepoints,
        this write has its own, which the error rolls back. Either way a store call that
        catches its own error (``schedule_client`` losing a race) leaves nothing behind.
        """
        joined: Connection | None = getattr(self._joined, "connection", None)
        if joined is not None:
            if self._joined.savepoints:
                with joined.begin_nested():
                    yield joined
                return
            try:
                yield joined
            except BaseException:
                self._joined.spoiled = True
                raise
            return
        with (
            DATASTORE_WRITE.time(),
            self._unavailable_as_error(),
            self._writer(),
            self.engine.connect() as connection,
        ):
            connection.execution_options(**{_WRITE: True})
            with connection.begin():
                yield connection

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading; on SQLite file databases it never waits for the writer.

        Inside ``joined``, the group's connection, so a read sees the group's own changes.
        """
        joined: Connection | None = getattr(self._joined, "connection", None)
        if joined is not None:
            yield joined
            return
        lock = self._write_lock if self._lock_reads else contextlib.nullcontext()
        with (
            DATASTORE_READ.time(),
            self._unavailable_as_error(),
            lock,
            self.engine.connect() as connection,
        ):
            yield connection

    @contextlib.contextmanager
    def _unavailable_as_error(self) -> Iterator[None]:
        """A lost or refused PostgreSQL connection becomes ``DatastoreUnavailable``, which
        callers can wait out, instead of the driver's error."""
        try:
            yield
        except DBAPIError as exc:
            if unavailable(exc):
                raise DatastoreUnavailable(
                    f"the datastore ({self.url}) does not answer: {type(exc.orig).__name__}"
                ) from exc
            raise

    @contextlib.contextmanager
    def joined(self, connection: Connection, savepoints: bool = False) -> Iterator[None]:
        """Make ``write`` and ``read`` on this thread use ``connection``'s open transaction
        (with ``savepoints``, each ``write`` in a savepoint of its own)."""
        self._joined.connection = connection
        self._joined.savepoints = savepoints
        self._joined.spoiled = False
        try:
            yield
        finally:
            self._joined.connection = None

    def take_spoiled(self) -> bool:
        """Whether an error left a joined ``write`` since the last call (see ``write``)."""
        spoiled = bool(getattr(self._joined, "spoiled", False))
        self._joined.spoiled = False
        return spoiled

    def _writer(self) -> contextlib.AbstractContextManager[Any]:
        if self.backend == "sqlite":
            return self._write_lock
        return contextlib.nullcontext()

    def insert_ignore(self, table: Any) -> Insert:
        """An INSERT that does nothing when the row already exists (on either backend)."""
        if self.backend == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        return postgresql.insert(table).on_conflict_do_nothing()

    def close(self) -> None:
        """Close every pooled connection, and each one in use when it comes back."""
        self._closed = True
        self.engine.dispose()

    def _close_when_closed(self, dbapi_connection: Any, _record: Any) -> None:
        """A connection given back after ``close`` (a query was still running in a thread,
        as when a frontend stops) is closed, not left open for the garbage collector."""
        if self._closed and dbapi_connection is not None:
            with contextlib.suppress(Exception):
                dbapi_connection.close()


#: PostgreSQL's "the server is not there now" (shutting down, crashed, cannot connect now);
#: class 08 is "connection exception".
_UNAVAILABLE_SQLSTATES = {"57P01", "57P02", "57P03"}


def unavailable(exc: DBAPIError) -> bool:
    """Whether a PostgreSQL error means the server is unreachable now (a restart, a network
    cut), not that the statement is wrong. SQLite's errors never do."""
    if not type(exc.orig).__module__.startswith("psycopg"):
        return False
    if exc.connection_invalidated:
        return True
    state = getattr(exc.orig, "sqlstate", None)
    if state is None:  # failed to connect, or the connection broke: no answer at all
        return isinstance(exc, OperationalError)
    return str(state).startswith("08") or state in _UNAVAILABLE_SQLSTATES


class FairLock:
    """A lock granted in the order it was asked for.

    ``threading.Lock`` lets the thread that just released it take it again at once, so the
    group committer, which writes batch after batch, could keep every other writer waiting
    for as long as agents keep sending.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._condition.wait()

    def __exit__(self, *exc_info: object) -> None:
        with self._condition:
            self._serving += 1
            self._condition.notify_all()


def _create_private_file(path: Path) -> None:
    """Make the database file owner-only before SQLite creates it (its -wal/-shm inherit that)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
