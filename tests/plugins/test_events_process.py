"""process_events(): a real process started by the test is seen starting and exiting."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from peregrine.engine import Engine, PluginError
from peregrine.plugins.events_process import exit_code, open_connector
from tests.plugins.event_queries import rows_while


def _netlink_permitted() -> bool:
    try:
        open_connector().close()
    except OSError:
        return False
    return True


def _run_marked(marker: str) -> None:
    subprocess.run(["sleep", f"0.{marker}"], check=True)


@pytest.mark.parametrize("method", ["netlink", "poll"])
def test_a_started_process_is_seen_with_its_command_line_owner_and_exit(method: str) -> None:
    if method == "netlink" and not _netlink_permitted():
        pytest.skip("the process events connector needs root with CAP_NET_ADMIN")
    marker = "3" + str(uuid.uuid4().int)[:6]  # sleep 0.3xxxxxx: long enough for a 0.05 s poll
    rows = rows_while(
        "SELECT * FROM process_events(:method, 0.05) WHERE action = 'start' AND cmdline = :cmd "
        "LIMIT 1",
        lambda: _run_marked(marker),
        params={"method": method, "cmd": f"sleep 0.{marker}"},
    )
    (start,) = rows
    assert start["action"] == "start" and start["method"] == method
    assert start["name"] == "sleep" and start["exe"].endswith("sleep")
    assert json.loads(start["argv"]) == ["sleep", f"0.{marker}"]
    assert start["uid"] == os.getuid() and start["username"]
    assert start["ppid"] == os.getpid() and start["parent_name"]


def test_the_exit_of_a_started_process_says_what_exited_and_its_code() -> None:
    if not _netlink_permitted():
        pytest.skip("the process events connector needs root with CAP_NET_ADMIN")
    marker = str(uuid.uuid4().int)[:8]
    script = f"sleep 0.2; exit 3 # {marker}"  # lives long enough to be read
    rows = rows_while(
        "SELECT action, pid, cmdline, exit_code FROM process_events('netlink') "
        "WHERE cmdline LIKE :like LIMIT 2",
        lambda: subprocess.run(["sh", "-c", script], check=False),
        params={"like": f"%{marker}%"},
    )
    assert [r["action"] for r in rows] == ["start", "exit"]
    assert rows[0]["pid"] == rows[1]["pid"]
    assert rows[1]["exit_code"] == 3


def test_exit_status_reads_as_a_shell_says_it() -> None:
    assert exit_code(3 << 8) == 3
    assert exit_code(9) == -9


def test_a_bad_method_is_refused_with_the_choices() -> None:
    with pytest.raises(PluginError, match="auto, netlink, poll"):
        list(Engine().execute("SELECT * FROM process_events('magic')"))


def _in_own_namespaces(sql: str) -> subprocess.CompletedProcess[str]:
    """Run ``sql`` in a process with user and network namespaces of its own, where the kernel's
    process events connector is not reachable (as in most containers)."""
    # It starts a 0.3 s process every 0.2 s itself (a 0.05 s poll sees it): a quiet box starts none.
    code = (
        "import subprocess, sys, threading, time\n"
        "from peregrine.engine import Engine, QueryError\n"
        "def spawn():\n"
        "    while True:\n"
        "        time.sleep(0.2)\n"
        "        subprocess.run(['sleep', '0.3'], check=False)\n"
        "threading.Thread(target=spawn, daemon=True).start()\n"
        "try:\n    r = Engine().execute(sys.argv[1])\n    print(list(r), r.warnings)\n"
        "except QueryError as exc:\n    print('error:', exc)\n"
    )
    command = ["unshare", "--user", "--map-root-user", "--net", sys.executable, "-c", code, sql]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare(1) here")
def test_without_the_connector_it_polls_and_says_so_or_refuses_when_netlink_is_demanded() -> None:
    polled = _in_own_namespaces("SELECT method FROM process_events('auto', 0.05) LIMIT 1")
    if polled.returncode != 0:
        pytest.skip(f"cannot make namespaces here: {polled.stderr.strip()[-200:]}")
    assert "[('poll',)]" in polled.stdout
    assert "netlink refused" in polled.stdout and "polling /proc every 0.05 s" in polled.stdout
    refused = _in_own_namespaces("SELECT * FROM process_events('netlink')")
    assert "the process events connector is not available" in refused.stdout
    assert "use mode 'poll' or 'auto'" in refused.stdout
