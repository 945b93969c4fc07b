"""``process_events()``: processes starting and exiting, as they happen (Linux).

Two ways to see them, and a column that says which one a row came from. The kernel's process
events connector (netlink, ``NETLINK_CONNECTOR``) reports every exec and exit as it happens; it
needs CAP_NET_ADMIN and the initial PID namespace. Without it, ``/proc`` is listed every
``period`` seconds: a process that lives less than that may be missed, and a program executed
by a process already seen is not seen again.
"""

# os functions on str paths on purpose: paths come from the kernel and go to it as text.
# ruff: noqa: PTH115, PTH208

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Plugin, table
from peregrine.hookspecs import hookimpl

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
NLMSG_DONE = 3
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000
_NLMSG = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT_HEAD = struct.Struct("=IIQ")
_PIDS = struct.Struct("=II")
_EXIT = struct.Struct("=IIII")
_EVENT_DATA = _NLMSG.size + _CN_MSG.size + _EVENT_HEAD.size
#: How often a wait for the kernel's next message looks at the query's cancel and deadline.
WAKE_EVERY = 0.25
#: Processes remembered from their start, so an exit row can say what exited.
MAX_KNOWN = 65_536
MODES = ("auto", "netlink", "poll")


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


@cache
def _username(uid: int) -> str | None:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(name, parent pid, start time in clock ticks since boot) from /proc/PID/stat."""
    text = _read(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, int(fields[1]), int(fields[19])


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def describe(pid: int) -> dict[str, Any]:
    """What /proc says of a process now: name, parent, program, command line and owner."""
    stat = _stat(pid)
    name, ppid = (stat[0], stat[1]) if stat else (None, None)
    raw = _read(f"/proc/{pid}/cmdline") or ""
    argv = raw.rstrip("\0").split("\0") if raw else []
    uid = None
    for line in (_read(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
            break
    parent = _stat(ppid) if ppid else None
    return {
        "pid": pid,
        "ppid": ppid,
        "name": name,
        "exe": _readlink(f"/proc/{pid}/exe"),
        "cmdline": " ".join(argv) if argv else None,
        "argv": argv,
        "uid": uid,
        "username": _username(uid) if uid is not None else None,
        "parent_name": parent[0] if parent else None,
        "parent_exe": _readlink(f"/proc/{ppid}/exe") if ppid else None,
    }


class Known(dict[int, dict[str, Any]]):
    """Processes seen starting, by pid, so their exit can say what they were (bounded)."""

    def remember(self, info: dict[str, Any]) -> None:
        if len(self) >= MAX_KNOWN:
            self.pop(next(iter(self)))
        self[info["pid"]] = info

    def exited(self, pid: int) -> dict[str, Any]:
        """What started as ``pid``, or (forked, never seen executing) its name if still there."""
        known = self.pop(pid, None)
        if known is not None:
            return known
        name = _read(f"/proc/{pid}/comm")
        return {"pid": pid, "name": name.strip() if name else None}


def _row(
    info: dict[str, Any], action: str, method: str, exit_code: int | None = None
) -> dict[str, Any]:
    return {**info, "time": time.time(), "action": action, "method": method, "exit_code": exit_code}


# -- netlink: the kernel's process events connector ---------------------------------------------


def open_connector() -> socket.socket:
    """A netlink socket subscribed to process events; OSError when not permitted here."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    try:
        sock.bind((0, CN_IDX_PROC))
        op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
        cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
        sock.send(_NLMSG.pack(_NLMSG.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    except OSError:
        sock.close()
        raise
    return sock


def parse_event(data: bytes) -> tuple[str, int, int | None] | None:
    """('exec' | 'exit', pid, exit status) of a process (not a thread), or None."""
    if len(data) < _EVENT_DATA + _PIDS.size:
        return None
    what = _EVENT_HEAD.unpack_from(data, _NLMSG.size + _CN_MSG.size)[0]
    if what == PROC_EVENT_EXEC:
        pid, tgid = _PIDS.unpack_from(data, _EVENT_DATA)
        return ("exec", tgid, None) if pid == tgid else None
    if what == PROC_EVENT_EXIT and len(data) >= _EVENT_DATA + _EXIT.size:
        pid, tgid, status, _signal = _EXIT.unpack_from(data, _EVENT_DATA)
        return ("exit", tgid, status) if pid == tgid else None
    return None


def exit_code(status: int) -> int:
    """A wait status as a shell says it: the exit code, or minus the signal that killed it."""
    return -(status & 0x7F) if status & 0x7F else (status >> 8) & 0xFF


def netlink_events(ctx: QueryContext, sock: socket.socket) -> Iterator[dict[str, Any]]:
    known = Known()
    with sock:
        while True:
            ready, _, _ = select.select([sock], [], [], WAKE_EVERY)
            ctx.check()
            if not ready:
                continue
            try:
                data = sock.recv(65536)
            except OSError as exc:  # ENOBUFS: the kernel dropped events we were too slow for
                ctx.warn(f"process_events(): some events were lost ({exc.strerror})")
                continue
            event = parse_event(data)
            if event is None:
                continue
            action, pid, status = event
            if action == "exec":
                info = describe(pid)
                known.remember(info)
                yield _row(info, "start", "netlink")
            else:
                yield _row(known.exited(pid), "exit", "netlink", exit_code(status or 0))


# -- polling /proc --------------------------------------------------------------------------


def _pids() -> dict[int, int]:
    """Every process now, pid -> start time (so a reused pid reads as a new process)."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                found[int(entry)] = stat[2]
    return found


def polled_events(ctx: QueryContext, period: float) -> Iterator[dict[str, Any]]:
    known = Known()
    before = _pids()
    while True:
        ctx.wait(period)
        now = _pids()
        for pid, started in before.items():
            if now.get(pid) != started:
                yield _row(known.exited(pid), "exit", "poll")
        for pid, started in now.items():
            if before.get(pid) != started:
                info = describe(pid)
                known.remember(info)
                yield _row(info, "start", "poll")
        before = now


@table(
    name="process_events",
    description=(
        "Event plugin (never ends): a row when a process starts (executes a program) and when "
        "it exits. From the kernel's process events connector when permitted (root with "
        "CAP_NET_ADMIN, initial PID namespace), else by listing /proc every `period` seconds."
    ),
    arguments=[
        Arg(
            "mode",
            "TEXT",
            "auto (netlink if permitted, else poll), netlink or poll.",
            default="auto",
        ),
        Arg(
            "period",
            "REAL",
            "poll: seconds between looks at /proc; processes living less may be missed.",
            default=0.5,
        ),
    ],
    columns=[
        Col("time", "REAL", "When it was seen, seconds since the epoch."),
        Col("action", "TEXT", "start (a program was executed) or exit."),
        Col("pid", "INTEGER", "Process id."),
        Col("ppid", "INTEGER", "Parent process id."),
        Col("name", "TEXT", "Process name (comm)."),
        Col("exe", "TEXT", "Path of the executable (NULL when gone or not readable)."),
        Col(
            "cmdline",
            "TEXT",
            "Command line, arguments joined by spaces (NULL when it ended before it was read).",
        ),
        Col("argv", "JSON", "Command line as a JSON array."),
        Col("uid", "INTEGER", "Real user id."),
        Col("username", "TEXT", "Owner of the process."),
        Col("parent_name", "TEXT", "The parent's process name."),
        Col("parent_exe", "TEXT", "The parent's executable."),
        Col("exit_code", "INTEGER", "exit: the exit code, or minus the killing signal (netlink)."),
        Col("method", "TEXT", "netlink (every event) or poll (at the period's resolution)."),
    ],
    platforms=("linux",),
    examples=(
        "SELECT time, pid, username, cmdline FROM process_events() WHERE action = 'start' LIMIT 1",
    ),
    events=True,
)
def process_events(
    ctx: QueryContext, mode: str = "auto", period: float = 0.5
) -> Iterator[dict[str, Any]]:
    if mode not in MODES:
        raise PluginError("process_events", f"mode must be one of {', '.join(MODES)}")
    if float(period) < 0.01:
        raise PluginError("process_events", "period must be at least 0.01 seconds")
    if mode != "poll":
        try:
            sock = open_connector()
        except OSError as exc:
            if mode == "netlink":
                raise PluginError(
                    "process_events",
                    f"the process events connector is not available ({exc.strerror}): it needs "
                    "root with CAP_NET_ADMIN; use mode 'poll' or 'auto'",
                ) from None
            ctx.warn(
                f"process_events(): netlink refused ({exc.strerror}); polling /proc every "
                f"{float(period):g} s, so processes living less than that may be missed"
            )
        else:
            yield from netlink_events(ctx, sock)
            return
    yield from polled_events(ctx, float(period))


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [process_events]
