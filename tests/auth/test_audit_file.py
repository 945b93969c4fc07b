"""The audit file: JSON lines, owner-only, whole lines under concurrent writers, rotation."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from peregrine.auth import AuditLog
from peregrine.datastore import Datastore, open_datastore


@pytest.fixture
def datastore(tmp_path: Path) -> Iterator[Datastore]:
    store = open_datastore(f"sqlite:///{tmp_path}/peregrine.db")
    yield store
    store.close()


def _lines(path: Path) -> list[dict[str, object]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode().splitlines()]


def test_one_json_object_per_line_and_owner_only(datastore: Datastore, tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    old_umask = os.umask(0)
    try:
        with AuditLog(datastore.audit, path) as log:
            log.record("alice", "collection.create", target="C.1", parameters={"q": "a\nb"})
            log.record("bob", "hunt.stop", target="H.1", result="refused", reason="no")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    lines = _lines(path)
    assert [line["action"] for line in lines] == ["collection.create", "hunt.stop"]
    assert lines[0]["parameters"] == {"q": "a\nb"}
    assert lines[1]["reason"] == "no"


def test_appends_to_an_existing_file_and_tightens_its_mode(
    datastore: Datastore, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"earlier":true}\n')
    path.chmod(0o644)
    with AuditLog(datastore.audit, path) as log:
        log.record("alice", "user.create", target="bob")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [sorted(line)[0] for line in _lines(path)] == ["earlier", "action"]


def test_eight_threads_on_two_logs_write_whole_lines(datastore: Datastore, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    # Two logs on one file stand for two processes: their flock()s contend like theirs would.
    logs = [AuditLog(datastore.audit, path), AuditLog(datastore.audit, path)]
    per_thread = 60
    big = "x" * 20_000  # large lines are the ones a missing lock would interleave

    def write(n: int) -> None:
        log = logs[n % 2]
        for i in range(per_thread):
            log.record(f"user{n}", "collection.create", parameters={"i": i, "pad": big})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for log in logs:
        log.close()
    lines = _lines(path)
    assert len(lines) == 8 * per_thread
    assert all(line["parameters"]["pad"] == big for line in lines)  # type: ignore[index]
    assert len({line["audit_id"] for line in lines}) == 8 * per_thread
    for n in range(8):
        mine = [line["parameters"]["i"] for line in lines if line["actor"] == f"user{n}"]  # type: ignore[index]
        assert sorted(mine) == list(range(per_thread))  # type: ignore[type-var]


def test_rotation_starts_a_new_file(datastore: Datastore, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(datastore.audit, path) as log:
        log.record("alice", "user.create", target="a")
        path.rename(tmp_path / "audit.jsonl.1")
        log.record("alice", "user.create", target="b")
        (tmp_path / "audit.jsonl.1").unlink()
        path.unlink()
        log.record("alice", "user.create", target="c")
    assert [line["target"] for line in _lines(path)] == ["c"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_keeps_the_line_when_the_datastore_fails(datastore: Datastore, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with datastore._db.write() as conn:
        conn.execute(text("DROP TABLE audit"))
    with AuditLog(datastore.audit, path) as log, pytest.raises(Exception, match="audit"):
        log.record("alice", "collection.create", target="C.1")
    (line,) = _lines(path)
    assert line["audit_id"] is None and line["target"] == "C.1"


def test_unwritable_file_does_not_fail_the_action(
    datastore: Datastore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with AuditLog(datastore.audit, blocker / "audit.jsonl") as log:
        entry = log.record("alice", "collection.create")
    assert datastore.audit.query() == [entry]
    assert "cannot write the audit file" in caplog.text


def test_without_a_path_only_the_datastore_is_written(datastore: Datastore) -> None:
    log = AuditLog(datastore.audit)
    entry = log.record("alice", "label.add", target="C.1", parameters={"labels": ["x"]})
    assert log.query(target="C.1") == [entry]
