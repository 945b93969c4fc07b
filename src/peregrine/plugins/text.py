"""Text files: ``lines`` reads a file line by line, ``grep`` finds regex matches in one.

Both stream the file, so a multi-gigabyte log costs memory for one line only. A "line" is at most
:data:`MAX_LINE` bytes: a longer run without a newline (typical of binary files) is cut into pieces
of that size, so a binary file cannot make a single line eat all memory.

``grep`` searches each line decoded as UTF-8 with ``surrogateescape``: valid UTF-8 text matches
exactly as it reads, and invalid (binary) bytes are kept as lone surrogates that no ordinary
pattern character matches, so ASCII strings inside binaries are still found and nothing crashes.
The text both return is safe for SQLite: bytes that are not UTF-8, and NUL (where SQLite's text
functions stop, so a line starting with one looked empty), become U+FFFD. The exact bytes are in
the hidden BLOB column ``line_bytes``.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Plugin, table
from peregrine.hookspecs import hookimpl
from peregrine.plugins.hashing import open_regular

#: The longest line returned whole; longer runs without a newline are split into pieces.
MAX_LINE = 1 << 20
_CHECK_EVERY = 256


def _open(ctx: QueryContext, plugin: str, path: str) -> BinaryIO | None:
    """Open a regular file for reading, or ``None``: silently for a missing path or a directory
    (a glob joined to grep yields those), with a warning for anything else. A FIFO, socket or
    device is never opened: opening a FIFO nobody writes would block the query for good."""
    try:
        fd = open_regular(path)
    except OSError as exc:
        ctx.warn(f"{plugin}(): cannot read {path}: {exc.strerror or exc}")
        return None
    if fd is not None:
        return os.fdopen(fd, "rb")
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return None
    if not stat.S_ISDIR(mode):
        ctx.warn(f"{plugin}(): {path} is not a regular file (a FIFO, socket or device); skipped")
    return None


def _read_lines(ctx: QueryContext, handle: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
    """Yield (line number, byte offset, line without its newline), checking the deadline."""
    offset = 0
    number = 0
    while True:
        raw = handle.readline(MAX_LINE)
        if not raw:
            return
        number += 1
        if number % _CHECK_EVERY == 0:
            ctx.check()
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if line.endswith(b"\r"):
            line = line[:-1]
        yield number, offset, line
        offset += len(raw)


def _text(line: bytes) -> str:
    """The bytes as text SQLite keeps whole: NUL and bytes that are not UTF-8 become U+FFFD."""
    return line.decode("utf-8", "replace").replace("\x00", "\ufffd")


def _unescape(text: str) -> str:
    """A surrogateescape-decoded string as text SQLite keeps whole (see ``_text``)."""
    return _text(text.encode("utf-8", "surrogateescape"))


_LINE_BYTES = Col(
    "line_bytes",
    "BLOB",
    "The line's bytes exactly as in the file, NUL and all.",
    hidden=True,
)


@table(
    name="lines",
    description="The lines of a text file, streamed (the whole file is never held in memory).",
    arguments=[
        Arg("path", "TEXT", "File to read; select it as a column by naming it.", required=True),
        Arg("start", "INTEGER", "First line number to return (1-based).", default=1),
        Arg("count", "INTEGER", "Return at most this many lines (default: to the end)."),
    ],
    columns=[
        Col("line_number", "INTEGER", "Line number, from 1."),
        Col(
            "line",
            "TEXT",
            "The line without its newline (UTF-8; NUL and bytes that are not UTF-8 become "
            "U+FFFD, so SQLite's text functions see the whole line).",
        ),
        Col("offset", "INTEGER", "Byte offset of the line's start in the file."),
        _LINE_BYTES,
    ],
    platforms=("linux", "darwin", "win32"),
    examples=(
        "SELECT line_number, line FROM lines('/etc/passwd')",
        "SELECT line FROM lines('/var/log/syslog', 1000, 50)",
        "SELECT g.path, l.line FROM glob('/etc/*.conf') g JOIN lines(g.path) l",
    ),
)
def lines(
    ctx: QueryContext, path: str, start: int = 1, count: int | None = None
) -> Iterator[dict[str, Any]]:
    start = int(start if start is not None else 1)
    if count is not None and int(count) < 0:
        raise PluginError("lines", f"count must be 0 or more, not {count}")
    handle = _open(ctx, "lines", str(path))
    if handle is None:
        return
    returned = 0
    with handle:
        for number, offset, line in _read_lines(ctx, handle):
            if count is not None and returned >= int(count):
                return
            if number < start:
                continue
            returned += 1
            yield {
                "line_number": number,
                "line": _text(line),
                "offset": offset,
                "line_bytes": line,
            }


@functools.lru_cache(maxsize=256)
def compile_regex(plugin: str, pattern: str, flags: int = 0) -> re.Pattern[str]:
    """Compile once per pattern; a bad one is the user's error, named with the regex's message."""
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise PluginError(plugin, f"bad regular expression {pattern!r}: {exc}") from exc


@table(
    name="grep",
    description=(
        "Lines of a file that match a Python regular expression, with the match and its groups. "
        "Binary files are searched too (bytes that are not UTF-8 never match text)."
    ),
    arguments=[
        Arg(
            "path",
            "TEXT",
            "File to search; to search many, join: glob(...) g JOIN grep(g.path, ...).",
            required=True,
        ),
        Arg("pattern", "TEXT", "Python regular expression (re syntax).", required=True),
        Arg("ignore_case", "INTEGER", "1 to match regardless of case.", default=0),
        Arg("max_matches", "INTEGER", "Stop after this many matching lines in the file."),
    ],
    columns=[
        Col("line_number", "INTEGER", "Line number, from 1."),
        Col(
            "line",
            "TEXT",
            "The matching line (UTF-8; NUL and bytes that are not UTF-8 become U+FFFD, so "
            "SQLite's text functions see the whole line).",
        ),
        Col("offset", "INTEGER", "Byte offset of the line's start in the file."),
        Col("match", "TEXT", "Text of the first match on the line (as line)."),
        Col(
            "groups",
            "JSON",
            "Groups of the first match, as a JSON list (null for unmatched; text as line).",
        ),
        _LINE_BYTES,
    ],
    platforms=("linux", "darwin", "win32"),
    examples=(
        "SELECT line_number, line FROM grep('/etc/ssh/sshd_config', '^PermitRootLogin')",
        "SELECT g.path, m.* FROM glob('/etc/**') g JOIN grep(g.path, 'password\\s*=') m",
        "SELECT path, line FROM grep WHERE path = '/var/log/auth.log' AND pattern = 'Failed'",
    ),
)
def grep(
    ctx: QueryContext,
    path: str,
    pattern: str,
    ignore_case: int = 0,
    max_matches: int | None = None,
) -> Iterator[dict[str, Any]]:
    flags = re.IGNORECASE if ignore_case is not None and int(ignore_case) else 0
    regex = compile_regex("grep", str(pattern), flags)
    if max_matches is not None and int(max_matches) <= 0:
        return
    handle = _open(ctx, "grep", str(path))
    if handle is None:
        return
    found = 0
    with handle:
        for number, offset, line in _read_lines(ctx, handle):
            hit = regex.search(line.decode("utf-8", "surrogateescape"))
            if hit is None:
                continue
            found += 1
            yield {
                "line_number": number,
                "line": _text(line),
                "offset": offset,
                "match": _unescape(hit.group(0)),
                "groups": [None if g is None else _unescape(g) for g in hit.groups()],
                "line_bytes": line,
            }
            if max_matches is not None and found >= int(max_matches):
                return


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [lines, grep]
