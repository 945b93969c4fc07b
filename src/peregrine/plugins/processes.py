"""Processes: ``pslist`` and a process's ``environ``. psutil makes them portable; on Linux
``pslist`` reads ``/proc`` itself (``proc_linux.py``), four times faster."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil

from peregrine.engine.context import QueryContext
from peregrine.engine.registry import Arg, Col, Lazy, Plugin, table
from peregrine.hookspecs import hookimpl

#: sys.platform in a plain str, so the portable branch is type-checked on Linux too.
_PLATFORM: str = sys.platform
if sys.platform.startswith("linux"):  # imported with the plugins: a warm worker has it
    from peregrine.plugins import proc_linux
_PROC_ATTRS = [
    "pid",
    "ppid",
    "name",
    "exe",
    "cmdline",
    "username",
    "create_time",
    "status",
    "num_threads",
    "memory_info",
    "cpu_times",
    "terminal",
    "cwd",
    "uids",
]
#: What each column needs from psutil: a statement reading a few columns reads only those
#: (``terminal`` alone scans /dev for every process, half of a full listing's time).
_COLUMN_ATTRS = {
    "argv": "cmdline",
    "uid": "uids",
    "user_time": "cpu_times",
    "system_time": "cpu_times",
    "rss": "memory_info",
    "vms": "memory_info",
    "exe_deleted": "exe",
}


def _attrs_read(columns: frozenset[str] | None) -> list[str]:
    """The psutil attributes the statement's columns need (all when unknown)."""
    if columns is None:
        return _PROC_ATTRS
    wanted = {_COLUMN_ATTRS.get(column, column) for column in columns} | {"pid"}
    return [attr for attr in _PROC_ATTRS if attr in wanted]


def _processes(ctx: QueryContext, pid: int | None) -> Iterator[psutil.Process]:
    if pid is not None:
        try:
            yield psutil.Process(int(pid))
        except psutil.NoSuchProcess:
            return
        return
    yield from ctx.checked(psutil.process_iter())


@table(
    name="pslist",
    description="Running processes: identity, owner, command line, times and memory.",
    arguments=[Arg("pid", "INTEGER", "Filter: `WHERE pid = N` reads only that process.")],
    columns=[
        Col("pid", "INTEGER", "Process id."),
        Col("ppid", "INTEGER", "Parent process id."),
        Col("name", "TEXT", "Process name."),
        Col("exe", "TEXT", "Path of the executable (NULL when not readable)."),
        Col("cmdline", "TEXT", "Command line, arguments joined by spaces."),
        Col("argv", "JSON", "Command line as a JSON array."),
        Col("username", "TEXT", "Owner of the process."),
        Col("uid", "INTEGER", "Real user id (POSIX)."),
        Col("status", "TEXT", "running, sleeping, zombie ..."),
        Col("create_time", "REAL", "Start time, seconds since the epoch."),
        Col("user_time", "REAL", "CPU seconds in user mode."),
        Col("system_time", "REAL", "CPU seconds in kernel mode."),
        Col("rss", "INTEGER", "Resident memory, bytes."),
        Col("vms", "INTEGER", "Virtual memory, bytes."),
        Col("num_threads", "INTEGER", "Threads."),
        Col("terminal", "TEXT", "Controlling terminal, if any."),
        Col("cwd", "TEXT", "Current working directory (NULL when not readable)."),
        Col("exe_deleted", "INTEGER", "1 when the executable was deleted from disk (Linux)."),
    ],
    examples=(
        "SELECT pid, name, cmdline FROM pslist() WHERE name = 'sshd'",
        "SELECT p.pid, p.exe, sha256(p.exe) FROM pslist() p WHERE p.exe_deleted",
    ),
)
def pslist(ctx: QueryContext, pid: int | None = None) -> Iterator[dict[str, Any]]:
    if _PLATFORM.startswith("linux"):
        reader = proc_linux.ProcReader(ctx.columns_read)
        yield from reader.rows(ctx.checked(reader.pids() if pid is None else [int(pid)]))
        return
    yield from _pslist_psutil(ctx, pid)


def _pslist_psutil(ctx: QueryContext, pid: int | None) -> Iterator[dict[str, Any]]:
    """The portable listing: psutil, asked only for what the statement's columns need."""
    attrs = _attrs_read(ctx.columns_read)
    for proc in _processes(ctx, pid):
        try:
            info = dict.fromkeys(_PROC_ATTRS) | proc.as_dict(attrs=attrs, ad_value=None)
        except psutil.NoSuchProcess:
            continue  # it exited while we looked: not an error
        mem, times, uids, cmd = (
            info["memory_info"],
            info["cpu_times"],
            info["uids"],
            info["cmdline"],
        )
        exe = info["exe"] or None
        yield {
            "pid": info["pid"],
            "ppid": info["ppid"],
            "name": info["name"],
            "exe": exe,
            "cmdline": " ".join(cmd) if cmd else None,
            "argv": cmd,
            "username": info["username"],
            "uid": uids.real if uids else None,
            "status": info["status"],
            "create_time": info["create_time"],
            "user_time": times.user if times else None,
            "system_time": times.system if times else None,
            "rss": mem.rss if mem else None,
            "vms": mem.vms if mem else None,
            "num_threads": info["num_threads"],
            "terminal": info["terminal"],
            "cwd": info["cwd"] or None,
            "exe_deleted": Lazy(_exe_deleted, info["pid"]) if exe else 0,
        }


def _exe_deleted(pid: int) -> int:
    try:
        return int(str(Path(f"/proc/{pid}/exe").readlink()).endswith(" (deleted)"))
    except OSError:
        return 0


@table(
    name="environ",
    description="Environment variables of a process (the pid argument is required).",
    arguments=[Arg("pid", "INTEGER", "Process id whose environment to read.", required=True)],
    columns=[
        Col("name", "TEXT", "Variable name."),
        Col("value", "TEXT", "Variable value."),
    ],
    examples=(
        "SELECT * FROM environ(1)",
        "SELECT p.pid, e.value FROM pslist() p JOIN environ(p.pid) e WHERE e.name = 'LD_PRELOAD'",
    ),
)
def environ(ctx: QueryContext, pid: int) -> Iterator[tuple[str, str]]:
    try:
        env = psutil.Process(int(pid)).environ()
    except psutil.NoSuchProcess:
        return
    except psutil.AccessDenied:
        # In a join over every process, one we may not read must not end the query.
        ctx.warn(f"environ(): access denied to process {pid} (run as root to read it)")
        return
    yield from env.items()


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [pslist, environ]
