"""pslist on Linux reads /proc itself: each row is what psutil says of the same process, for
the awkward ones too (a name the kernel cut, a deleted executable, a zombie, a terminal)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from peregrine.engine import QueryContext
from peregrine.plugins import processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

#: Columns that change while a process runs (CPU, memory, threads); the rest must be equal.
MOVING = {"user_time", "system_time", "rss", "vms", "num_threads", "status"}
SLEEP = shutil.which("sleep") or "/bin/sleep"


def psutil_row(pid: int) -> dict[str, Any]:
    """The row the portable (psutil) listing gives, lazy values computed. psutil keeps its
    terminal map for good: a terminal opened since it was made would be unknown to it."""
    psutil._psposix.get_terminal_map.cache_clear()
    [row] = processes._pslist_psutil(QueryContext(), pid)
    return {k: v() if callable(v) else v for k, v in row.items()}


def compare(query: Any, pid: int) -> dict[str, Any]:
    """This process's row from SQL, after checking its steady columns against psutil's."""
    [row] = query("SELECT * FROM pslist() WHERE pid = ?", (pid,))
    ours = dict(row, argv=None if row["argv"] is None else json.loads(row["argv"]))
    theirs = psutil_row(pid)
    steady = {k: v for k, v in theirs.items() if k not in MOVING}
    assert {k: ours[k] for k in steady} == steady
    return ours


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Any]:
    """Start a process from a copy of ``sleep`` named ``name``, once it sleeps; stopped after
    the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        program = tmp_path / name
        shutil.copy(SLEEP, program)
        proc = subprocess.Popen([str(program), "60", *args])
        started.append(proc)
        # Sleeping, not only exec'd: on a busy machine it was still "running" towards its
        # first sleep when read (one CI run).
        process = psutil.Process(proc.pid)
        _wait_until(lambda: process.exe() == str(program) and process.status() == "sleeping")
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def _wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the child did not get there in time"
        time.sleep(0.01)


def _tty_number(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[4])


def test_this_process_is_what_psutil_says(query):
    row = compare(query, os.getpid())
    assert row["pid"] == os.getpid() and row["ppid"] == os.getppid()
    assert row["uid"] == os.getuid()
    assert row["exe"] == os.path.realpath(sys.executable)
    assert row["status"] == "running"
    assert row["rss"] > 0 and row["vms"] >= row["rss"] and row["num_threads"] >= 1


def test_a_name_the_kernel_cut_at_15_characters_is_whole(query, child):
    proc = child("peregrine-long-sleeper-name")
    row = compare(query, proc.pid)
    assert row["name"] == "peregrine-long-sleeper-name"
    [alone] = query("SELECT name FROM pslist() WHERE pid = ?", (proc.pid,))
    assert alone["name"] == "peregrine-long-sleeper-name"  # argv read for the name alone
    assert row["status"] == "sleeping"


def test_a_deleted_executable_is_flagged(query, child, tmp_path):
    proc = child("gone-sleeper")
    (tmp_path / "gone-sleeper").unlink()
    row = compare(query, proc.pid)
    assert row["exe"] == str(tmp_path / "gone-sleeper")
    assert row["exe_deleted"] == 1
    assert query("SELECT exe_deleted FROM pslist() WHERE pid = ?", (proc.pid,)) == [
        {"exe_deleted": 1}
    ]


def test_a_zombie_has_no_command_line(query):
    proc = subprocess.Popen(["true"])
    _wait_until(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE)
    try:
        row = compare(query, proc.pid)
        assert row["status"] == "zombie"
        assert row["cmdline"] is None and row["argv"] is None and row["exe"] is None
    finally:
        proc.wait()


def test_a_kernel_thread_has_no_executable(query):
    kernel = next(
        (p for p in psutil.process_iter(["exe", "cmdline"]) if p.pid > 1 and p.ppid() == 2),
        None,
    )
    if kernel is None:
        pytest.skip("no kernel thread visible here (a container)")
    row = compare(query, kernel.pid)
    assert row["exe"] is None and row["cmdline"] is None and row["argv"] == []


def test_the_controlling_terminal_is_named(query):
    leader, follower = os.openpty()
    path = os.ttyname(follower)
    code = "import os, sys, time; os.setsid(); os.open(sys.argv[1], os.O_RDWR); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, path])
    try:
        _wait_until(lambda: _tty_number(proc.pid) == os.stat(path).st_rdev)
        assert compare(query, proc.pid)["terminal"] == path
    finally:
        proc.kill()
        proc.wait()
        os.close(leader)
        os.close(follower)


def test_the_listing_holds_every_process(query, child):
    proc = child("listed-sleeper")
    before = set(psutil.pids())
    listed = [r["pid"] for r in query("SELECT pid FROM pslist()")]
    after = set(psutil.pids())
    assert listed == sorted(listed)
    assert before & after <= set(listed) <= before | after
    assert {os.getpid(), proc.pid} <= set(listed)


def test_a_process_gone_is_no_row(query):
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert query("SELECT * FROM pslist() WHERE pid = ?", (proc.pid,)) == []
