"""Files: ``glob`` finds files by pattern, ``stat`` describes a path, ``read_file`` reads bytes.

How ``glob`` matches and walks is in ``glob_walk.py``; the columns that describe an entry (both
``glob``'s and ``stat``'s) are in ``stat_rows.py``.
"""

# os functions on str paths on purpose: a Path object per entry would slow a walk down.
# ruff: noqa: PTH114, PTH116

from __future__ import annotations

import itertools
import json
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Lazy, Plugin, table
from peregrine.hookspecs import hookimpl
from peregrine.plugins.glob_walk import (
    GlobRows,
    Segment,
    Walker,
    expand_braces,
    group_patterns,
    parse_pattern,
)
from peregrine.plugins.hashing import open_regular
from peregrine.plugins.stat_rows import (
    ENTRY_TYPES,
    STAT_COLUMNS,
    StatValues,
    read_link,
    split_path,
)

#: ``read_file`` returns at most this much in one row; use ``chunk_size`` for more.
MAX_READ = 64 << 20
DEFAULT_READ = 1 << 20


def patterns_argument(pattern: Any, plugin: str = "glob") -> list[str]:
    """One pattern, or a JSON array of them (an artifact's list parameter)."""
    text = os.fsdecode(pattern) if isinstance(pattern, bytes) else str(pattern)
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise PluginError(plugin, f"pattern looks like a JSON array but is not: {exc}") from exc
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PluginError(plugin, "a JSON pattern must be an array of strings")
        if not value:
            return []  # an empty list (e.g. an artifact's list parameter left empty) finds nothing
        patterns = value
    else:
        patterns = [text]
    if not patterns or any(not p.strip() for p in patterns):
        raise PluginError(plugin, f"pattern must not be empty; e.g. {plugin}('/etc/*.conf')")
    return patterns


def _flag(plugin: str, name: str, value: Any) -> bool:
    if value in (0, 1, True, False, "0", "1"):
        return bool(int(value))
    raise PluginError(plugin, f"{name} must be 0 or 1, not {value!r}")


@table(
    name="glob",
    description=(
        "Files and directories matching shell patterns (*, ?, [a-z], {a,b}, and ** for any depth), "
        "with their metadata; hashes are computed only when selected."
    ),
    batches=True,
    arguments=[
        Arg(
            "pattern",
            "TEXT",
            "Shell pattern, e.g. '/etc/**/*.conf', or a JSON array of patterns. '*' matches "
            "dot-files too; '**' matches any number of directories (not the base itself).",
            required=True,
        ),
        Arg("root", "TEXT", "Directory that relative patterns start from (default: working dir)."),
        Arg("max_depth", "INTEGER", "How many directory levels one '**' may match.", default=64),
        Arg(
            "follow_symlinks",
            "INTEGER",
            "1 to let '**' enter symlinked directories (loops are detected and skipped).",
            default=0,
        ),
        Arg(
            "one_filesystem",
            "INTEGER",
            "1 to stay on the base's filesystem (like find -xdev).",
            default=0,
        ),
        Arg("include_dirs", "INTEGER", "0 to return only non-directories.", default=1),
        Arg(
            "type",
            "TEXT",
            "Filter: `WHERE type = 'file'` makes rows of that type only (the walk still enters "
            "every directory the pattern reaches).",
            exact=True,
        ),
    ],
    columns=[Col("path", "TEXT", "Full path of the entry."), *STAT_COLUMNS],
    platforms=("linux", "darwin"),
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT path, size, mtime FROM glob('/etc/*.conf')",
        "SELECT path, sha256 FROM glob('/usr/bin/**') WHERE type = 'file'",
        "SELECT path FROM glob('/home/*/.ssh/{authorized_keys,id_*}')",
        "SELECT path, mode FROM glob('/**', 1, 64, 0, 1) WHERE mode LIKE '4%' AND type = 'file'",
        "SELECT u.username, g.path FROM users() u JOIN glob(u.home || '/.*') g",
    ),
)
def glob(
    ctx: QueryContext,
    pattern: Any,
    root: str | None = None,
    max_depth: int = 64,
    follow_symlinks: int = 0,
    one_filesystem: int = 0,
    include_dirs: int = 1,
    type: Any = None,
) -> Iterator[Sequence[tuple[Any, ...]]]:
    try:
        depth = int(max_depth if max_depth is not None else 64)
    except (TypeError, ValueError):
        raise PluginError("glob", f"max_depth must be a whole number, not {max_depth!r}") from None
    if depth < 0:
        raise PluginError("glob", f"max_depth must be 0 or more, not {depth}")
    follow = _flag("glob", "follow_symlinks", follow_symlinks)
    one_fs = _flag("glob", "one_filesystem", one_filesystem)
    dirs = _flag("glob", "include_dirs", include_dirs)
    parsed: list[tuple[str, tuple[Segment, ...]]] = []
    for text in patterns_argument(pattern):
        try:
            alternatives = expand_braces(text)
        except ValueError as exc:
            raise PluginError("glob", f"{text!r}: {exc}") from None
        parsed.extend(parse_pattern(alt, root) for alt in alternatives)
    # As SQLite's `=` compares: a number or a blob is never equal to a type's name.
    every_type = type is None
    if not every_type and not isinstance(type, str):
        return iter(())
    rows = GlobRows(ctx, dirs, type, every_type)  # yielded in batches: see TablePlugin
    walks: Iterator[Iterator[Sequence[tuple[Any, ...]]]] = (
        Walker(ctx, base, segments, depth, follow, one_fs, rows).walk()
        for base, segments in group_patterns(parsed)
    )
    return itertools.chain.from_iterable(walks)


