"""`peregrine query` and `peregrine plugins`, run as a user runs them: a real subprocess."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

INFINITE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "


def peregrine(*args: str, state: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PEREGRINE_STATE_DIR": str(state), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "peregrine", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_jsonl_output_is_one_object_per_row(state: Path) -> None:
    run = peregrine(
        "query", INFINITE + "SELECT x, x * 2 AS y FROM c LIMIT 3", "-f", "jsonl", state=state
    )
    assert run.returncode == 0, run.stderr
    assert [json.loads(line) for line in run.stdout.splitlines()] == [
        {"x": 1, "y": 2},
        {"x": 2, "y": 4},
        {"x": 3, "y": 6},
    ]


def test_json_output_is_an_array_and_blobs_are_base64(state: Path) -> None:
    run = peregrine("query", "SELECT x'0001ff' AS b, NULL AS n", "--format", "json", state=state)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [{"b": "AAH/", "n": None}]


def test_csv_output_has_a_header(state: Path) -> None:
    run = peregrine("query", "SELECT 'a,b' AS s, 1.5 AS f", "-f", "csv", state=state)
    assert list(csv.reader(io.StringIO(run.stdout))) == [["s", "f"], ["a,b", "1.5"]]


def test_table_output_shows_columns_and_values(state: Path) -> None:
    run = peregrine(
        "query",
        "SELECT pid, name FROM pslist() WHERE pid = :p",
        "-p",
        f"p={os.getpid()}",
        state=state,
    )
    assert run.returncode == 0, run.stderr
    assert "pid" in run.stdout and "name" in run.stdout
    assert str(os.getpid()) in run.stdout


def test_large_output_streams_in_table_format(state: Path) -> None:
    run = peregrine("query", INFINITE + "SELECT x FROM c", "--max-rows", "50000", state=state)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[-1].strip() == "50000"
    assert "stopped at --max-rows 50000" in run.stderr


def test_bad_sql_is_a_clear_error_with_exit_code_1(state: Path) -> None:
    run = peregrine("query", "SELECT * FROM glob()", state=state)
    assert run.returncode == 1
    assert "glob() needs its required argument pattern" in run.stderr
    assert "Traceback" not in run.stderr


def test_unknown_plugin_suggests_a_name(state: Path) -> None:
    run = peregrine("query", "SELECT * FROM pslst()", state=state)
    assert run.returncode == 1
    assert "did you mean pslist" in run.stderr


def test_bad_param_is_a_usage_error(state: Path) -> None:
    run = peregrine("query", "SELECT :a", "-p", "novalue", state=state)
    assert run.returncode == 2
    assert "name=value" in run.stderr


def test_timeout_option(state: Path) -> None:
    run = peregrine("query", INFINITE + "SELECT count(*) FROM c", "--timeout", "0.3", state=state)
    assert run.returncode == 1
    assert "time-out of 0.3 s" in run.stderr


def test_killed_query_is_denylisted_then_allowed_with_flag(state: Path) -> None:
    sql = INFINITE + "SELECT count(*) FROM c"
    run = peregrine("query", sql, "--hard-timeout", "0.5", state=state)
    assert run.returncode == 1 and "watchdog killed" in run.stderr
    run = peregrine("query", sql, "--hard-timeout", "0.5", state=state)
    assert run.returncode == 1 and "--ignore-denylist" in run.stderr
    run = peregrine("query", sql, "--timeout", "0.2", "--ignore-denylist", state=state)
    assert "time-out of 0.2 s" in run.stderr


def test_plugins_list_and_show(state: Path) -> None:
    listed = peregrine("plugins", "--json", state=state)
    names = {p["name"] for p in json.loads(listed.stdout)}
    assert {"pslist", "environ"} <= names
    shown = peregrine("plugins", "show", "environ", "--json", state=state)
    doc = json.loads(shown.stdout)
    assert doc["arguments"][0] == {
        "name": "pid",
        "type": "INTEGER",
        "required": True,
        "default": None,
        "doc": "Process id whose environment to read.",
    }
    assert {c["name"] for c in doc["columns"]} == {"name", "value"}
    missing = peregrine("plugins", "show", "pslst", state=state)
    assert missing.returncode == 1 and "Did you mean pslist" in missing.stderr


def test_ctrl_c_before_the_first_row_stops_the_worker_without_a_traceback(
    state: Path, tmp_path: Path
) -> None:
    # PYTHONFAULTHANDLER: if the CLI hangs, SIGABRT makes it print every thread's stack.
    env = {
        **os.environ, "PEREGRINE_STATE_DIR": str(state), "COLUMNS": "200", "PYTHONFAULTHANDLER": "1"
    }  # fmt: skip
    # Files, not pipes: a worker left running would hold a pipe open, and the test would hang.
    with open(tmp_path / "out", "w+") as out, open(tmp_path / "err", "w+") as errors:
        cli = subprocess.Popen(
            [sys.executable, "-m", "peregrine", "query", INFINITE + "SELECT count(*) FROM c"],
            stdout=out,
            stderr=errors,
            env=env,
            # As from a terminal: a test run started in the background (`nohup ... &`) ignores
            # SIGINT, the CLI would inherit that, and Ctrl-C would do nothing.
            preexec_fn=_sigint_as_from_a_terminal,
        )
        worker = _worker_of(cli.pid)
        try:
            # The worker is counting (no row can come before the count ends); the CLI waits
            # for the header. SIGINT to the CLI alone: the worker must not need it too.
            _wait_for(lambda: worker.cpu_times().user > 0.5, "the worker never ran the query")
            cli.send_signal(signal.SIGINT)
            try:
                cli.wait(timeout=15)
            except subprocess.TimeoutExpired:
                cli.send_signal(signal.SIGABRT)  # the stacks, for the failure below
                cli.wait(timeout=10)
                stacks = (tmp_path / "err").read_text()
                pytest.fail(f"the CLI still ran 15 s after Ctrl-C:\n{stacks}")
            gone = _gone(worker)
        finally:
            for process in (cli, worker):
                with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                    process.kill()
            cli.wait()
        stderr = (tmp_path / "err").read_text()
        assert gone, "the query worker still runs"
        assert cli.returncode == 130, stderr
        assert "Traceback" not in stderr and "cancelled" in stderr, stderr
        assert (tmp_path / "out").read_text() == ""


def _sigint_as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _worker_of(pid: int) -> psutil.Process:
    found: list[psutil.Process] = []

    def spawned() -> bool:
        found[:] = psutil.Process(pid).children()  # the worker is the CLI's only child
        return bool(found)

    _wait_for(spawned, "no query worker started")
    return found[0]


def _wait_for(check: Callable[[], bool], failure: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _sigint_as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _worker_of(pid: int) -> psutil.Process:
    found: list[psutil.Process] = []

    def spawned() -> bool:
        found[:] = psutil.Process(pid).children()  # the worker is the CLI's only child
        return bool(found)

    _wait_for(spawned, "no query worker started")
    return found[0]


def _wait_for(check: Callable[[], bool], failure: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)
