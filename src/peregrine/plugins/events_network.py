"""``connection_events()``: sockets opened and closed, seen by comparing ``/proc/net`` (Linux).

Each look reads the kernel's socket tables (TCP and UDP, v4 and v6) and compares them with the
last: a socket there now and not before was opened, one gone was closed. A connection that opens
and closes between two looks is not seen: the ``period`` is the resolution. The owning process
is found (by the socket's inode in ``/proc/*/fd``) only when the query reads it.
"""

# os functions on str paths on purpose: one per file descriptor of every process.
# ruff: noqa: PTH115, PTH208

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Lazy, Plugin, table
from peregrine.hookspecs import hookimpl

TABLES = (
    ("tcp", "AF_INET", "/proc/net/tcp"),
    ("tcp", "AF_INET6", "/proc/net/tcp6"),
    ("udp", "AF_INET", "/proc/net/udp"),
    ("udp", "AF_INET6", "/proc/net/udp6"),
)
TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


class Socket(NamedTuple):
    proto: str
    family: str
    laddr: str
    lport: int
    raddr: str | None
    rport: int | None
    state: str | None
    uid: int
    inode: int

    @property
    def listening(self) -> bool:
        return self.state == "LISTEN" or (self.proto == "udp" and self.raddr is None)


def _address(text: str) -> tuple[str, int]:
    """An address as /proc/net prints it (hex, each 32-bit word in host order) and its port."""
    hex_ip, hex_port = text.split(":")
    raw = bytes.fromhex(hex_ip)
    ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(ordered)), int(hex_port, 16)


def read_sockets(path: str, proto: str, family: str) -> Iterator[Socket]:
    """The sockets of one /proc/net table that belong to someone (inode 0: TIME_WAIT leftovers)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return  # no IPv6 here, say
    for line in lines:
        fields = line.split()
        inode = int(fields[9])
        if not inode:
            continue
        laddr, lport = _address(fields[1])
        raddr, rport = _address(fields[2])
        state = TCP_STATES.get(fields[3]) if proto == "tcp" else None
        connected = rport != 0
        yield Socket(
            proto,
            family,
            laddr,
            lport,
            raddr if connected else None,
            rport if connected else None,
            state,
            int(fields[7]),
            inode,
        )


def all_sockets() -> dict[int, Socket]:
    return {s.inode: s for p, f, path in TABLES for s in read_sockets(path, p, f)}


class Owners:
    """Which process holds a socket inode, found by reading every process's descriptors only
    when a row's owner is read, and only as far as needed: a socket that closes soon after it
    opened must be found before it is gone. What one look learned is kept until the next."""

    def __init__(self) -> None:
        self.found: dict[int, int] = {}
        self._walk: Iterator[tuple[int, int]] | None = None

    def forget(self) -> None:
        self.found, self._walk = {}, None

    @staticmethod
    def _sockets() -> Iterator[tuple[int, int]]:
        """(socket inode, pid) of every socket descriptor of every process."""
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fds = os.listdir(f"/proc/{entry}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{entry}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    yield int(target[8:-1]), int(entry)

    def pid(self, inode: int) -> int | None:
        if inode in self.found:
            return self.found[inode]
        if self._walk is None:
            self._walk = self._sockets()
        for held, pid in self._walk:
            self.found.setdefault(held, pid)
            if held == inode:
                return pid
        return None

    def name(self, inode: int) -> str | None:
        pid = self.pid(inode)
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return None


def _row(action: str, sock: Socket, owners: Owners | None) -> dict[str, Any]:
    return {
        **sock._asdict(),
        "time": time.time(),
        "action": action,
        "listening": int(sock.listening),
        "pid": Lazy(owners.pid, sock.inode) if owners else None,
        "process_name": Lazy(owners.name, sock.inode) if owners else None,
    }


@table(
    name="connection_events",
    description=(
        "Event plugin (never ends): TCP and UDP sockets (v4 and v6) opened and closed, found by "
        "comparing the kernel's socket tables every `period` seconds; a socket that lives less "
        "than that may be missed. New listening sockets are `action = 'opened' AND listening`."
    ),
    arguments=[Arg("period", "REAL", "Seconds between looks (the resolution).", default=1.0)],
    columns=[
        Col("time", "REAL", "When it was seen, seconds since the epoch."),
        Col("action", "TEXT", "opened or closed."),
        Col("proto", "TEXT", "tcp or udp."),
        Col("family", "TEXT", "AF_INET or AF_INET6."),
        Col("laddr", "TEXT", "Local address."),
        Col("lport", "INTEGER", "Local port."),
        Col("raddr", "TEXT", "Remote address (NULL when not connected)."),
        Col("rport", "INTEGER", "Remote port (NULL when not connected)."),
        Col("state", "TEXT", "TCP state when seen (LISTEN, ESTABLISHED ...); NULL for UDP."),
        Col("listening", "INTEGER", "1 for a TCP socket in LISTEN or an unconnected UDP one."),
        Col("uid", "INTEGER", "The user that owns the socket."),
        Col("inode", "INTEGER", "The socket's inode."),
        Col("pid", "INTEGER", "The process holding it (opened only).", expensive=True),
        Col("process_name", "TEXT", "That process's name (opened only).", expensive=True),
    ],
    platforms=("linux",),
    examples=(
        "SELECT laddr, lport, pid FROM connection_events(0.5) "
        "WHERE action = 'opened' AND listening LIMIT 1",
    ),
    events=True,
)
def connection_events(ctx: QueryContext, period: float = 1.0) -> Iterator[dict[str, Any]]:
    if period is None or float(period) < 0.05:
        raise PluginError("connection_events", "period must be at least 0.05 seconds")
    owners = Owners()
    before = all_sockets()
    while True:
        ctx.wait(float(period))
        now = all_sockets()
        owners.forget()
        for inode, sock in before.items():
            if inode not in now:
                yield _row("closed", sock, None)
        for inode, sock in now.items():
            if inode not in before:
                yield _row("opened", sock, owners)
        before = now


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [connection_events]