@table(
    name="stat",
    description="Metadata of one path (no row if it does not exist); hashes only when selected.",
    arguments=[
        Arg("path", "TEXT", "Path to describe; select it as a column by naming it.", required=True),
        Arg(
            "follow_symlinks",
            "INTEGER",
            "1 to describe what a symlink points to instead of the link itself.",
            default=0,
        ),
    ],
    columns=STAT_COLUMNS,
    platforms=("linux", "darwin"),
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT path, mode, owner, mtime FROM stat('/etc/shadow')",
        "SELECT p.pid, s.mtime, s.sha256 FROM pslist() p JOIN stat(p.exe) s",
        'SELECT j.value AS path, s.size FROM json_each(\'["/etc/hosts", "/etc/passwd"]\') j '
        "JOIN stat(j.value) s",
    ),
)
def stat_table(ctx: QueryContext, path: Any, follow_symlinks: int = 0) -> Iterator[tuple[Any, ...]]:
    follow = _flag("stat", "follow_symlinks", follow_symlinks)
    name = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    if not name:
        return
    try:
        st = os.stat(name, follow_symlinks=follow)
        is_link = follow and os.path.islink(name)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        ctx.warn(f"stat(): cannot stat {name}: {exc.strerror or exc}")
        return
    base, dirname = split_path(name)
    values = list(StatValues(ctx, "stat", follow, ctx.columns_read)(name, st))
    if is_link:
        values[15] = 1  # is_link describes the path even when the row describes its target
        values[16] = Lazy(read_link, name)
    yield (base, dirname, *values)


