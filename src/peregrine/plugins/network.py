"""Network: open sockets with their owning process (``connections``) and ``interfaces``."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from typing import Any

import psutil

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Lazy, Plugin, table
from peregrine.hookspecs import hookimpl

#: The socket kinds psutil understands, in the order its documentation gives them.
KINDS = ("inet", "inet4", "inet6", "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix", "all")


def _family_name(family: int) -> str:
    if family == psutil.AF_LINK and family < 0:
        return "AF_LINK"  # Windows: psutil's own marker for the hardware address
    try:
        return socket.AddressFamily(family).name
    except ValueError:
        return str(family)


def _socket_type_name(kind: int) -> str:
    try:
        return socket.SocketKind(kind).name
    except ValueError:
        return str(kind)


def _proto(family: int, kind: int) -> str:
    """tcp, udp or unix: what an analyst means by a socket's type."""
    if family == getattr(socket, "AF_UNIX", None):
        return "unix"
    if kind == socket.SOCK_STREAM:
        return "tcp"
    if kind == socket.SOCK_DGRAM:
        return "udp"
    return _socket_type_name(kind).lower()


def _split(addr: Any) -> tuple[str | None, int | None]:
    """psutil gives (ip, port) for inet sockets and a path string for unix ones."""
    if not addr:
        return None, None
    if isinstance(addr, str):
        return addr, None
    return addr[0], addr[1]


class _Names:
    """Process names by pid, looked up once per query however many sockets a process has."""

    def __init__(self) -> None:
        self.cache: dict[int, str | None] = {}

    def __call__(self, pid: int) -> str | None:
        if pid not in self.cache:
            try:
                self.cache[pid] = psutil.Process(pid).name()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self.cache[pid] = None
        return self.cache[pid]


def _all_sockets(ctx: QueryContext, kind: str) -> Iterator[tuple[Any, int | None]]:
    try:
        conns = psutil.net_connections(kind=kind)
    except psutil.AccessDenied:
        # macOS lists system-wide sockets to root only: fall back to the processes we may see.
        ctx.warn("connections(): not root, so only sockets of readable processes are listed")
        for proc in ctx.checked(psutil.process_iter()):
            yield from _process_sockets(ctx, proc.pid, kind)
        return
    for conn in ctx.checked(conns):
        yield conn, conn.pid


def _process_sockets(ctx: QueryContext, pid: int, kind: str) -> Iterator[tuple[Any, int | None]]:
    try:
        conns = psutil.Process(pid).net_connections(kind=kind)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return
    except psutil.AccessDenied:
        ctx.warn(f"connections(): access denied to the sockets of process {pid}")
        return
    for conn in ctx.checked(conns):
        yield conn, pid


@table(
    name="connections",
    description="Open sockets (TCP, UDP, Unix) with addresses, state and the owning process.",
    arguments=[
        Arg(
            "kind",
            "TEXT",
            "Which sockets: " + ", ".join(KINDS) + " (default inet: TCP and UDP over v4 and v6).",
            default="inet",
        ),
        Arg("pid", "INTEGER", "Only sockets of this process (faster than WHERE on a column)."),
    ],
    columns=[
        Col("fd", "INTEGER", "File descriptor in the owning process (NULL when unknown)."),
        Col("family", "TEXT", "Address family: AF_INET, AF_INET6 or AF_UNIX."),
        Col("type", "TEXT", "tcp, udp or unix."),
        Col("socket_type", "TEXT", "SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET ..."),
        Col("laddr", "TEXT", "Local address (IP, or path of a Unix socket)."),
        Col("lport", "INTEGER", "Local port (NULL for Unix sockets)."),
        Col("raddr", "TEXT", "Remote address (NULL when not connected)."),
        Col("rport", "INTEGER", "Remote port (NULL when not connected)."),
        Col("status", "TEXT", "TCP state: LISTEN, ESTABLISHED, TIME_WAIT ...; NULL for UDP/Unix."),
        Col("pid", "INTEGER", "Owning process (NULL when not visible: other user, or kernel)."),
        Col("process_name", "TEXT", "Name of the owning process.", expensive=True),
    ],
    examples=(
        "SELECT laddr, lport, pid, process_name FROM connections() WHERE status = 'LISTEN'",
        "SELECT c.raddr, c.rport, p.exe FROM connections('tcp') c JOIN pslist() p USING (pid) "
        "WHERE c.status = 'ESTABLISHED'",
    ),
)
def connections(
    ctx: QueryContext, kind: str = "inet", pid: int | None = None
) -> Iterator[dict[str, Any]]:
    kind = str(kind if kind is not None else "inet").lower()
    if kind not in KINDS:
        raise PluginError("connections", f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    names = _Names()
    sockets = _process_sockets(ctx, int(pid), kind) if pid is not None else _all_sockets(ctx, kind)
    for conn, owner in sockets:
        laddr, lport = _split(conn.laddr)
        raddr, rport = _split(conn.raddr)
        yield {
            "fd": conn.fd if conn.fd is not None and conn.fd >= 0 else None,
            "family": _family_name(conn.family),
            "type": _proto(conn.family, conn.type),
            "socket_type": _socket_type_name(conn.type),
            "laddr": laddr,
            "lport": lport,
            "raddr": raddr,
            "rport": rport,
            "status": None if conn.status in (psutil.CONN_NONE, "") else conn.status,
            "pid": owner,
            "process_name": Lazy(names, owner) if owner is not None else None,
        }


@table(
    name="interfaces",
    description="Network interfaces, one row per address, with link state, speed and MTU.",
    columns=[
        Col("name", "TEXT", "Interface name (eth0, lo, en0 ...)."),
        Col("address", "TEXT", "The address (IP, or the MAC for the link-layer row)."),
        Col("netmask", "TEXT", "Netmask of the address."),
        Col("broadcast", "TEXT", "Broadcast address, if any."),
        Col("family", "TEXT", "AF_INET, AF_INET6, or AF_PACKET/AF_LINK for the link layer."),
        Col("mac", "TEXT", "Hardware address of the interface."),
        Col("is_up", "INTEGER", "1 when the interface is up."),
        Col("speed", "INTEGER", "Link speed in Mbit/s (0 or NULL when unknown)."),
        Col("mtu", "INTEGER", "Maximum transmission unit, bytes."),
        Col("flags", "TEXT", "Interface flags, comma-separated (Linux, BSD, macOS)."),
    ],
    examples=(
        "SELECT name, address FROM interfaces() WHERE family = 'AF_INET'",
        "SELECT name, mac FROM interfaces() WHERE is_up AND family IN ('AF_PACKET', 'AF_LINK')",
    ),
)
def interfaces(ctx: QueryContext) -> Iterator[dict[str, Any]]:
    addrs = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    for name in ctx.checked(sorted(set(addrs) | set(stats))):
        stat = stats.get(name)
        entries = addrs.get(name, [])
        macs = [a.address for a in entries if a.family == psutil.AF_LINK and a.address]
        common = {
            "name": name,
            "mac": macs[0] if macs else None,
            "is_up": int(stat.isup) if stat else None,
            "speed": stat.speed if stat else None,
            "mtu": stat.mtu if stat else None,
            "flags": getattr(stat, "flags", None) or None,
        }
        if not entries:
            yield {**common, "address": None, "netmask": None, "broadcast": None, "family": None}
        for addr in entries:
            yield {
                **common,
                "address": addr.address,
                "netmask": addr.netmask,
                "broadcast": addr.broadcast,
                "family": _family_name(addr.family),
            }


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [connections, interfaces]
