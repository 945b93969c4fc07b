"""Parser for the Linux ``struct utmp`` files: utmp (sessions now), wtmp (history), btmp (failures).

glibc writes 384-byte records on every 64-bit and 32-bit Linux (``__WORDSIZE_TIME64_COMPAT32``
keeps the times 32-bit), little-endian on the machines that matter. The layout, with offsets::

      0 short ut_type        (2 bytes of padding follow, so ut_pid is aligned)
      4 int   ut_pid
      8 char  ut_line[32]    tty, without "/dev/"
     40 char  ut_id[4]       inittab id or tty suffix
     44 char  ut_user[32]
     76 char  ut_host[256]   remote host, or kernel version for boot records
    332 short e_termination, short e_exit
    336 int   ut_session
    340 int   tv_sec, int tv_usec
    348 int   ut_addr_v6[4]  network byte order; IPv4 uses only the first word
    364 char  __unused[20]

This module only parses; the ``logged_in`` and ``last_logins`` tables live in ``accounts.py``.
"""

from __future__ import annotations

import gzip
import ipaddress
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: One record. ``I`` for tv_sec reads the 32-bit time unsigned, so it lasts until 2106.
RECORD = struct.Struct("<h2xi32s4s32s256shhiIi16s20x")
RECORD_SIZE = RECORD.size  # 384

#: ``ut_type`` values, by the names glibc's <utmp.h> gives them.
UT_TYPES = {
    0: "EMPTY",
    1: "RUN_LVL",
    2: "BOOT_TIME",
    3: "NEW_TIME",
    4: "OLD_TIME",
    5: "INIT_PROCESS",
    6: "LOGIN_PROCESS",
    7: "USER_PROCESS",
    8: "DEAD_PROCESS",
    9: "ACCOUNTING",
}

#: Records read from disk per system call (about 1.5 MB).
_BATCH = 4096


@dataclass(frozen=True)
class UtmpRecord:
    """One decoded record; text fields are cut at their first NUL."""

    type: str
    pid: int
    line: str
    id: str
    user: str
    host: str
    exit_termination: int
    exit_status: int
    session: int
    time: float
    ip: str | None


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _ip(raw: bytes) -> str | None:
    """``ut_addr_v6``: IPv4 in the first four bytes with the rest zero, else IPv6; 0 is none."""
    if not any(raw):
        return None
    if not any(raw[4:]):
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw))


def parse_record(buf: bytes | memoryview, offset: int = 0) -> UtmpRecord:
    """Decode the record at ``offset`` of ``buf``."""
    (ut_type, pid, line, ut_id, user, host, term, exit_, session, sec, usec, addr) = (
        RECORD.unpack_from(buf, offset)
    )
    return UtmpRecord(
        type=UT_TYPES.get(ut_type, str(ut_type)),
        pid=pid,
        line=_text(line),
        id=_text(ut_id),
        user=_text(user),
        host=_text(host),
        exit_termination=term,
        exit_status=exit_,
        session=session,
        time=sec + usec / 1_000_000,
        ip=_ip(addr),
    )


def read_records(
    path: str | Path,
    check: Callable[[], None] | None = None,
    on_truncated: Callable[[int], None] | None = None,
) -> Iterator[UtmpRecord]:
    """Every record of the file at ``path``, oldest first, EMPTY slots included.

    A file whose size is not a multiple of 384 (a write cut short by a crash, or tampering)
    ends in a partial record: it is skipped and ``on_truncated`` gets its size in bytes.
    ``check`` is called once per batch read, so a deadline can stop a huge wtmp. A name ending
    in ``.gz`` (a rotated log) is decompressed.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        while True:
            if check is not None:
                check()
            chunk = f.read(RECORD_SIZE * _BATCH)
            full = len(chunk) - len(chunk) % RECORD_SIZE
            for offset in range(0, full, RECORD_SIZE):
                yield parse_record(chunk, offset)
            if len(chunk) < RECORD_SIZE * _BATCH:
                if full != len(chunk) and on_truncated is not None:
                    on_truncated(len(chunk) - full)
                return
