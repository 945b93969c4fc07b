"""``login_events()``: logins, logouts and boots as wtmp records them, as they are appended.

wtmp only grows (and is rotated), so it is followed like a log (:mod:`peregrine.plugins.tail`)
in whole 384-byte records. A logout record carries no user name: it is taken from the login on
the same terminal. SSH and sudo lines of the auth log are for ``log_lines`` and the
Linux.Events.SSHLogin and Linux.Events.Sudo artifacts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Plugin, table
from peregrine.hookspecs import hookimpl
from peregrine.plugins.tail import Tail
from peregrine.plugins.utmp import RECORD_SIZE, UtmpRecord, parse_record

ACTIONS = {"USER_PROCESS": "login", "DEAD_PROCESS": "logout", "BOOT_TIME": "boot"}


class Sessions:
    """Who logged in on which terminal, so a logout can say who left."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {}

    def row(self, rec: UtmpRecord, path: str) -> dict[str, Any]:
        action = ACTIONS.get(rec.type, rec.type.lower())
        user = rec.user
        if action == "login":
            self.users[rec.line] = user
        elif action == "logout":
            user = user or self.users.pop(rec.line, "")
        elif rec.type == "RUN_LVL" and user == "shutdown":
            action = "shutdown"
        return {
            "time": rec.time,
            "action": action,
            "user": user or None,
            "tty": rec.line or None,
            "host": rec.host or None,
            "ip": rec.ip,
            "pid": rec.pid,
            "type": rec.type,
            "path": path,
        }


@table(
    name="login_events",
    description=(
        "Event plugin (never ends): logins, logouts, boots and shutdowns as they are appended "
        "to wtmp (rotation handled); a logout names the user who logged in on that terminal."
    ),
    arguments=[
        Arg("wtmp", "TEXT", "The wtmp file to follow.", default="/var/log/wtmp"),
        Arg("period", "REAL", "Seconds between looks for new records.", default=1.0),
    ],
    columns=[
        Col("time", "REAL", "When, as recorded, seconds since the epoch."),
        Col("action", "TEXT", "login, logout, boot, shutdown, or the record type in lower case."),
        Col("user", "TEXT", "The user (for a logout: who logged in on that terminal)."),
        Col("tty", "TEXT", "Terminal (pts/0, tty1 ...)."),
        Col("host", "TEXT", "Remote host, or the kernel version for a boot."),
        Col("ip", "TEXT", "Remote address, NULL when none."),
        Col("pid", "INTEGER", "The session's process."),
        Col("type", "TEXT", "The record type (USER_PROCESS, DEAD_PROCESS ...)."),
        Col("path", "TEXT", "The file followed."),
    ],
    platforms=("linux",),
    permissions=("FILESYSTEM_READ",),
    examples=("SELECT time, action, user, ip FROM login_events() LIMIT 1",),
    events=True,
)
def login_events(
    ctx: QueryContext, wtmp: str = "/var/log/wtmp", period: float = 1.0
) -> Iterator[dict[str, Any]]:
    if period is None or float(period) < 0.01:
        raise PluginError("login_events", "period must be at least 0.01 seconds")
    tail = Tail(str(wtmp))
    sessions = Sessions()
    pending = b""
    try:
        while True:
            for chunk, offset in tail.read():
                if offset == 0:
                    pending = b""  # a new file: a torn record of the old one is lost with it
                data = pending + chunk
                whole = len(data) - len(data) % RECORD_SIZE
                for at in range(0, whole, RECORD_SIZE):
                    rec = parse_record(data, at)
                    if rec.type != "EMPTY":
                        yield sessions.row(rec, str(wtmp))
                pending = data[whole:]
            ctx.wait(float(period))
    finally:
        tail.close()


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [login_events]
