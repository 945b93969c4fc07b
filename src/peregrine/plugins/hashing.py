"""Hashes: ``md5(path)``, ``sha1(path)``, ``sha256(path)``, ``hash_text(value)`` and ``hash()``.

:func:`file_digests` is the one place a file is hashed; ``glob`` and ``stat`` use it for their
hash columns too. It reads 1 MiB at a time into a reusable buffer (hashlib releases the GIL for
each update, so hashing overlaps with other threads), feeds every requested algorithm from the
same read, and checks the query's deadline between chunks, so a 50 GB file cannot outlive a
time-out. Only regular files are hashed: a FIFO would block and opening some devices has side
effects (``/dev/watchdog``), so they give NULL. Files are opened with ``O_NOATIME`` where the
kernel allows it, so hashing evidence does not change its access time.
"""

# os functions on str paths on purpose: this is the hot path of every file hash.
# ruff: noqa: PTH116

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Lazy, Plugin, scalar, table
from peregrine.hookspecs import hookimpl

#: Bytes read per chunk; the deadline is checked between chunks.
CHUNK = 1 << 20

#: The algorithms a file can be hashed with, by the name a query uses.
FILE_ALGORITHMS: dict[str, Callable[[], Any]] = {
    "md5": lambda: hashlib.md5(usedforsecurity=False),
    "sha1": lambda: hashlib.sha1(usedforsecurity=False),
    "sha256": hashlib.sha256,
}

#: Algorithms ``hash_text`` accepts (fixed-length digests that hashlib always has).
TEXT_ALGORITHMS = tuple(sorted(a for a in hashlib.algorithms_guaranteed if "shake" not in a))

_O_NOATIME = getattr(os, "O_NOATIME", 0)
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_local = threading.local()


def _buffer() -> tuple[bytearray, memoryview]:
    """This thread's read buffer, allocated once (hashing may run on several threads)."""
    buf: tuple[bytearray, memoryview] | None = getattr(_local, "buf", None)
    if buf is None:
        raw = bytearray(CHUNK)
        buf = _local.buf = (raw, memoryview(raw))
    return buf


def open_regular(path: str, known_regular: bool = False) -> int | None:
    """Open ``path`` for reading if it is (or links to) a regular file, else ``None``.

    ``known_regular`` skips the first stat when the caller has just seen a regular file; the
    ``fstat`` after opening still guards against it being swapped for something else.
    Missing paths give ``None``; other errors (permission denied) are raised.
    """
    try:
        if not known_regular and not stat.S_ISREG(os.stat(path).st_mode):
            return None
        try:
            fd = os.open(path, _OPEN_FLAGS | _O_NOATIME)
        except PermissionError:
            if not _O_NOATIME:
                raise
            fd = os.open(path, _OPEN_FLAGS)  # O_NOATIME needs ownership or CAP_FOWNER
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def digest_fd(ctx: QueryContext, fd: int, algorithms: Sequence[str]) -> dict[str, str]:
    """Hash an open file from its current position to the end, every algorithm in one pass."""
    hashers = [FILE_ALGORITHMS[name]() for name in algorithms]
    raw, view = _buffer()
    while True:
        n = os.readv(fd, [raw])
        if not n:
            break
        chunk = view[:n] if n < CHUNK else view
        for h in hashers:
            h.update(chunk)
        ctx.check()
    return {name: h.hexdigest() for name, h in zip(algorithms, hashers, strict=True)}


def file_digests(
    ctx: QueryContext,
    path: str,
    algorithms: Sequence[str],
    plugin: str,
    known_regular: bool = False,
) -> dict[str, str] | None:
    """Hex digests of the file at ``path``; ``None`` if it is missing, not a regular file, or
    unreadable (that last one with a warning naming ``plugin``, so one file cannot end a query).
    """
    try:
        fd = open_regular(path, known_regular)
        if fd is None:
            return None
        try:
            return digest_fd(ctx, fd, algorithms)
        finally:
            os.close(fd)
    except OSError as exc:
        ctx.warn(f"{plugin}(): cannot read {path}: {exc.strerror or exc}")
        return None


def file_digest(
    ctx: QueryContext, path: str, algorithm: str, plugin: str, known_regular: bool = False
) -> str | None:
    """One hex digest of a file (see :func:`file_digests`)."""
    found = file_digests(ctx, path, (algorithm,), plugin, known_regular)
    return None if found is None else found[algorithm]


def _file_hash_function(algorithm: str) -> Plugin:
    def func(ctx: QueryContext, path: Any) -> str | None:
        if path is None:
            return None
        return file_digest(ctx, os.fsdecode(path), algorithm, algorithm)

    return scalar(
        name=algorithm,
        description=(
            f"{algorithm.upper()} of a file's contents, as lowercase hex. NULL if the path does "
            "not exist or is not (a link to) a regular file; unreadable files give NULL and a "
            "warning."
        ),
        arguments=[Arg("path", "TEXT", "Path of the file to hash.", required=True)],
        returns="TEXT",
        platforms=("linux", "darwin", "win32"),
        permissions=("FILESYSTEM_READ",),
        examples=(
            f"SELECT {algorithm}('/etc/passwd')",
            f"SELECT path, {algorithm}(path) FROM glob('/usr/bin/*') WHERE type = 'file'",
        ),
    )(func)


