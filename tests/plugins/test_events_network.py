"""connection_events(): a real socket opened and closed by the test is seen both ways."""

from __future__ import annotations

import os
import socket
import time

from peregrine.plugins.events_network import _address, all_sockets
from tests.plugins.event_queries import rows_while


def test_a_new_listening_socket_is_seen_with_its_owner_then_its_close() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def listen_then_close() -> None:
        server.listen()
        time.sleep(1.5)
        server.close()

    rows = rows_while(
        "SELECT action, proto, family, laddr, lport, raddr, state, listening, uid, pid, "
        "process_name FROM connection_events(0.1) WHERE lport = :port LIMIT 2",
        listen_then_close,
        params={"port": port},
    )
    opened, closed = rows
    assert opened == {
        "action": "opened",
        "proto": "tcp",
        "family": "AF_INET",
        "laddr": "127.0.0.1",
        "lport": port,
        "raddr": None,
        "state": "LISTEN",
        "listening": 1,
        "uid": os.getuid(),
        "pid": os.getpid(),
        "process_name": opened["process_name"],
    }
    assert opened["process_name"]
    assert closed["action"] == "closed" and closed["lport"] == port and closed["pid"] is None


def test_a_connection_is_seen_with_its_remote_end() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    held: list[socket.socket] = []

    def connect() -> None:
        held.append(socket.create_connection(("127.0.0.1", port)))
        held.append(server.accept()[0])

    rows = rows_while(
        "SELECT raddr, rport, state FROM connection_events(0.1) "
        "WHERE action = 'opened' AND rport = :port LIMIT 1",
        connect,
        params={"port": port},
    )
    assert rows == [{"raddr": "127.0.0.1", "rport": port, "state": "ESTABLISHED"}]
    for s in [*held, server]:
        s.close()


def test_addresses_read_as_the_kernel_writes_them() -> None:
    assert _address("0100007F:0016") == ("127.0.0.1", 22)
    assert _address("00000000000000000000000001000000:01BB") == ("::1", 443)
    assert all(s.inode for s in all_sockets().values())
