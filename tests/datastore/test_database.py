"""The backend chosen by URL: SQLite's settings, its file, and psycopg only when asked for.

These check one backend's own set-up, so they are not parametrised; every behaviour test is.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from peregrine.datastore import DatastoreError, open_datastore
from peregrine.datastore.database import SQLITE_BUSY_TIMEOUT_MS, Database, FairLock


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/peregrine.db")
    try:
        with db.read() as conn:
            names = ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            values = [conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in names]
        assert values == ["wal", 1, SQLITE_BUSY_TIMEOUT_MS, 2]  # synchronous 2 = FULL
    finally:
        db.close()


def test_sqlite_file_and_folder_are_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "peregrine.db"
    with open_datastore(f"sqlite:///{path}") as store:
        store.clients.enroll("C.0000000000000001", b"key", 1.0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_in_memory_sqlite_is_one_database_shared_by_threads() -> None:
    with open_datastore("sqlite://") as store:
        assert store.backend == "sqlite"

        def enroll(n: int) -> None:
            store.clients.enroll(f"C.{n:016x}", b"key", float(n))

        threads = [threading.Thread(target=enroll, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.clients.count() == 8


def test_sqlite_never_imports_psycopg(tmp_path: Path) -> None:
    """The embedded mode must run where the PostgreSQL driver is not even installed."""
    code = (
        "import sys\n"
        "from peregrine.datastore import open_datastore\n"
        f"open_datastore('sqlite:///{tmp_path}/p.db').close()\n"
        "drivers = [m for m in sys.modules if m.split('.')[0].startswith('psycopg')]\n"
        "assert drivers == [], drivers\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/db", "postgresql+asyncpg://h/db", "not a url", "sqlite+apsw://"]
)
def test_unsupported_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(DatastoreError, match="URL"):
        open_datastore(url)


def test_url_hides_the_password() -> None:
    db = Database("postgresql://peregrine:s3cret@127.0.0.1:1/peregrine")
    try:
        assert "s3cret" not in db.url
        assert db.backend == "postgresql"
    finally:
        db.close()


def test_the_write_lock_is_granted_in_order_asked() -> None:
    """The group committer re-asks for the lock at once after each batch; a plain lock could
    let it jump ahead of other writers indefinitely."""
    lock = FairLock()
    order: list[int] = []
    lock.__enter__()
    threads = []
    for number in range(8):
        asked = lock._next_ticket + 1

        def take(number: int = number) -> None:
            with lock:
                order.append(number)

        thread = threading.Thread(target=take)
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 10
        while lock._next_ticket < asked:  # wait until this thread holds its ticket
            assert time.monotonic() < deadline
            time.sleep(0.001)
    lock.__exit__(None, None, None)
    for thread in threads:
        thread.join(10)
    assert order == list(range(8))


def test_a_connection_given_back_after_close_is_closed(datastore_url: str) -> None:
    """A query still running in a thread when the datastore closes (a frontend stopping with a
    read under way) gives its connection back afterwards: it is closed then, not left open
    for the garbage collector (a ResourceWarning in whichever test ran at the time)."""
    db = Database(datastore_url)
    with db.read() as conn:
        driver_connection = conn.connection.dbapi_connection
        db.close()
        assert driver_connection is not None
        assert not _closed(driver_connection)  # in use: close leaves it to its user
    assert _closed(driver_connection)


def _closed(driver_connection: object) -> bool:
    """Whether a psycopg or sqlite3 connection is closed."""
    closed = getattr(driver_connection, "closed", None)
    if closed is not None:
        return bool(closed)
    try:
        driver_connection.execute("SELECT 1")  # type: ignore[attr-defined]
    except Exception:
        return True
    return False
