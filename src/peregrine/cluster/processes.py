"""Starting, finding and stopping the programs of a development cluster, by process id.

Every program runs in its own session (process group), so stopping one stops what it started
(a frontend's query workers) and nothing else. A process id read back from a state file is
only signalled after ``/proc`` shows it is still the program that was started (a pid reused
by another program is left alone).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_random = random.Random()  # noqa: S311 (jitter; own state, so the global generator stays seeded)

#: Children started by this process, so they are waited for (no zombies) when stopped.
_children: dict[int, subprocess.Popen[bytes]] = {}


#: Where ``free_port`` looks: below the kernel's range for outgoing connections.
PORT_RANGE = (10_000, 32_768)
#: Ports ``free_port`` gave lately (oldest first): none is given again while they are here.
_given: dict[int, None] = {}
_GIVEN_KEPT = 2048
_giving = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free now, below the ephemeral range, and not one this process was given
    lately. A port the kernel picks for us is one it may also give the next outgoing
    connection (of any program) before our server binds it, which on a busy machine
    happens; and a port free now is still free for the next call, until the program it was
    for binds it (the likely cause of a cluster's frontend 3 once finding its API port
    taken: the ports of one cluster were drawn apart, duplicates possible)."""
    with _giving:
        return _free_port(host)


def _free_port(host: str) -> int:
    low, high = PORT_RANGE
    with contextlib.suppress(OSError, ValueError):
        high = min(high, int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]))
    for _ in range(200):
        port = _random.randrange(low, high)
        if port in _given:
            continue
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind((host, port))
            return _give(port)
    with socket.socket() as s:
        s.bind((host, 0))
        return _give(int(s.getsockname()[1]))


def _give(port: int) -> int:
    _given[port] = None
    if len(_given) > _GIVEN_KEPT:
        del _given[next(iter(_given))]
    return port


def spawn(args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start ``args`` in a session of its own, output appended to ``log``; its pid."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def running(pid: int, marker: str = "") -> bool:
    """Whether ``pid`` is alive and (if ``marker``) its command line contains ``marker``."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and marker.encode() in cmdline


def stop(pid: int, marker: str, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Signal the process group of ``pid`` (if it is still ours), wait up to ``timeout``,
    then kill it."""
    if not running(pid, marker):
        _reap(pid)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while running(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    if running(pid, marker):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        while running(pid, marker):
            time.sleep(0.05)
    _reap(pid)


def kill(pid: int, marker: str) -> None:
    """``kill -9`` of the process group: no chance to say goodbye."""
    stop(pid, marker, timeout=0, sig=signal.SIGKILL)


def _reap(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)


def wait_for(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    log: Path | None = None,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll ``check()`` until true. TimeoutError naming ``what`` after ``timeout``, or
    RuntimeError as soon as ``alive()`` says the program died; either with the log's tail."""
    deadline = time.monotonic() + timeout
    while not check():
        if alive is not None and not alive():
            raise RuntimeError(f"{what} exited{_tail(log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s{_tail(log)}")
        time.sleep(0.2)


def _tail(log: Path | None, lines: int = 20) -> str:
    if log is None or not log.exists():
        return ""
    return "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
