"""Accounts: ``users``, ``groups``, and who logged in (``logged_in``, ``last_logins``).

Users and groups come from the account database (``pwd``/``grp``: /etc/passwd and /etc/group plus
any NSS source such as LDAP). Sessions come from the utmp family of files, parsed directly
(``utmp.py``) so a copied wtmp from another machine can be read too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Plugin, current_platform, table
from peregrine.hookspecs import hookimpl
from peregrine.plugins.utmp import UtmpRecord, read_records

if TYPE_CHECKING or sys.platform != "win32":
    import grp
    import pwd

SHADOW = Path("/etc/shadow")
UTMP_PATHS = (Path("/run/utmp"), Path("/var/run/utmp"))
LOG_DIR = Path("/var/log")
SOURCES = ("wtmp", "btmp")
_NO_LOGIN_SHELLS = frozenset({"nologin", "false"})
_DAY = 86400


def _password_status(field: str) -> str:
    """What a password hash field allows: ``none`` (no password needed), ``locked`` or ``set``."""
    if field == "":
        return "none"
    if field[0] in "!*":
        return "locked"
    return "set"


def _shadow(ctx: QueryContext) -> dict[str, list[str]]:
    """/etc/shadow by user name; empty (with a warning) when it cannot be read."""
    try:
        text = SHADOW.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        ctx.warn(f"users(): cannot read {SHADOW} ({exc.strerror}); password_status is NULL")
        return {}
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0]:
            entries.setdefault(fields[0], fields)
    return entries


def _days(field: str) -> int | None:
    """A shadow date (days since 1970) as epoch seconds; empty means not set."""
    try:
        return int(field) * _DAY
    except ValueError:
        return None


def _passwd_entries(username: str | None, uid: int | None) -> list[pwd.struct_passwd]:
    try:
        if username is not None:
            entries = [pwd.getpwnam(str(username))]
        elif uid is not None:
            entries = [pwd.getpwuid(int(uid))]
        else:
            return pwd.getpwall()
    except (KeyError, ValueError, OverflowError):
        return []
    # Both filters given: SQLite re-checks, but do not return a row it would drop anyway.
    return [e for e in entries if uid is None or e.pw_uid == int(uid)]


@table(
    name="users",
    description="Local user accounts (/etc/passwd and NSS), with password state from /etc/shadow.",
    arguments=[
        Arg("username", "TEXT", "Only this user (faster than scanning every account)."),
        Arg("uid", "INTEGER", "Only this user id."),
    ],
    columns=[
        Col("username", "TEXT", "Login name."),
        Col("uid", "INTEGER", "User id."),
        Col("gid", "INTEGER", "Primary group id."),
        Col("description", "TEXT", "GECOS field: full name, room, phone ..."),
        Col("home", "TEXT", "Home directory."),
        Col("shell", "TEXT", "Login shell."),
        Col("is_login_shell", "INTEGER", "1 unless the shell is nologin or false."),
        Col(
            "password_status",
            "TEXT",
            "none (no password needed), locked (! or *) or set; NULL when /etc/shadow is "
            "unreadable (run as root) or on macOS.",
        ),
        Col(
            "last_change",
            "INTEGER",
            "Last password change, epoch seconds (day precision); 0 forces a change at next "
            "login. From /etc/shadow.",
        ),
        Col("expire", "INTEGER", "Account expiry, epoch seconds (day precision); /etc/shadow."),
    ],
    platforms=("linux", "darwin"),
    examples=(
        "SELECT username, uid, shell FROM users() WHERE is_login_shell",
        "SELECT username FROM users() WHERE uid = 0 OR password_status = 'none'",
    ),
)
def users(
    ctx: QueryContext, username: str | None = None, uid: int | None = None
) -> Iterator[dict[str, Any]]:
    linux = current_platform() == "linux"
    shadow = _shadow(ctx) if linux else {}
    for entry in ctx.checked(_passwd_entries(username, uid)):
        status = last_change = expire = None
        if linux and entry.pw_passwd != "x":  # noqa: S105 ("x" means: see /etc/shadow)
            status = _password_status(entry.pw_passwd)  # a hash, or nothing, right in passwd
        elif entry.pw_name in shadow:
            fields = shadow[entry.pw_name]
            status = _password_status(fields[1])
            last_change = _days(fields[2])
            expire = _days(fields[7]) if len(fields) > 7 else None
        yield {
            "username": entry.pw_name,
            "uid": entry.pw_uid,
            "gid": entry.pw_gid,
            "description": entry.pw_gecos,
            "home": entry.pw_dir,
            "shell": entry.pw_shell,
            "is_login_shell": int(Path(entry.pw_shell).name not in _NO_LOGIN_SHELLS),
            "password_status": status,
            "last_change": last_change,
            "expire": expire,
        }


@table(
    name="groups",
    description="Local groups (/etc/group and NSS) with their supplementary members.",
    arguments=[
        Arg("name", "TEXT", "Only this group."),
        Arg("gid", "INTEGER", "Only this group id."),
    ],
    columns=[
        Col("name", "TEXT", "Group name."),
        Col("gid", "INTEGER", "Group id."),
        Col(
            "members",
            "JSON",
            "Supplementary members (users whose primary group this is are not listed).",
        ),
    ],
    platforms=("linux", "darwin"),
    examples=(
        "SELECT name, members FROM groups() WHERE name IN ('sudo', 'wheel', 'adm')",
        "SELECT g.name, m.value AS member FROM groups() g, json_each(g.members) m",
    ),
)
def groups(
    ctx: QueryContext, name: str | None = None, gid: int | None = None
) -> Iterator[dict[str, Any]]:
    try:
        if name is not None:
            entries = [grp.getgrnam(str(name))]
        elif gid is not None:
            entries = [grp.getgrgid(int(gid))]
        else:
            entries = grp.getgrall()
    except (KeyError, ValueError, OverflowError):
        return
    for entry in ctx.checked(entries):
        yield {"name": entry.gr_name, "gid": entry.gr_gid, "members": list(entry.gr_mem)}


_SESSION_COLUMNS = [
    Col("user", "TEXT", "User name (for boot and run-level records: reboot, shutdown, runlevel)."),
    Col("tty", "TEXT", "Terminal line, without /dev/ (pts/0, tty1, ssh:notty)."),
    Col("host", "TEXT", "Remote host name or address; kernel version for boot records."),
    Col("pid", "INTEGER", "Process id of the login session."),
    Col("type", "TEXT", "Record type: USER_PROCESS, DEAD_PROCESS, BOOT_TIME, LOGIN_PROCESS ..."),
    Col("time", "REAL", "When, epoch seconds with microseconds."),
    Col("ip", "TEXT", "Remote IPv4/IPv6 address (ut_addr_v6), NULL when none."),
    Col("session", "INTEGER", "Session id (ut_session)."),
    Col("id", "TEXT", "Terminal suffix or inittab id (ut_id)."),
]


def _session_row(rec: UtmpRecord) -> dict[str, Any]:
    return {
        "user": rec.user,
        "tty": rec.line,
        "host": rec.host,
        "pid": rec.pid,
        "type": rec.type,
        "time": rec.time,
        "ip": rec.ip,
        "session": rec.session,
        "id": rec.id,
    }


def _records(ctx: QueryContext, plugin: str, path: Path) -> Iterator[UtmpRecord]:
    """The non-EMPTY records of one utmp-format file; a missing file has none."""

    def truncated(nbytes: int) -> None:
        ctx.warn(f"{plugin}(): {path}: last record is truncated ({nbytes} of 384 bytes), skipped")

    if path.is_dir():
        raise PluginError(plugin, f"{path} is a directory; give a utmp/wtmp/btmp file")
    try:
        for rec in read_records(path, ctx.check, truncated):
            if rec.type != "EMPTY":
                yield rec
    except FileNotFoundError:
        return
    except OSError as exc:
        ctx.warn(f"{plugin}(): cannot read {path} ({exc.strerror})")


@table(
    name="logged_in",
    description="Sessions open now, from utmp (Linux) or the OS's session list (psutil).",
    arguments=[
        Arg("path", "TEXT", "A utmp-format file to read instead of /run/utmp (Linux layout)."),
    ],
    columns=_SESSION_COLUMNS,
    platforms=("linux", "darwin", "win32"),
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT user, tty, host, time FROM logged_in() WHERE type = 'USER_PROCESS'",
        "SELECT * FROM logged_in('/mnt/evidence/run/utmp')",
    ),
)
def logged_in(ctx: QueryContext, path: str | None = None) -> Iterator[dict[str, Any]]:
    """On Linux every non-empty utmp slot (getty, boot, dead sessions too): filter on ``type``."""
    if path is not None:
        yield from map(_session_row, _records(ctx, "logged_in", Path(path)))
        return
    if current_platform() == "linux":
        for candidate in UTMP_PATHS:
            if candidate.exists():
                yield from map(_session_row, _records(ctx, "logged_in", candidate))
                return
        return  # no utmp (a container, say): nobody is logged in
    for user in psutil.users():
        yield {
            "user": user.name,
            "tty": user.terminal,
            "host": user.host,
            "pid": getattr(user, "pid", None),
            "type": "USER_PROCESS",
            "time": user.started,
        }


def _default_logs(source: str | None) -> list[tuple[Path, str]]:
    """wtmp/btmp and their rotations (wtmp.1, btmp.1.gz ...), oldest first."""
    found: list[tuple[float, Path, str]] = []
    for name in SOURCES if source is None else (source,):
        for path in [LOG_DIR / name, *LOG_DIR.glob(f"{name}.*")]:
            try:
                found.append((path.stat().st_mtime, path, name))
            except OSError:
                continue
    return [(path, name) for _, path, name in sorted(found)]


def _expand(pattern: str) -> list[Path]:
    """A file, or every file a glob pattern matches (sorted)."""
    if not any(ch in pattern for ch in "*?["):
        return [Path(pattern)]
    path = Path(pattern)
    if path.is_absolute():
        return sorted(Path(path.anchor).glob(str(path.relative_to(path.anchor))))
    return sorted(Path().glob(pattern))


@table(
    name="last_logins",
    description="Login history from wtmp, and failed logins from btmp (Linux utmp format).",
    arguments=[
        Arg(
            "pattern",
            "TEXT",
            "A wtmp/btmp file or glob to read instead of /var/log/{wtmp,btmp}* "
            "(.gz rotations are read too).",
        ),
        Arg(
            "source",
            "TEXT",
            "wtmp or btmp: only that log. With a pattern or path, it says what the files are "
            "(else guessed from their names).",
        ),
        Arg("path", "TEXT", "Only this file."),
        Arg("user", "TEXT", "Only records of this user."),
    ],
    columns=[
        *_SESSION_COLUMNS,
        Col("exit_status", "INTEGER", "Exit status of a DEAD_PROCESS (e_exit)."),
        Col("source", "TEXT", "wtmp (logins, logouts, boots) or btmp (failed logins)."),
        Col("path", "TEXT", "The file the record came from."),
    ],
    platforms=("linux",),
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT user, host, ip, datetime(time, 'unixepoch') FROM last_logins() "
        "WHERE type = 'USER_PROCESS' ORDER BY time DESC LIMIT 20",
        "SELECT ip, count(*) FROM last_logins() WHERE source = 'btmp' GROUP BY ip",
        "SELECT * FROM last_logins('/mnt/evidence/var/log/wtmp*')",
    ),
)
def last_logins(
    ctx: QueryContext,
    pattern: str | None = None,
    source: str | None = None,
    path: str | None = None,
    user: str | None = None,
) -> Iterator[dict[str, Any]]:
    if source is not None and source not in SOURCES:
        raise PluginError("last_logins", f"source must be 'wtmp' or 'btmp', not {source!r}")
    if path is None and pattern is None:
        files = [(str(p), name) for p, name in _default_logs(source)]
    else:
        names = [str(path)] if path is not None else [str(p) for p in _expand(str(pattern))]
        files = [(n, source or ("btmp" if "btmp" in Path(n).name else "wtmp")) for n in names]
    for file, label in files:
        for rec in _records(ctx, "last_logins", Path(file)):
            if user is not None and rec.user != user:
                continue
            row = _session_row(rec)
            row.update(exit_status=rec.exit_status, source=label, path=file)
            yield row


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [users, groups, logged_in, last_logins]
