"""The rows that describe one filesystem entry from its ``stat``: shared by ``glob`` and ``stat``.

A row describes the entry itself (``lstat``) unless asked to follow a link: a symlink is
``type = 'link'``. The hash columns hash what the path opens to, so a link to a regular file has
the file's hashes; they, the owner and group names and the birth time are ``Lazy``, computed only
when a statement reads them.
"""

# os functions on str paths on purpose: a Path object per entry would slow a walk down.
# ruff: noqa: PTH115, PTH116

from __future__ import annotations

import ctypes
import grp
import os
import pwd
import stat
import struct
import sys
from collections.abc import Callable
from typing import Any

from peregrine.engine.context import QueryContext
from peregrine.engine.registry import Col, Lazy
from peregrine.plugins.hashing import file_digest

#: The ``type`` column's value for each file type of ``st_mode``.
ENTRY_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "link",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
}

STAT_COLUMNS = [
    Col("name", "TEXT", "Last component of the path."),
    Col("dirname", "TEXT", "Directory holding the entry."),
    Col("type", "TEXT", "file, dir, link, fifo, socket, char or block (of the entry itself)."),
    Col("size", "INTEGER", "Size in bytes (of a link: the length of its target)."),
    Col("mode", "TEXT", "Permission bits in octal, with setuid/setgid/sticky: '0644', '4755'."),
    Col("mode_string", "TEXT", "Permissions as ls shows them: '-rw-r--r--'."),
    Col("uid", "INTEGER", "Owner's user id."),
    Col("gid", "INTEGER", "Group id."),
    Col("owner", "TEXT", "Owner's user name (NULL if the uid has no name)."),
    Col("group_name", "TEXT", "Group name (NULL if the gid has no name)."),
    Col("inode", "INTEGER", "Inode number."),
    Col("device", "INTEGER", "Device number of the filesystem holding it."),
    Col("nlink", "INTEGER", "Number of hard links."),
    Col("atime", "REAL", "Last access, seconds since the epoch."),
    Col("mtime", "REAL", "Last content change, seconds since the epoch."),
    Col("ctime", "REAL", "Last inode change, seconds since the epoch."),
    Col("btime", "REAL", "Creation (birth) time if the OS and filesystem record it, else NULL."),
    Col("is_link", "INTEGER", "1 for a symbolic link."),
    Col("link_target", "TEXT", "Where a symbolic link points (as written in the link)."),
    Col(
        "md5",
        "TEXT",
        "MD5 of the contents (regular files and links to them).",
        expensive=True,
        hidden=True,
    ),
    Col("sha1", "TEXT", "SHA-1 of the contents.", expensive=True, hidden=True),
    Col("sha256", "TEXT", "SHA-256 of the contents.", expensive=True, hidden=True),
]


class _Names:
    """uid/gid -> name, looked up once per query (NSS may be a network directory)."""

    def __init__(self) -> None:
        self.users: dict[int, str | None] = {}
        self.groups: dict[int, str | None] = {}

    def owner(self, uid: int) -> str | None:
        return _looked_up(self.users, uid, pwd.getpwuid)

    def group(self, gid: int) -> str | None:
        return _looked_up(self.groups, gid, grp.getgrgid)


def _looked_up(
    names: dict[int, str | None], number: int, lookup: Callable[[int], Any]
) -> str | None:
    """The name of ``number`` (the first field of its passwd or group entry), kept in ``names``."""
    if number not in names:
        try:
            names[number] = lookup(number)[0]
        except KeyError:
            names[number] = None
    return names[number]


def _statx_function() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.statx
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p]
    func.restype = ctypes.c_int
    return func


_statx = _statx_function()
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_BTIME = 0x800
_STATX_SIZE = 256  # sizeof(struct statx)
_STATX_BTIME_OFFSET = 80  # struct statx_timestamp stx_btime: s64 seconds, u32 nanoseconds


def birth_time(path: str, follow_symlinks: bool = False) -> float | None:
    """The creation time, from ``statx`` on Linux (Python's stat lacks it) or ``st_birthtime``."""
    if _statx is None:
        try:
            st = os.stat(path, follow_symlinks=follow_symlinks)
        except OSError:
            return None
        value = getattr(st, "st_birthtime", None)
        return None if value is None else float(value)
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    flags = 0 if follow_symlinks else _AT_SYMLINK_NOFOLLOW
    if _statx(_AT_FDCWD, os.fsencode(path), flags, _STATX_BTIME, buf) != 0:
        return None
    mask = struct.unpack_from("<I", buf.raw, 0)[0]
    if not mask & _STATX_BTIME:
        return None  # this filesystem does not record it
    seconds, nanos = struct.unpack_from("<qI", buf.raw, _STATX_BTIME_OFFSET)
    return float(seconds + nanos / 1e9)


def read_link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


class StatValues:
    """The values of :data:`STAT_COLUMNS` after ``name`` and ``dirname``, in order, from a
    ``stat`` result. Columns the statement does not read are left ``None``: a mode string and
    the ``Lazy`` objects cost more than the ``lstat`` itself."""

    def __init__(
        self, ctx: QueryContext, plugin: str, follow: bool, read: frozenset[str] | None
    ) -> None:
        self.ctx, self.plugin, self.follow = ctx, plugin, follow
        self.names = _Names()
        wanted = {c.name for c in STAT_COLUMNS} if read is None else read
        self.mode, self.mode_string = "mode" in wanted, "mode_string" in wanted
        self.owner, self.group = "owner" in wanted, "group_name" in wanted
        self.btime, self.link_target = "btime" in wanted, "link_target" in wanted
        self.md5, self.sha1, self.sha256 = "md5" in wanted, "sha1" in wanted, "sha256" in wanted

    def __call__(self, path: str, st: os.stat_result) -> tuple[Any, ...]:
        mode = st.st_mode
        kind = ENTRY_TYPES.get(stat.S_IFMT(mode), "unknown")
        is_link = kind == "link"
        hashable = kind == "file" or is_link
        regular = kind == "file"
        ctx, plugin = self.ctx, self.plugin
        return (
            kind,
            st.st_size,
            f"{mode & 0o7777:04o}" if self.mode else None,
            stat.filemode(mode) if self.mode_string else None,
            st.st_uid,
            st.st_gid,
            Lazy(self.names.owner, st.st_uid) if self.owner else None,
            Lazy(self.names.group, st.st_gid) if self.group else None,
            st.st_ino,
            st.st_dev,
            st.st_nlink,
            st.st_atime,
            st.st_mtime,
            st.st_ctime,
            Lazy(birth_time, path, self.follow) if self.btime else None,
            int(is_link),
            Lazy(read_link, path) if is_link and self.link_target else None,
            Lazy(file_digest, ctx, path, "md5", plugin, regular) if hashable and self.md5 else None,
            Lazy(file_digest, ctx, path, "sha1", plugin, regular)
            if hashable and self.sha1
            else None,
            Lazy(file_digest, ctx, path, "sha256", plugin, regular)
            if hashable and self.sha256
            else None,
        )


def split_path(path: str) -> tuple[str, str]:
    head, _, tail = path.rstrip("/").rpartition("/") if path != "/" else ("", "", "/")
    return tail, head or ("/" if path.startswith("/") else ".")
