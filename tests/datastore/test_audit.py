"""The audit log's table on both backends: recording, filters, paging, and what AuditLog adds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peregrine.auth import AuditLog, Principal
from peregrine.datastore import AUDIT_REFUSED, Datastore


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _fill(log: AuditLog, clock: Clock) -> None:
    """Ten entries a second apart (times 1000..1009) by two actors on three targets."""
    for n in range(10):
        clock.now = 1_000.0 + n
        log.record(
            "alice" if n % 2 == 0 else "bob",
            "collection.create" if n < 6 else "hunt.start",
            target=f"C.{n % 3:016d}",
            address="10.0.0.1",
            parameters={"n": n},
        )


def test_record_returns_what_is_stored(datastore: Datastore) -> None:
    clock = Clock()
    log = AuditLog(datastore.audit, clock=clock)
    principal = Principal("alice", frozenset(), "token 0123456789abcdef (ci)")
    entry = log.record(
        principal,
        "collection.create",
        target="C.0000000000000001",
        address="192.0.2.7",
        parameters={"artifacts": ["Linux.Sys.Users"], "nested": {"x": [1, 2]}},
        result="refused",
        reason="lacks EXECVE",
    )
    assert entry.audit_id >= 1
    assert (entry.actor, entry.credential) == ("alice", "token 0123456789abcdef (ci)")
    assert log.query() == [entry]
    stored = log.query()[0]
    assert stored.parameters == {"artifacts": ["Linux.Sys.Users"], "nested": {"x": [1, 2]}}
    assert (stored.result, stored.reason, stored.time) == (AUDIT_REFUSED, "lacks EXECVE", 1000.0)


def test_filters_on_time_actor_action_target_and_result(datastore: Datastore) -> None:
    clock = Clock()
    log = AuditLog(datastore.audit, clock=clock)
    _fill(log, clock)
    log.record("carol", "user.grant", target="alice", result="refused", reason="no")

    def ns(**filters: object) -> list[int]:
        return [entry.parameters.get("n", -1) for entry in log.query(**filters)]  # type: ignore[arg-type]

    assert ns(since=1_003.0, until=1_006.0) == [5, 4, 3]
    assert ns(actor="bob") == [9, 7, 5, 3, 1]
    assert ns(action="hunt.start") == [9, 8, 7, 6]
    assert ns(action="collection.*") == [5, 4, 3, 2, 1, 0]
    assert ns(action="collection") == []
    assert ns(target="C.0000000000000001") == [7, 4, 1]
    assert ns(result="refused") == [-1]
    assert ns(actor="alice", action="collection.*", since=1_002.0) == [4, 2]
    assert log.count() == 11
    assert log.count(actor="alice") == 5
    assert log.count(action="hunt.*", target="C.0000000000000000") == 2


def test_action_prefix_does_not_treat_underscore_as_a_wildcard(datastore: Datastore) -> None:
    log = AuditLog(datastore.audit)
    log.record("a", "user_x.create")
    log.record("a", "userax.create")
    assert [entry.action for entry in log.query(action="user_*")] == ["user_x.create"]


def test_paging_by_cursor_and_by_offset(datastore: Datastore) -> None:
    clock = Clock()
    log = AuditLog(datastore.audit, clock=clock)
    _fill(log, clock)
    pages: list[list[int]] = []
    before = None
    while True:
        page = log.query(limit=4, before=before)
        if not page:
            break
        pages.append([entry.parameters["n"] for entry in page])
        before = page[-1].audit_id
    assert pages == [[9, 8, 7, 6], [5, 4, 3, 2], [1, 0]]
    assert [entry.parameters["n"] for entry in log.query(limit=3, offset=3)] == [6, 5, 4]
    # A cursor page stays the same when newer entries arrive.
    cursor = log.query(limit=4)[-1].audit_id
    log.record("alice", "collection.create", parameters={"n": 10})
    assert [entry.parameters["n"] for entry in log.query(limit=4, before=cursor)] == [5, 4, 3, 2]


def test_bad_action_or_result_is_refused(datastore: Datastore) -> None:
    log = AuditLog(datastore.audit)
    for action in ("Collection.Create", "create", "a..b", "x." + "a" * 70):
        with pytest.raises(ValueError, match=r"area\.verb"):
            log.record("alice", action)
    with pytest.raises(ValueError, match="result"):
        log.record("alice", "user.create", result="maybe")
    assert log.count() == 0


def test_secrets_in_parameters_are_redacted_in_table_and_file(
    datastore: Datastore, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(datastore.audit, path) as log:
        log.record(
            "alice",
            "user.password",
            parameters={
                "password": "hunter2hunter2",
                "token_id": "0123456789abcdef",
                "auth": {"api_token": "prg_x", "Secret": "s"},
            },
        )
    stored = log.query()[0].parameters
    assert stored == {
        "password": "***",
        "token_id": "0123456789abcdef",
        "auth": {"api_token": "***", "Secret": "***"},
    }
    text = path.read_text()
    assert "hunter2" not in text and "prg_x" not in text
    assert json.loads(text)["parameters"] == stored


def test_file_line_has_the_stored_id(datastore: Datastore, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(datastore.audit, path) as log:
        entry = log.record("alice", "hunt.start", target="H.0000000000000001", address="::1")
    line = json.loads(path.read_text())
    assert line["audit_id"] == entry.audit_id
    assert line["actor"] == "alice" and line["target"] == "H.0000000000000001"
    assert line["address"] == "::1" and line["result"] == "ok"
    assert line["timestamp"].endswith("Z")
