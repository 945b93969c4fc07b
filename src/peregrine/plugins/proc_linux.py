"""``pslist``'s rows on Linux, read from ``/proc`` directly: only the files its columns need.

psutil reads a process's ``stat`` twice before the first attribute (to tell a reused pid),
``status`` for the uid, ``statm`` for memory, looks the user up once per process, and scans
``/dev`` once per process for the terminal: 4 to 6 files and 0.25 ms a process. Here one
``stat`` gives ppid, name, state, start time, CPU times, memory, threads and terminal number;
``cmdline``, ``exe``, ``cwd`` and ``status`` are read only for the columns that need them; user
names and the terminal map are looked up once per query. The values are psutil's, computed the
same way (``tests/plugins/test_pslist.py`` compares them).
"""

# os.* on /proc paths: a Path per file would cost more than the read.
# ruff: noqa: PTH110, PTH115, PTH116, PTH119, PTH207, PTH208
from __future__ import annotations

import glob
import os
import pwd
from collections.abc import Iterable, Iterator
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: psutil's names of the ``stat`` state letters.
STATES = {
    "R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped", "t": "tracing-stop",
    "Z": "zombie", "X": "dead", "x": "dead", "K": "wake-kill", "W": "waking", "I": "idle",
    "P": "parked",
}  # fmt: skip
#: Columns and the file each needs besides ``stat`` (read for every process).
_NEEDS = {
    "cmdline": "cmdline", "argv": "cmdline", "exe": "exe", "exe_deleted": "exe", "cwd": "cwd",
    "uid": "status", "username": "status",
}  # fmt: skip
_DELETED = " (deleted)"


class ProcReader:
    """Reads the rows of one query: the files its ``columns`` need (None: every column)."""

    def __init__(self, columns: frozenset[str] | None) -> None:
        wanted = set(_NEEDS) | {"terminal"} if columns is None else columns
        self.files = {_NEEDS[column] for column in wanted if column in _NEEDS}
        self.full_names = "name" in wanted
        self.boot_time = _boot_time()
        self.terminals = _terminal_map() if "terminal" in wanted else {}
        self._users: dict[int, str] = {}

    def pids(self) -> list[int]:
        """Every process id, ascending (as psutil lists them)."""
        return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())

    def rows(self, pids: Iterable[int]) -> Iterator[dict[str, Any]]:
        """A row per process still there when it is read."""
        for pid in pids:
            try:
                row = self.row(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue  # it exited while we looked: not an error
            yield row

    def row(self, pid: int) -> dict[str, Any]:
        """The row of ``pid``; FileNotFoundError or ProcessLookupError when it is gone."""
        stat = _read(f"/proc/{pid}/stat")
        close = stat.rfind(b")")
        name = stat[stat.find(b"(") + 1 : close].decode(errors="surrogateescape")
        fields = stat[close + 2 :].split()
        state = fields[0].decode()
        zombie = state == "Z"
        long_name = self.full_names and len(name) >= 15  # the kernel cut it: argv[0] says
        argv = self._argv(pid, zombie) if "cmdline" in self.files or long_name else None
        if long_name and argv:
            full = os.path.basename(argv[0])
            name = full if full.startswith(name) else name
        exe, deleted = self._link(pid, "exe", zombie) if "exe" in self.files else (None, False)
        uid = self._uid(pid) if "status" in self.files else None
        return {
            "pid": pid,
            "ppid": int(fields[1]),
            "name": name,
            "exe": exe or None,
            "cmdline": " ".join(argv) if argv else None,
            "argv": argv,
            "username": None if uid is None else self._user(uid),
            "uid": uid,
            "status": STATES.get(state, "?"),
            "create_time": float(fields[19]) / CLOCK_TICKS + self.boot_time,
            "user_time": float(fields[11]) / CLOCK_TICKS,
            "system_time": float(fields[12]) / CLOCK_TICKS,
            "rss": int(fields[21]) * PAGE_SIZE,
            "vms": int(fields[20]),
            "num_threads": int(fields[17]),
            "terminal": self.terminals.get(int(fields[4])),
            "cwd": self._link(pid, "cwd", zombie)[0] or None if "cwd" in self.files else None,
            "exe_deleted": int(deleted) if exe else 0,
        }

    def _argv(self, pid: int, zombie: bool) -> list[str] | None:
        """psutil's ``cmdline()``: NUL-separated, or spaces for a process that rewrote it."""
        data = _read(f"/proc/{pid}/cmdline").decode(errors="surrogateescape")
        if not data:
            return None if zombie else []
        sep = "\x00" if data.endswith("\x00") else " "
        if data.endswith(sep):
            data = data[:-1]
        argv = data.split(sep)
        if sep == "\x00" and len(argv) == 1 and " " in data:
            argv = data.split(" ")
        return argv

    def _link(self, pid: int, which: str, zombie: bool) -> tuple[str | None, bool]:
        """``exe`` or ``cwd`` as psutil gives it ("" for a kernel thread, None unreadable),
        and whether the link says its target was deleted."""
        try:
            link = os.readlink(f"/proc/{pid}/{which}")
        except PermissionError:
            return None, False
        except (FileNotFoundError, ProcessLookupError):
            if not os.path.lexists(f"/proc/{pid}"):
                raise
            return None if zombie else "", False
        target = link.split("\x00")[0]
        if target.endswith(_DELETED) and not os.path.exists(target):
            target = target[: -len(_DELETED)]
        return target, link.endswith(_DELETED)

    def _uid(self, pid: int) -> int:
        """The real user id, from ``status``."""
        status = _read(f"/proc/{pid}/status")
        start = status.index(b"\nUid:") + 5
        return int(status[start : status.index(b"\t", start + 1)])

    def _user(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)  # psutil's answer for a uid without a name
            self._users[uid] = name
        return name


def _read(path: str) -> bytes:
    """A whole /proc file: ``os.read`` costs half of what a Python file object does."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _boot_time() -> float:
    with open("/proc/stat", "rb") as handle:
        for line in handle:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    raise RuntimeError("no btime line in /proc/stat")


def _terminal_map() -> dict[int, str]:
    """Device number → terminal path, as psutil maps ``stat``'s tty_nr."""
    terminals: dict[int, str] = {}
    for path in glob.glob("/dev/tty*") + glob.glob("/dev/pts/*"):
        try:
            terminals[os.stat(path).st_rdev] = path
        except FileNotFoundError:
            continue
    return terminals
