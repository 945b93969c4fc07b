"""Alert tests run on SQLite and PostgreSQL, each test on a database of its own; receivers
for the forwarded alerts (an HTTP server, a UDP socket) run in the test process."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

# The PostgreSQL relay a test can cut (``relayed``) and the admin pool it needs.
from tests.datastore.conftest import postgres_admin  # noqa: F401 - a fixture
from tests.datastore.test_outage import relayed  # noqa: F401 - a fixture


@pytest.fixture(params=["sqlite", "postgresql"])
def datastore_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """A new, empty database on each backend (shared by every 'frontend' of a test)."""
    if request.param == "sqlite":
        return f"sqlite:///{os.fspath(tmp_path)}/peregrine.db"
    url: str = request.getfixturevalue("postgres_database")
    return url


@dataclass
class Received:
    """What a receiver got: bodies (parsed JSON) and headers, in order."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    #: Statuses to answer before answering 200 (to make the sender retry).
    fail_first: list[int] = field(default_factory=list)


@pytest.fixture
def webhook() -> Iterator[tuple[str, Received]]:
    """A real HTTP server on a loopback port that records every POST."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if received.fail_first:
                self.send_response(received.fail_first.pop(0))
                self.end_headers()
                return
            received.raw.append(body)
            received.bodies.append(json.loads(body))
            received.headers.append(dict(self.headers))
            received.arrived.set()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def syslog_udp() -> Iterator[tuple[int, socket.socket]]:
    """A real UDP socket on a loopback port, as a syslog receiver."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    try:
        yield sock.getsockname()[1], sock
    finally:
        sock.close()