md5, sha1, sha256 = (_file_hash_function(a) for a in ("md5", "sha1", "sha256"))


@scalar(
    name="hash_text",
    description=(
        "Hex digest of a value (not a file): TEXT is hashed as its UTF-8 bytes, a BLOB as is, "
        "a number as its decimal text. NULL gives NULL."
    ),
    arguments=[
        Arg("value", "ANY", "The text or blob to hash.", required=True),
        Arg("algorithm", "TEXT", f"One of {', '.join(TEXT_ALGORITHMS)}.", default="sha256"),
    ],
    returns="TEXT",
    deterministic=True,
    examples=(
        "SELECT hash_text('hello')",
        "SELECT name, hash_text(cmdline, 'md5') FROM pslist()",
    ),
)
def hash_text(ctx: QueryContext, value: Any, algorithm: str = "sha256") -> str | None:
    if value is None:
        return None
    name = str(algorithm).lower()
    if name not in TEXT_ALGORITHMS:
        raise PluginError(
            "hash_text", f"unknown algorithm {algorithm!r}; use one of {', '.join(TEXT_ALGORITHMS)}"
        )
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes):
        data = value
    else:
        data = str(value).encode()
    return hashlib.new(name, data, usedforsecurity=False).hexdigest()


def parse_algorithms(plugin: str, value: Any) -> tuple[str, ...]:
    """``'md5, sha256'`` -> ``('md5', 'sha256')``, refusing names that are not file algorithms."""
    names = [n.strip().lower() for n in str(value or "").split(",") if n.strip()]
    if not names:
        raise PluginError(
            plugin, f"algorithms must name at least one of {', '.join(FILE_ALGORITHMS)}"
        )
    unknown = [n for n in names if n not in FILE_ALGORITHMS]
    if unknown:
        raise PluginError(
            plugin,
            f"unknown algorithm {', '.join(map(repr, unknown))}; "
            f"use a comma-separated list of {', '.join(FILE_ALGORITHMS)}",
        )
    return tuple(dict.fromkeys(names))


class _OnePass:
    """Every requested digest of one file, computed together the first time any is read."""

    __slots__ = ("algorithms", "ctx", "path", "result")

    def __init__(self, ctx: QueryContext, path: str, algorithms: tuple[str, ...]) -> None:
        self.ctx, self.path, self.algorithms = ctx, path, algorithms
        self.result: dict[str, str] | None = None

    def get(self, algorithm: str) -> str | None:
        if self.result is None:
            self.result = file_digests(self.ctx, self.path, self.algorithms, "hash") or {}
        return self.result.get(algorithm)


@table(
    name="hash",
    description=(
        "Digests of one file, all requested algorithms computed in a single read of the file "
        "(only when a hash column is selected). No row if the path is missing or is not (a link "
        "to) a regular file."
    ),
    arguments=[
        Arg("path", "TEXT", "File to hash; select it as a column by naming it.", required=True),
        Arg(
            "algorithms",
            "TEXT",
            "Comma-separated algorithms to compute (others are NULL): md5, sha1, sha256.",
            default="md5,sha1,sha256",
        ),
    ],
    columns=[
        Col("size", "INTEGER", "Size in bytes when the file was opened."),
        Col("md5", "TEXT", "MD5, lowercase hex.", expensive=True),
        Col("sha1", "TEXT", "SHA-1, lowercase hex.", expensive=True),
        Col("sha256", "TEXT", "SHA-256, lowercase hex.", expensive=True),
    ],
    platforms=("linux", "darwin", "win32"),
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT * FROM hash('/bin/ls')",
        "SELECT g.path, h.sha256 FROM glob('/usr/bin/*') g JOIN hash(g.path, 'sha256') h",
        'SELECT j.value AS path, h.* FROM json_each(\'["/bin/ls", "/bin/sh"]\') j '
        "JOIN hash(j.value) h",
    ),
)
def hash_table(
    ctx: QueryContext, path: Any, algorithms: str = "md5,sha1,sha256"
) -> Iterator[tuple[Any, ...]]:
    wanted = parse_algorithms("hash", algorithms)
    name = os.fsdecode(path)
    try:
        st = os.stat(name)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        ctx.warn(f"hash(): cannot stat {name}: {exc.strerror or exc}")
        return
    if not stat.S_ISREG(st.st_mode):
        return
    digests = _OnePass(ctx, name, wanted)
    yield (
        st.st_size,
        *(Lazy(digests.get, a) if a in wanted else None for a in ("md5", "sha1", "sha256")),
    )


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [md5, sha1, sha256, hash_text, hash_table]
