"""The built-in CLIENT_EVENT artifacts: each passes the checker and runs in a query worker as
the agent runs it (``ArtifactRunner.plan(..., events=True)`` then ``run_source``), and the
important ones see a real event happen: a process, a login line, a sudo line, an authorized
key, a listening socket, a log line, a wtmp record."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from peregrine.artifacts.loader import builtin_files
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.artifacts.runner import ArtifactRunner, SourceOutcome
from tests.plugins.test_accounts import USER_PROCESS, utmp_record

Rows = list[dict[str, Any]]
SUDO = (
    "Dec  3 04:00:02 web1 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; "
    "COMMAND=/usr/bin/id -u\n"
)


def _load() -> ArtifactRepository:
    repo = ArtifactRepository()
    repo.load_texts(builtin_files())
    return repo


EVENT_NAMES = [a.name for a in _load() if a.type == "CLIENT_EVENT"]


@pytest.fixture(scope="module")
def repo() -> ArtifactRepository:
    return _load()


def watch(
    repo: ArtifactRepository,
    name: str,
    params: dict[str, Any],
    action: Callable[[], object] = lambda: None,
    *,
    until: Callable[[Rows], bool] = lambda rows: False,
    seconds: float = 15,
    delay: float = 0.5,
) -> tuple[SourceOutcome, Rows]:
    """Run an event artifact in a worker, as the agent does, until ``until(rows)`` or
    ``seconds`` after its query is running; ``action`` runs ``delay`` seconds after the query
    is prepared (its columns are known), however long the worker took to start."""
    runner = ArtifactRunner(repo, isolated=True)
    planned = runner.plan(name, params, events=True)
    (source,) = planned.artifact.sources
    outcome = SourceOutcome(name, source.name)
    rows: Rows = []
    finished = threading.Event()

    def pace() -> None:
        started = time.monotonic()
        while not outcome.columns and not finished.is_set() and time.monotonic() - started < 60:
            time.sleep(0.05)
        if not finished.wait(delay):
            action()
        finished.wait(seconds)
        runner.cancel()

    pacer = threading.Thread(target=pace)
    pacer.start()
    try:
        for row in runner.run_source(planned, source, outcome):
            rows.append(dict(zip(outcome.columns, row, strict=True)))
            if until(rows):
                runner.cancel()
    finally:
        finished.set()
        pacer.join()
    return outcome, rows


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_every_event_artifact_passes_the_checker_and_runs_until_cancelled(
    repo: ArtifactRepository, name: str, tmp_path: Path
) -> None:
    assert [str(p) for p in repo.check([name])] == []
    params = {"Paths": [str(tmp_path)]} if repo.get(name).parameter("Paths") else {}
    outcome, _ = watch(repo, name, params, seconds=1.0)
    assert outcome.columns, outcome.error  # its query was prepared and ran
    assert outcome.status == "cancelled", outcome.error  # still running when it was stopped


def test_the_checker_refuses_event_plugins_in_a_collection_and_an_event_query_that_ends() -> None:
    repo = ArtifactRepository()
    repo.load_texts(
        [
            (
                "test.yaml",
                "name: Custom.Collect\ntype: CLIENT\nsources:\n"
                "  - query: SELECT * FROM process_events() LIMIT 5\n"
                "---\nname: Custom.Watch\ntype: CLIENT_EVENT\nsources:\n"
                "  - query: SELECT * FROM pslist()\n",
            )
        ]
    )
    problems = {p.artifact: p.message for p in repo.check()}
    assert (
        "process_events() never ends: make this a CLIENT_EVENT artifact"
        in problems["Custom.Collect"]
    )
    assert "must read an event plugin" in problems["Custom.Watch"]


def test_process_executions_sees_a_started_process_within_seconds(
    repo: ArtifactRepository,
) -> None:
    marker = f"0.{uuid.uuid4().int % 10**6:06d}"  # sleep 0.NNNNNN: a command line of its own
    started: list[float] = []

    def start() -> None:
        started.append(time.time())
        subprocess.run(["sleep", marker], check=True)

    outcome, rows = watch(
        repo,
        "Linux.Events.ProcessExecutions",
        {"CommandRegex": f"^sleep {marker}$"},
        start,
        until=bool,
    )
    assert rows, outcome.error
    assert json.loads(rows[0]["argv"]) == ["sleep", marker]
    assert rows[0]["ppid"] == os.getpid() and rows[0]["username"]
    assert rows[0]["time"] - started[0] < 2.0


def test_ssh_login_lines_appended_to_the_auth_log_are_parsed(
    repo: ArtifactRepository, tmp_path: Path
) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")
    accepted = (
        "2026-12-03T04:00:00.000000+00:00 web1 sshd[4242]: Accepted publickey for alice from "
        "203.0.113.9 port 50022 ssh2: ED25519 SHA256:abc\n"
    )
    failed = (
        "Dec  3 04:00:01 web1 sshd[4243]: Failed password for invalid user admin from "
        "198.51.100.7 port 40001 ssh2\n"
    )

    def write() -> None:
        with open(log, "a") as f:
            f.write("unrelated line\n" + accepted + failed + SUDO)

    _, logins = watch(
        repo, "Linux.Events.SSHLogin", {"LogGlob": [str(log)]}, write, until=lambda r: len(r) == 2
    )
    got = [
        (r["accepted"], r["user"], r["remote_ip"], r["remote_port"], r["method"], r["invalid_user"])
        for r in logins
    ]
    assert got == [
        (1, "alice", "203.0.113.9", 50022, "publickey", 0),
        (0, "admin", "198.51.100.7", 40001, "password", 1),
    ]


def test_sudo_lines_appended_to_the_auth_log_are_parsed(
    repo: ArtifactRepository, tmp_path: Path
) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")

    def write() -> None:
        with open(log, "a") as f:
            f.write("unrelated line\n" + SUDO)

    _, sudos = watch(repo, "Linux.Events.Sudo", {"LogGlob": [str(log)]}, write, until=bool)
    assert [(r["user"], r["run_as"], r["command"], r["allowed"]) for r in sudos] == [
        ("alice", "root", "/usr/bin/id -u", 1)
    ]


def test_a_new_authorized_key_in_a_home_is_a_persistence_change(
    repo: ArtifactRepository, tmp_path: Path
) -> None:
    ssh = tmp_path / "home" / "bob" / ".ssh"
    ssh.mkdir(parents=True)
    keys = ssh / "authorized_keys"
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvil attacker@host\n"

    def add_key() -> None:
        with open(keys, "a") as f:
            f.write(key)

    paths = [f"{tmp_path}/home/*/.ssh/authorized_keys*", f"{tmp_path}/home/*/.bashrc"]
    _, rows = watch(
        repo,
        "Linux.Events.PersistenceChanges",
        {"Paths": paths},
        add_key,
        until=lambda r: any(x["action"] == "written" for x in r),
    )
    written = next(r for r in rows if r["action"] == "written")
    assert written["path"] == str(keys)
    assert written["category"] == "ssh_authorized_keys"
    assert written["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert {r["action"] for r in rows} <= {"created", "written"}  # 'modified' is left out


def test_a_new_listening_socket_is_seen_with_its_program(repo: ArtifactRepository) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        _, rows = watch(
            repo,
            "Linux.Events.ListeningSockets",
            {"Period": 0.2},
            server.listen,
            until=lambda r: any(x["lport"] == port for x in r),
        )
    finally:
        server.close()
    mine = next(r for r in rows if r["lport"] == port)
    assert mine["pid"] == os.getpid() and mine["exe"] and mine["laddr"] == "127.0.0.1"


def test_log_lines_follow_a_log_and_keep_matching_lines(
    repo: ArtifactRepository, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    _, lines = watch(
        repo,
        "Generic.Events.LogLines",
        {"Paths": [str(log)], "LineRegex": "ERROR"},
        lambda: log.write_text("INFO fine\nERROR disk full\n"),
        until=bool,
    )
    assert [r["line"] for r in lines] == ["ERROR disk full"]


def test_logins_follow_wtmp(repo: ArtifactRepository, tmp_path: Path) -> None:
    wtmp = tmp_path / "wtmp"
    wtmp.write_bytes(b"")
    record = utmp_record(USER_PROCESS, pid=77, line="pts/3", user="carol", host="192.0.2.1")
    _, logins = watch(
        repo,
        "Linux.Events.Logins",
        {"WtmpFile": str(wtmp)},
        lambda: wtmp.write_bytes(record),
        until=bool,
    )
    assert [(r["action"], r["user"], r["tty"]) for r in logins] == [("login", "carol", "pts/3")]


def test_client_stats_beats_with_the_agents_processes(repo: ArtifactRepository) -> None:
    _, rows = watch(repo, "Generic.Client.Stats", {"Period": 0.2}, until=lambda r: len(r) == 2)
    assert len(rows) == 2 and rows[0]["uptime"] > 0
    assert any(p["pid"] for p in json.loads(rows[0]["agent_processes"]))  # its own worker


def test_file_changes_sees_a_touch(repo: ArtifactRepository, tmp_path: Path) -> None:
    target = tmp_path / "watched"
    target.write_text("")
    _, rows = watch(
        repo, "Generic.Events.FileChanges", {"Paths": [str(target)]}, target.touch, until=bool
    )
    assert rows[0]["path"] == str(target) and rows[0]["action"] == "attributes"
