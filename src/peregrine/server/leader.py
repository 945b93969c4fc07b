"""Which process does the singleton work (flow monitor, hunt expiry, recurring hunts).

Every implementation is a ``Leader``; ``cluster.make_leader`` picks one:

* ``AlwaysLeader``: one process, it is the leader.
* ``LeaderLock`` (``--workers N`` on one host): whoever holds an exclusive ``flock`` on
  ``<data_dir>/leader.lock``; the kernel releases it when that process dies, and another takes
  it at its next try.
* ``AdvisoryLeader`` (a cluster): whoever holds a PostgreSQL advisory lock on a connection of
  its own. PostgreSQL releases it when that session ends (the process died, its connection was
  killed, or its host vanished: TCP keepalives end the session within seconds). The holder
  proves every ``CHECK_SECONDS`` that its session still holds the lock and stops being leader
  the moment its last proof is older than ``LEASE_SECONDS`` — before PostgreSQL could have
  ended a silent session and let another frontend in.

Leader work checks ``is_leader`` before each step, and each step is guarded in the datastore
(a state change only from the expected state, a recurrence claimed by ``last_run``), so two
leaders overlapping for a moment still do each thing once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: How often the holder proves it still holds the lock (and others try to take it).
CHECK_SECONDS = 1.5
#: A proof older than this and the holder stops leading.
LEASE_SECONDS = 4.0
#: How PostgreSQL ends the session of a holder that went silent: keepalive after this much
#: idle time, then probes a second apart, this many (7 s > LEASE_SECONDS: the old leader has
#: stopped before anyone else can take the lock).
KEEPALIVE_IDLE = 4
KEEPALIVE_COUNT = 3
#: Seconds a connection attempt or a check may take.
CONNECT_TIMEOUT = 3
QUERY_TIMEOUT = 2.0


class Leader(Protocol):
    @property
    def is_leader(self) -> bool:
        """Whether this process may do singleton work now."""

    def try_acquire(self) -> bool:
        """Become the leader if nobody is (or say whether this process is); cheap."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Stop leading and let another process take over."""


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

    async def start(self) -> None:
        self.try_acquire()

    async def close(self) -> None:
        self.release()


class AlwaysLeader:
    """One process: it is the leader."""

    is_leader = True

    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class AdvisoryLeader:
    """A PostgreSQL advisory lock, held on a connection of its own by a background task."""

    def __init__(self, datastore_url: str, name: str, check: float = CHECK_SECONDS) -> None:
        self.conninfo = _conninfo(datastore_url)
        self.name = name
        self.check = check
        self._proved_at: float | None = None  # monotonic time of the last proof
        self._task: asyncio.Task[None] | None = None
        self.degraded_reason: str | None = None

    @property
    def is_leader(self) -> bool:
        proved = self._proved_at
        return proved is not None and time.monotonic() - proved < LEASE_SECONDS

    def try_acquire(self) -> bool:
        return self.is_leader  # the background task does the acquiring

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                conn = await self._connect()
            except Exception as exc:
                self._unreachable(exc)
                await asyncio.sleep(self.check)
                continue
            try:
                await self._hold(conn)
            except Exception as exc:
                self._unreachable(exc)
            finally:
                self._stop_leading()
                with contextlib.suppress(Exception):
                    await conn.close()
            await asyncio.sleep(self.check)

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=f"peregrine leader {self.name}"[:63],
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE,
            keepalives_interval=1,
            keepalives_count=KEEPALIVE_COUNT,
        )
        # The server side matters most: it is PostgreSQL that must end a vanished holder's
        # session (and so free the lock) in seconds, not after the system's two hours.
        for setting, value in (
            ("tcp_keepalives_idle", KEEPALIVE_IDLE),
            ("tcp_keepalives_interval", 1),
            ("tcp_keepalives_count", KEEPALIVE_COUNT),
            ("tcp_user_timeout", (KEEPALIVE_IDLE + KEEPALIVE_COUNT) * 1000),
            ("statement_timeout", int(QUERY_TIMEOUT * 1000)),
        ):
            await conn.execute(f"SET {setting} = {int(value)}")
        return conn

    async def _hold(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        """Try for the lock until it is ours, then prove it is still ours, every ``check``
        seconds, until a proof fails."""
        while True:
            started = time.monotonic()
            query = _TRY_LOCK if self._proved_at is None else _STILL_HELD
            row = await asyncio.wait_for(_ask(conn, query), QUERY_TIMEOUT)
            if self.degraded_reason is not None:
                log.warning("leader election: PostgreSQL reachable again")
                self.degraded_reason = None
            if row is not None and row[0]:
                if self._proved_at is None:
                    log.warning("this frontend (%s) is now the leader", self.name)
                self._proved_at = started  # proved as of when the question was asked
            elif self._proved_at is not None:
                raise RuntimeError("the advisory lock is no longer held by this session")
            # Idle, the connection only hears from PostgreSQL when something happened to the
            # session (terminated, server shutting down): check at once, not at the next turn.
            await _readable(conn.fileno(), self.check)

    def _unreachable(self, exc: BaseException) -> None:
        reason = f"leader election (PostgreSQL): {type(exc).__name__}: {exc}".strip()
        if self.degraded_reason is None:
            log.warning("%s; trying again every %g s", reason, self.check)
        self.degraded_reason = reason

    def _stop_leading(self) -> None:
        if self._proved_at is not None:
            log.warning("this frontend (%s) is no longer the leader", self.name)
        self._proved_at = None

    async def close(self) -> None:
        """Stop leading; closing the connection frees the lock for another frontend now."""
        self._proved_at = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


#: The lock is one per deployment: a database can hold several (one schema each).
_KEY = "hashtextextended('peregrine.leader:' || coalesce(current_schema(), ''), 0)"
_TRY_LOCK = f"SELECT pg_try_advisory_lock({_KEY})"
_STILL_HELD = (
    "SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    f" AND pid = pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint) = {_KEY}"
)


async def _readable(fd: int, timeout: float) -> bool:
    """Wait until ``fd`` has something to read (True) or ``timeout`` passes (False)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, timeout)
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
    return True


async def _ask(
    conn: psycopg.AsyncConnection[tuple[object, ...]], query: str
) -> tuple[object, ...] | None:
    cursor = await conn.execute(query)
    return await cursor.fetchone()


def _conninfo(url: str) -> str:
    """A libpq connection string from a datastore URL (``postgresql+psycopg://`` too)."""
    from peregrine.datastore.database import parse_url

    parsed = parse_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)
