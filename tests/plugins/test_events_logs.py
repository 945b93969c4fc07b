"""log_lines() and journal_lines(): a real file appended to, rotated and truncated while
followed."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from peregrine.engine import Engine, PluginError
from peregrine.plugins.events_logs import LineFollower
from tests.plugins.event_queries import rows_while

SQL = "SELECT path, line, offset FROM log_lines(:paths, 0, 0.05) LIMIT {n}"


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_appended_lines_are_seen_and_old_ones_are_not(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("old line\n")
    rows = rows_while(
        SQL.format(n=2), lambda: _append(log, "first\nsecond\n"), params={"paths": str(log)}
    )
    assert [(r["line"], r["offset"]) for r in rows] == [("first", 9), ("second", 15)]


def test_rotation_keeps_following_and_loses_no_line(tmp_path: Path) -> None:
    """logrotate's way: the file is renamed (a last line lands in it after the rename) and a
    new one is made under the name."""
    log = tmp_path / "auth.log"
    log.write_text("")

    def rotate() -> None:
        _append(log, "before\n")
        time.sleep(0.2)
        os.rename(log, tmp_path / "auth.log.1")
        _append(tmp_path / "auth.log.1", "late write to the old file\n")
        log.write_text("after rotation\n")
        time.sleep(0.2)
        _append(log, "and more\n")

    rows = rows_while(SQL.format(n=4), rotate, params={"paths": str(log)})
    assert [r["line"] for r in rows] == [
        "before",
        "late write to the old file",
        "after rotation",
        "and more",
    ]
    assert rows[2]["offset"] == 0


def test_truncation_starts_again_from_the_top(tmp_path: Path) -> None:
    log = tmp_path / "copytruncate.log"
    log.write_text("x" * 100 + "\n")

    def truncate() -> None:
        with open(log, "w") as f:
            f.write("fresh\n")

    rows = rows_while(SQL.format(n=1), truncate, params={"paths": str(log)})
    assert rows == [{"path": str(log), "line": "fresh", "offset": 0}]


def test_a_file_made_later_matching_the_pattern_is_followed_from_its_start(
    tmp_path: Path,
) -> None:
    log = tmp_path / "late.log"
    follower = LineFollower(str(log), from_start=False)
    assert list(follower.lines()) == []
    log.write_text("one\ntwo")
    assert list(follower.lines()) == [(b"one", 0)]
    _append(log, "\n")
    assert list(follower.lines()) == [(b"two", 4)]
    follower.close()


def test_a_json_list_of_paths_follows_each(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("")
    b.write_text("")

    def write() -> None:
        _append(a, "from a\n")
        time.sleep(0.2)
        _append(b, "from b\n")

    rows = rows_while(SQL.format(n=2), write, params={"paths": json.dumps([str(a), str(b)])})
    assert [(Path(r["path"]).name, r["line"]) for r in rows] == [
        ("a.log", "from a"),
        ("b.log", "from b"),
    ]


def test_journal_lines_without_journalctl_says_what_to_do_instead(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a host with no journalctl on its PATH
    with pytest.raises(PluginError, match="follow its log files with log_lines"):
        Engine().execute("SELECT * FROM journal_lines()")


@pytest.mark.skipif(
    shutil.which("systemd-cat") is None or not Path("/run/systemd/journal/socket").exists(),
    reason="no journald running here to log to",
)
def test_journal_lines_sees_an_entry_logged_now() -> None:
    import subprocess

    rows = rows_while(
        "SELECT identifier, message FROM journal_lines() WHERE identifier = 'peregrine-test' "
        "LIMIT 1",
        lambda: subprocess.run(
            ["systemd-cat", "-t", "peregrine-test"], input=b"hello", check=False
        ),
        timeout=5,
    )
    assert rows == [{"identifier": "peregrine-test", "message": "hello"}]


PRIVATE_JOURNALD = """
import json, os, subprocess, sys, time
from tests.plugins.event_queries import rows_while
for folder in ("/run/systemd", "/run/log"):  # this mount namespace's own, empty
    os.makedirs(folder, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", folder], check=False).returncode:
        sys.exit(77)  # no mounting here (a container without CAP_SYS_ADMIN)
os.makedirs("/run/systemd/journal"); os.makedirs("/run/log/journal")
journald = subprocess.Popen(["/lib/systemd/systemd-journald"], stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 10
while not os.path.exists("/run/systemd/journal/socket") and time.monotonic() < deadline:
    time.sleep(0.05)
def log(text):
    subprocess.run(["systemd-cat", "-t", "peregrine-test"], input=text.encode(), check=True)
def log_rotate_log():
    log("before rotation")
    subprocess.run(["journalctl", "--rotate"], check=True)
    log("after rotation")
try:
    rows = rows_while(
        "SELECT identifier, message FROM journal_lines() "
        "WHERE identifier = 'peregrine-test' LIMIT 2", log_rotate_log, timeout=30)
    print(json.dumps(rows))
finally:
    journald.kill()
"""


@pytest.mark.skipif(
    os.geteuid() != 0
    or shutil.which("unshare") is None
    or shutil.which("systemd-cat") is None
    or not Path("/lib/systemd/systemd-journald").exists(),
    reason="needs root, unshare(1) and systemd's journald to run a private one",
)
def test_journal_lines_follows_a_real_journald_across_a_rotation() -> None:
    """A journald of the test's own (in a mount namespace, over empty /run folders): an entry
    logged, the journal files rotated (``journalctl --rotate``), another logged: both seen."""
    import subprocess
    import sys

    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", PRIVATE_JOURNALD],
        capture_output=True, text=True, timeout=90, check=False,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    if done.returncode == 77 or "unshare failed" in done.stderr:
        pytest.skip(f"cannot make a mount namespace here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [
        {"identifier": "peregrine-test", "message": "before rotation"},
        {"identifier": "peregrine-test", "message": "after rotation"},
    ]


def test_a_line_longer_than_the_limit_is_cut_into_pieces(tmp_path: Path) -> None:
    from peregrine.plugins.text import MAX_LINE

    log = tmp_path / "binary.log"
    log.write_bytes(b"")
    follower = LineFollower(str(log), from_start=False)
    log.write_bytes(b"x" * (2 * MAX_LINE + 10) + b"\nnext\n")
    pieces = list(follower.lines())
    assert [(len(p), offset) for p, offset in pieces] == [
        (MAX_LINE, 0),
        (MAX_LINE, MAX_LINE),
        (10, 2 * MAX_LINE),
        (4, 2 * MAX_LINE + 11),
    ]
    follower.close()
