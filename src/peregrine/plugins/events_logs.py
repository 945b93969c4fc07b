"""Event plugins over logs: ``log_lines`` follows text files, ``journal_lines`` the journal.

``log_lines`` follows each file by name (see :mod:`peregrine.plugins.tail`): rotation and
truncation are handled, and files that match the patterns later are followed from their start.
``journal_lines`` runs ``journalctl -f -o json``; a host without it gets an error saying so.
"""

from __future__ import annotations

import glob
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Plugin, table
from peregrine.hookspecs import hookimpl
from peregrine.plugins.files import patterns_argument
from peregrine.plugins.tail import Tail
from peregrine.plugins.text import MAX_LINE

#: Seconds between expanding the patterns again, for files that appear later.
RESCAN_EVERY = 10.0
JOURNAL_DIRS = ("/var/log/journal", "/run/log/journal")


def sqlite_text(raw: bytes) -> str:
    """Bytes as text SQLite keeps whole: NUL and bytes that are not UTF-8 become U+FFFD."""
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


class LineFollower:
    """Whole lines appended to one file; a line cut by rotation ends with its file."""

    def __init__(self, path: str, from_start: bool) -> None:
        self.tail = Tail(path, from_start)
        self.pending = b""
        self.pending_offset = 0

    def lines(self) -> Iterator[tuple[bytes, int]]:
        for chunk, offset in self.tail.read():
            if offset == 0 and self.pending:  # a new file (rotated, truncated): end the old line
                yield self.pending, self.pending_offset
                self.pending = b""
            if not self.pending:
                self.pending_offset = offset
            data = self.pending + chunk
            start = 0
            while (end := data.find(b"\n", start)) >= 0 or len(data) - start > MAX_LINE:
                end = start + MAX_LINE if end < 0 or end - start > MAX_LINE else end
                yield data[start:end].rstrip(b"\r"), self.pending_offset + start
                start = end + 1 if end < len(data) and data[end : end + 1] == b"\n" else end
            self.pending_offset += start
            self.pending = data[start:]

    def close(self) -> None:
        self.tail.close()


def _expand(patterns: list[str]) -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        found += sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]  # noqa: PTH207
    return [p for p in found if not Path(p).is_dir()]


@table(
    name="log_lines",
    description=(
        "Event plugin (never ends): lines appended to text files, followed by name like "
        "`tail -F`: rotation (a new file under the name) and truncation are handled, and files "
        "matching a pattern later are followed from their start."
    ),
    arguments=[
        Arg("paths", "TEXT", "A path or glob pattern, or a JSON array of them.", required=True),
        Arg(
            "from_start", "INTEGER", "1: the lines already there too; 0: new ones only.", default=0
        ),
        Arg("period", "REAL", "Seconds between looks for new lines.", default=0.25),
    ],
    columns=[
        Col("time", "REAL", "When the line was read, seconds since the epoch."),
        Col("path", "TEXT", "The file it was appended to."),
        Col("line", "TEXT", "The line, without its newline (NUL and non-UTF-8 bytes as U+FFFD)."),
        Col("offset", "INTEGER", "Byte offset of the line in its file."),
    ],
    permissions=("FILESYSTEM_READ",),
    examples=("SELECT path, line FROM log_lines('/var/log/*.log', 1) LIMIT 1",),
    events=True,
)
def log_lines(
    ctx: QueryContext, paths: Any, from_start: int = 0, period: float = 0.25
) -> Iterator[dict[str, Any]]:
    patterns = patterns_argument(paths, "log_lines")
    if period is None or float(period) < 0.01:
        raise PluginError("log_lines", "period must be at least 0.01 seconds")
    followers = {p: LineFollower(p, bool(from_start)) for p in _expand(patterns)}
    next_scan = time.monotonic() + RESCAN_EVERY
    try:
        while True:
            for path, follower in list(followers.items()):
                for raw, offset in follower.lines():
                    yield {
                        "time": time.time(),
                        "path": path,
                        "line": sqlite_text(raw),
                        "offset": offset,
                    }
            if time.monotonic() >= next_scan:
                for path in _expand(patterns):
                    followers.setdefault(path, LineFollower(path, from_start=True))
                next_scan = time.monotonic() + RESCAN_EVERY
            ctx.wait(float(period))
    finally:
        for follower in followers.values():
            follower.close()


def _journal_row(entry: dict[str, Any]) -> dict[str, Any]:
    def text(value: Any) -> Any:
        if isinstance(value, list):  # journalctl's JSON for a field that is not valid text
            return sqlite_text(bytes(value))
        return value

    realtime = entry.get("__REALTIME_TIMESTAMP")
    pid = entry.get("_PID")
    priority = entry.get("PRIORITY")
    return {
        "time": int(realtime) / 1e6 if realtime else time.time(),
        "unit": entry.get("_SYSTEMD_UNIT"),
        "identifier": entry.get("SYSLOG_IDENTIFIER"),
        "pid": int(pid) if pid else None,
        "priority": int(priority) if priority else None,
        "message": text(entry.get("MESSAGE")),
        "hostname": entry.get("_HOSTNAME"),
        "fields": {k: text(v) for k, v in entry.items() if not k.startswith("__")},
    }


def journal_command(unit: str | None) -> list[str]:
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise PluginError(
            "journal_lines",
            "journalctl is not installed, so this host has no systemd journal to follow; "
            "follow its log files with log_lines() instead",
        )
    command = [journalctl, "--follow", "--output=json", "--lines=0", "--no-pager"]
    return [*command, f"--unit={unit}"] if unit else command


@table(
    name="journal_lines",
    description=(
        "Event plugin (never ends): entries added to the systemd journal (`journalctl -f -o "
        "json`), optionally of one unit. An error on a host without journalctl."
    ),
    arguments=[Arg("unit", "TEXT", "Only this systemd unit's entries (e.g. ssh.service).")],
    columns=[
        Col("time", "REAL", "When it was logged, seconds since the epoch."),
        Col("unit", "TEXT", "The systemd unit that logged it."),
        Col("identifier", "TEXT", "Its syslog identifier (sshd, sudo, kernel ...)."),
        Col("pid", "INTEGER", "The process that logged it."),
        Col("priority", "INTEGER", "Syslog priority: 0 emergency ... 7 debug."),
        Col("message", "TEXT", "The message."),
        Col("hostname", "TEXT", "The host it came from."),
        Col("fields", "JSON", "Every field of the entry."),
    ],
    platforms=("linux",),
    permissions=("FILESYSTEM_READ",),
    examples=("SELECT identifier, message FROM journal_lines() LIMIT 1",),
    events=True,
)
def journal_lines(ctx: QueryContext, unit: str | None = None) -> Iterator[dict[str, Any]]:
    command = journal_command(unit)
    if not any(Path(d).is_dir() and any(Path(d).iterdir()) for d in JOURNAL_DIRS):
        ctx.warn(f"journal_lines(): no journal files under {' or '.join(JOURNAL_DIRS)}")
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.25)
            ctx.check()
            if not ready:
                continue
            data = os.read(fd, 256 * 1024)
            if not data:
                raise PluginError("journal_lines", f"journalctl ended (exit code {proc.wait()})")
            *entries, pending = (pending + data).split(b"\n")
            for raw in entries:
                try:
                    yield _journal_row(json.loads(raw))
                except ValueError:
                    ctx.warn("journal_lines(): an entry that is not JSON was skipped")
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [log_lines, journal_lines]