def _int_arg(plugin: str, name: str, value: Any, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise PluginError(plugin, f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise PluginError(plugin, f"{name} must be {minimum} or more, not {number}")
    return number


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@table(
    name="read_file",
    description=(
        "Bytes of a file: one row of up to 1 MiB from an offset, or one row per chunk. "
        "No row for a missing path; a directory or special file gives no row and a warning."
    ),
    arguments=[
        Arg("path", "TEXT", "File to read (regular file or block device).", required=True),
        Arg("offset", "INTEGER", "Where to start; negative counts from the end.", default=0),
        Arg(
            "length",
            "INTEGER",
            f"Bytes to read: default 1 MiB, at most {MAX_READ >> 20} MiB; with chunk_size, "
            "default to the end of the file.",
        ),
        Arg(
            "chunk_size",
            "INTEGER",
            f"Return one row per chunk of this many bytes (at most {MAX_READ >> 20} MiB).",
        ),
    ],
    columns=[
        Col("data_offset", "INTEGER", "File offset of the first byte in data."),
        Col("data_length", "INTEGER", "Bytes in data (fewer than asked at the end of the file)."),
        Col("data", "BLOB", "The bytes."),
        Col(
            "text",
            "TEXT",
            "The bytes as UTF-8, invalid bytes replaced.",
            expensive=True,
            hidden=True,
        ),
    ],
    platforms=("linux", "darwin"),
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT text FROM read_file('/etc/hostname')",
        "SELECT hex(data) FROM read_file('/bin/ls', 0, 4)",
        "SELECT g.path FROM glob('/tmp/**') g JOIN read_file(g.path, 0, 4) r "
        "WHERE g.type = 'file' AND r.data = x'7f454c46'",
        "SELECT data_offset, length(data) FROM read_file('/var/log/syslog', 0, NULL, 65536)",
    ),
)
def read_file(
    ctx: QueryContext,
    path: Any,
    offset: int = 0,
    length: int | None = None,
    chunk_size: int | None = None,
) -> Iterator[tuple[Any, ...]]:
    start = _int_arg("read_file", "offset", 0 if offset is None else offset, -(1 << 62))
    chunk = None if chunk_size is None else _int_arg("read_file", "chunk_size", chunk_size, 1)
    if chunk is not None and chunk > MAX_READ:
        raise PluginError("read_file", f"chunk_size is at most {MAX_READ} bytes (64 MiB)")
    want = None if length is None else _int_arg("read_file", "length", length, 0)
    if chunk is None:
        want = DEFAULT_READ if want is None else want
        if want > MAX_READ:
            raise PluginError(
                "read_file",
                f"length {want} is over the {MAX_READ >> 20} MiB limit for one row; "
                "give chunk_size to read more as several rows",
            )
    name = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    fd = _open_for_read(ctx, name)
    if fd is None:
        return
    try:
        if start < 0:
            start = max(0, os.fstat(fd).st_size + start)
        os.lseek(fd, start, os.SEEK_SET)
        position = start
        while want is None or position - start < want:
            ctx.check()
            size = chunk if chunk is not None else want
            if want is not None:
                size = min(size or 0, want - (position - start))
            data = _read_up_to(fd, size or 0)
            if not data:
                if position == start:
                    yield (start, 0, b"", "")  # the file exists and is empty there
                return
            yield (position, len(data), data, Lazy(_decode, data))
            position += len(data)
            if chunk is None:
                return
    except OSError as exc:
        ctx.warn(f"read_file(): cannot read {name}: {exc.strerror or exc}")
    finally:
        os.close(fd)


def _open_for_read(ctx: QueryContext, name: str) -> int | None:
    """A descriptor for a regular file or block device; other types warn and give ``None``."""
    try:
        st = os.stat(name)
        if stat.S_ISREG(st.st_mode):
            return open_regular(name, known_regular=True)
        if stat.S_ISBLK(st.st_mode):
            return os.open(name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        ctx.warn(f"read_file(): cannot read {name}: {exc.strerror or exc}")
        return None
    kind = ENTRY_TYPES.get(stat.S_IFMT(st.st_mode), "special file")
    ctx.warn(f"read_file(): {name} is a {kind}, not a file; nothing read")
    return None


def _read_up_to(fd: int, size: int) -> bytes:
    """Read ``size`` bytes unless the file ends first (files in /proc return short reads)."""
    parts = []
    while size > 0:
        data = os.read(fd, size)
        if not data:
            break
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [glob, stat_table, read_file]
