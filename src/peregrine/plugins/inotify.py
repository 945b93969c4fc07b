"""Linux inotify through ctypes (libc's three calls): no dependency, no compiled code."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

#: What a change to a directory's entries looks like, in the words a row uses.
ACTIONS = (
    (IN_CREATE, "created"),
    (IN_MODIFY, "modified"),
    (IN_CLOSE_WRITE, "written"),
    (IN_ATTRIB, "attributes"),
    (IN_DELETE, "deleted"),
    (IN_MOVED_FROM, "moved_from"),
    (IN_MOVED_TO, "moved_to"),
)
WATCH_MASK = IN_ONLYDIR | IN_DELETE_SELF | IN_MOVE_SELF
for _bit, _ in ACTIONS:
    WATCH_MASK |= _bit

_EVENT = struct.Struct("iIII")


@dataclass(frozen=True)
class Event:
    wd: int
    mask: int
    cookie: int
    name: str


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


class Inotify:
    """One inotify instance: add directory watches, read events without blocking."""

    def __init__(self) -> None:
        self.fd = _check(_libc().inotify_init1(IN_NONBLOCK | IN_CLOEXEC))

    def add_directory(self, path: str) -> int:
        """Watch a directory's entries (not following a symlink); its watch descriptor."""
        flags = WATCH_MASK | IN_DONT_FOLLOW
        return _check(_libc().inotify_add_watch(self.fd, os.fsencode(path), flags))

    def remove(self, wd: int) -> None:
        _libc().inotify_rm_watch(self.fd, wd)

    def read(self) -> Iterator[Event]:
        """The events waiting now (none if there are none)."""
        try:
            data = os.read(self.fd, 256 * 1024)
        except BlockingIOError:
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, cookie, size = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            raw = data[offset : offset + size].split(b"\0", 1)[0]
            offset += size
            yield Event(wd, mask, cookie, os.fsdecode(raw))

    def close(self) -> None:
        os.close(self.fd)


def action(mask: int) -> str | None:
    """The row's word for an event's mask (the first that applies), None for bookkeeping."""
    return next((word for bit, word in ACTIONS if mask & bit), None)
