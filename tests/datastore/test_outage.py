"""PostgreSQL going away under a datastore: reads fail with ``DatastoreUnavailable`` (not the
driver's error), and the group commit waits for the database to come back instead of failing
its callers — each change stored once — up to its bound.

The outage is real: the datastore reaches the test PostgreSQL through a TCP relay that the
test cuts (every connection closed, new ones refused) and opens again, as a network cut or a
server restart would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, make_url, text

from peregrine.datastore import DatastoreUnavailable, FlowRecord, open_datastore
from peregrine.datastore import group_commit as group_commit_module
from peregrine.datastore.database import Database, unavailable

CLIENT = "C.00000000000000ab"


class Relay:
    """A TCP relay on a loopback port to ``target``, which a test can cut and open again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.open()

    def open(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        """Close the listener and every relayed connection: the database is gone."""
        with self._lock:
            server, self._server = self._server, None
            sockets, self._sockets = self._sockets, []
        for sock in [s for s in (server,) if s is not None] + sockets:
            # shutdown first: on Linux, close alone leaves a listener blocked in accept().
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relayed(postgres_admin: Engine) -> Iterator[tuple[str, Relay]]:
    """A datastore URL (a schema of its own) that reaches PostgreSQL through a ``Relay``."""
    schema = f"peregrine_test_{uuid.uuid4().hex[:16]}"
    with postgres_admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin_url = postgres_admin.url
    relay = Relay((admin_url.host or "127.0.0.1", admin_url.port or 5432))
    url = make_url(admin_url).set(host="127.0.0.1", port=relay.port)
    url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False), relay
    finally:
        relay.cut()
        with postgres_admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def _flow(flow_id: str) -> FlowRecord:
    return FlowRecord(
        flow_id=flow_id, client_id=CLIENT, artifacts=[], request={}, creator="test",
        created=time.time(),
    )  # fmt: skip


def test_a_read_while_postgresql_is_away_says_unavailable(relayed: tuple[str, Relay]) -> None:
    url, relay = relayed
    store = open_datastore(url)
    try:
        assert store.clients.get(CLIENT) is None
        relay.cut()
        with pytest.raises(DatastoreUnavailable, match="does not answer"):
            store.clients.get(CLIENT)
        relay.open()
        assert store.clients.get(CLIENT) is None  # the pool replaced its dead connections
    finally:
        store.close()


def test_the_group_commit_waits_for_postgresql_and_stores_each_change_once(
    relayed: tuple[str, Relay],
) -> None:
    url, relay = relayed
    store = open_datastore(url)
    try:
        store.clients.enroll(CLIENT, b"k" * 32, time.time())
        store.collections.create(_flow("F.0000000000000001"), task=b"task")
        relay.cut()

        async def during_the_outage() -> bool:
            pending = asyncio.ensure_future(
                store.group.run(
                    store.collections.apply, "F.0000000000000001", 1, time.time(), rows=7
                )
            )
            await asyncio.sleep(2.0)
            assert not pending.done()  # waiting, not failed: nothing acknowledged yet
            relay.open()
            return await asyncio.wait_for(pending, 30)

        assert asyncio.run(during_the_outage()) is True
        record = store.collections.get("F.0000000000000001")
        assert record is not None and record.rows == 7
        # The same message again (an agent resending) changes nothing.
        assert store.collections.apply("F.0000000000000001", 1, time.time(), rows=7) is False
    finally:
        store.close()


def test_the_group_commit_gives_up_after_its_bound(
    relayed: tuple[str, Relay], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, relay = relayed
    monkeypatch.setattr(group_commit_module, "OUTAGE_RETRY_SECONDS", 1.0)
    store = open_datastore(url)
    try:
        store.clients.enroll(CLIENT, b"k" * 32, time.time())
        relay.cut()
        started = time.monotonic()
        future = store.group.submit(store.clients.get, CLIENT)
        with pytest.raises(DatastoreUnavailable):
            future.result(timeout=30)
        assert 1.0 <= time.monotonic() - started < 10
    finally:
        relay.open()
        store.close()


def test_sqlite_errors_never_count_as_unavailable(tmp_path: object) -> None:
    from sqlalchemy.exc import DBAPIError

    db = Database(f"sqlite:///{tmp_path}/x.db")
    try:
        with pytest.raises(DBAPIError) as caught, db.read() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))
        assert not unavailable(caught.value)
    finally:
        db.close()
