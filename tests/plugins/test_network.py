"""connections() and interfaces(): sockets this test opens must show up with its pid."""

from __future__ import annotations

import os
import socket

import psutil
import pytest

from peregrine.engine import PluginError


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_listening_socket_shows_pid_and_port(query, listener):
    port = listener.getsockname()[1]
    rows = query("SELECT * FROM connections() WHERE lport = ? AND status = 'LISTEN'", (port,))
    assert rows == [
        {
            "fd": listener.fileno(),
            "family": "AF_INET",
            "type": "tcp",
            "socket_type": "SOCK_STREAM",
            "laddr": "127.0.0.1",
            "lport": port,
            "raddr": None,
            "rport": None,
            "status": "LISTEN",
            "pid": os.getpid(),
            "process_name": psutil.Process().name(),
        }
    ]


def test_established_connection_has_both_ends(query, listener):
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    try:
        cport = client.getsockname()[1]
        rows = query(
            "SELECT laddr, lport, raddr, rport, status FROM connections('tcp4') "
            "WHERE pid = ? AND status = 'ESTABLISHED' AND raddr = '127.0.0.1'",
            (os.getpid(),),
        )
        assert {
            "laddr": "127.0.0.1",
            "lport": cport,
            "raddr": "127.0.0.1",
            "rport": port,
            "status": "ESTABLISHED",
        } in rows
        assert {
            "laddr": "127.0.0.1",
            "lport": port,
            "raddr": "127.0.0.1",
            "rport": cport,
            "status": "ESTABLISHED",
        } in rows
    finally:
        server.close()
        client.close()


def test_pid_filter_lists_only_that_process(query, listener):
    port = listener.getsockname()[1]
    rows = query("SELECT pid, lport FROM connections() WHERE pid = ?", (os.getpid(),))
    assert {"pid": os.getpid(), "lport": port} in rows
    assert {r["pid"] for r in rows} == {os.getpid()}


def test_kind_selects_protocols(query, listener):
    port = listener.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        uport = udp.getsockname()[1]
        mine = "SELECT type, lport, status FROM connections(?) WHERE pid = ?"
        udp_rows = query(mine, ("udp", os.getpid()))
        assert {"type": "udp", "lport": uport, "status": None} in udp_rows
        assert all(r["type"] == "udp" for r in udp_rows)
        assert not any(r["lport"] == port for r in query(mine, ("tcp6", os.getpid())))
        assert {"type": "tcp", "lport": port, "status": "LISTEN"} in query(
            mine, ("TCP", os.getpid())
        )
    finally:
        udp.close()


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")
def test_unix_socket_has_its_path(query, tmp_path):
    path = str(tmp_path / "peregrine.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen()
    try:
        rows = query("SELECT * FROM connections('unix') WHERE laddr = ?", (path,))
        assert len(rows) == 1
        assert rows[0]["family"] == "AF_UNIX"
        assert rows[0]["type"] == "unix"
        assert rows[0]["pid"] == os.getpid()
        assert rows[0]["lport"] is None
    finally:
        sock.close()


def test_unknown_kind_is_a_clear_error(query):
    with pytest.raises(PluginError, match=r"unknown kind 'nope'.*inet"):
        query("SELECT * FROM connections('nope')")


def test_interfaces_list_loopback_and_every_interface(query):
    rows = query("SELECT * FROM interfaces()")
    assert {r["name"] for r in rows} == set(psutil.net_if_addrs()) | set(psutil.net_if_stats())
    loopback = [r for r in rows if r["address"] == "127.0.0.1"]
    assert len(loopback) == 1
    assert loopback[0]["family"] == "AF_INET"
    assert loopback[0]["is_up"] == 1
    assert loopback[0]["mtu"] == psutil.net_if_stats()[loopback[0]["name"]].mtu
    assert loopback[0]["netmask"] == "255.0.0.0"
