"""execve() and execve_lines(): real programs, real time-outs, and the EXECVE permission."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import psutil
import pytest

from peregrine.engine import PermissionDenied, PluginError, QueryLimits, QueryTimeout


def _argv(*words: str) -> str:
    return json.dumps(list(words))


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(marker in part for part in cmdline) and proc.info["pid"] != os.getpid():
            found.append(proc.info["pid"])
    return found


def test_echo_output_and_exit_code(query):
    rows = query("SELECT * FROM execve(?)", [_argv("/bin/echo", "hello", "world")])
    assert len(rows) == 1
    row = rows[0]
    assert row["stdout"] == "hello world\n"
    assert row["stderr"] == ""
    assert row["return_code"] == 0
    assert row["pid"] > 0
    assert 0 <= row["duration"] < 10
    assert row["truncated"] == 0
    assert row["timed_out"] == 0


def test_no_shell_runs(query):
    rows = query("SELECT stdout FROM execve(?)", [_argv("/bin/echo", "$HOME", "*", ";", "id")])
    assert rows == [{"stdout": "$HOME * ; id\n"}]


def test_plain_string_is_split_like_shell_words(query):
    rows = query("SELECT stdout FROM execve(?)", ["/bin/echo 'two words' three"])
    assert rows == [{"stdout": "two words three\n"}]


def test_stderr_and_nonzero_exit(query):
    script = "echo out; echo err >&2; exit 3"
    rows = query(
        "SELECT stdout, stderr, return_code FROM execve(?)", [_argv("/bin/sh", "-c", script)]
    )
    assert rows == [{"stdout": "out\n", "stderr": "err\n", "return_code": 3}]


def test_cwd_and_env(query, tmp_path):
    rows = query(
        "SELECT stdout FROM execve WHERE argv = ? AND cwd = ? AND env = ?",
        [
            _argv("/bin/sh", "-c", 'pwd; echo "$PEREGRINE_T"'),
            str(tmp_path),
            '{"PEREGRINE_T": "v1"}',
        ],
    )
    assert rows == [{"stdout": f"{tmp_path}\nv1\n"}]


def test_env_null_removes_a_variable(query, monkeypatch):
    monkeypatch.setenv("PEREGRINE_GONE", "present")
    script = 'echo "[${PEREGRINE_GONE-unset}]"'
    rows = query("SELECT stdout FROM execve(?)", [_argv("/bin/sh", "-c", script)])
    assert rows == [{"stdout": "[present]\n"}]
    rows = query(
        "SELECT stdout FROM execve(?, NULL, 60, 1000, ?)",
        [_argv("/bin/sh", "-c", script), '{"PEREGRINE_GONE": null}'],
    )
    assert rows == [{"stdout": "[unset]\n"}]


def test_output_beyond_max_output_is_truncated_and_flagged(query):
    rows = query(
        "SELECT length(stdout) AS n, truncated, return_code FROM execve(?, NULL, 30, 1000)",
        [_argv("/bin/sh", "-c", "head -c 50000 /dev/zero | tr '\\0' x")],
    )
    assert rows == [{"n": 1000, "truncated": 1, "return_code": 0}]


def test_own_timeout_kills_the_whole_session_and_returns_a_row(query):
    marker = f"peregrine-{uuid.uuid4().hex}"
    started = time.monotonic()
    rows = query(
        "SELECT return_code, timed_out, duration FROM execve(?, NULL, 0.5)",
        [_argv("/bin/sh", "-c", f"sleep 30; : {marker}")],
    )
    assert time.monotonic() - started < 3
    assert rows[0]["timed_out"] == 1
    assert rows[0]["return_code"] == -9
    assert 0.4 < rows[0]["duration"] < 3
    assert _processes_with(marker) == []


def test_query_deadline_kills_the_child_and_its_children(engine):
    marker = f"peregrine-{uuid.uuid4().hex}"
    # exec'ing a second shell puts the marker in a child's command line too.
    script = f"/bin/sh -c 'sleep 30; : {marker}' & wait"
    started = time.monotonic()
    with pytest.raises(QueryTimeout):
        list(
            engine.execute(
                "SELECT * FROM execve(?)",
                [_argv("/bin/sh", "-c", script)],
                limits=QueryLimits(timeout=0.5),
            )
        )
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 2.0
    time.sleep(0.1)
    assert _processes_with(marker) == []


def test_missing_program_is_a_clear_error(query):
    with pytest.raises(PluginError, match=r"execve\(\): program 'no-such-program-xyz' not found"):
        query("SELECT * FROM execve(?)", [_argv("no-such-program-xyz")])


def test_missing_cwd_is_a_clear_error(query, tmp_path):
    with pytest.raises(PluginError, match="is not a directory"):
        query("SELECT * FROM execve(?, ?)", [_argv("/bin/true"), str(tmp_path / "gone")])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("[]", "argv is empty"),
        ("", "argv is empty"),
        ('["ls", ', "not valid"),
        ('[["nested"]]', "JSON array of strings"),
        ("echo 'unclosed", "cannot split"),
    ],
)
def test_bad_argv_is_a_clear_error(query, argv, message):
    with pytest.raises(PluginError, match=message):
        query("SELECT * FROM execve(?)", [argv])


def test_not_a_program_is_a_clear_error(query, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")  # not executable
    with pytest.raises(PluginError, match="permission denied"):
        query("SELECT * FROM execve(?)", [_argv(str(script))])


@pytest.mark.parametrize("table", ["execve", "execve_lines"])
def test_refused_without_the_execve_permission(engine, table, tmp_path):
    flag = tmp_path / "ran"
    with pytest.raises(PermissionDenied, match="EXECVE"):
        list(
            engine.execute(
                f"SELECT * FROM {table}(?)",
                [_argv("/usr/bin/touch", str(flag))],
                permissions=frozenset(),
            )
        )
    assert not flag.exists()


def test_execve_lines_streams_stdout_by_line(query):
    rows = query(
        "SELECT line_number, line FROM execve_lines(?)",
        [_argv("/bin/sh", "-c", "printf 'a\\nb\\r\\n\\nlast'; echo noise >&2")],
    )
    assert rows == [
        {"line_number": 1, "line": "a"},
        {"line_number": 2, "line": "b"},
        {"line_number": 3, "line": ""},
        {"line_number": 4, "line": "last"},
    ]


def test_execve_lines_stops_the_program_when_the_query_stops_reading(query):
    marker = f"peregrine-{uuid.uuid4().hex}"
    started = time.monotonic()
    rows = query(
        "SELECT line FROM execve_lines(?) LIMIT 3",
        [_argv("/bin/sh", "-c", f"while :; do echo {marker}; done")],
    )
    assert [r["line"] for r in rows] == [marker] * 3
    assert time.monotonic() - started < 5
    time.sleep(0.1)
    assert _processes_with(marker) == []


def test_execve_lines_splits_lines_longer_than_max_output(query):
    rows = query(
        "SELECT length(line) AS n FROM execve_lines(?, NULL, 30, 4)",
        [_argv("/bin/echo", "abcdefghij")],
    )
    assert [r["n"] for r in rows] == [4, 4, 2]


def test_execve_lines_query_deadline_kills_the_child(query):
    marker = f"peregrine-{uuid.uuid4().hex}"
    started = time.monotonic()
    with pytest.raises(QueryTimeout):
        query(
            "SELECT line FROM execve_lines(?)",
            [_argv("/bin/sh", "-c", f"echo start; sleep 30; : {marker}")],
            timeout=0.5,
        )
    assert time.monotonic() - started < 2.0
    time.sleep(0.1)
    assert _processes_with(marker) == []


def test_huge_output_streams_without_holding_it(query, tmp_path: Path):
    rows = query(
        "SELECT count(*) AS n, max(line_number) AS last FROM execve_lines(?)",
        [_argv("/usr/bin/seq", "1", "200000")],
    )
    assert rows == [{"n": 200000, "last": 200000}]


def test_background_children_left_holding_the_pipes_are_killed(query):
    marker = f"peregrine-{uuid.uuid4().hex}"
    started = time.monotonic()
    rows = query(
        "SELECT stdout, return_code, timed_out FROM execve(?)",
        [_argv("/bin/sh", "-c", f"echo done; /bin/sh -c 'sleep 30; : {marker}' &")],
    )
    assert time.monotonic() - started < 3
    assert rows == [{"stdout": "done\n", "return_code": 0, "timed_out": 0}]
    time.sleep(0.1)
    assert _processes_with(marker) == []
