"""Event monitoring's datastore part: the versioned assignment set and each client's status."""

from __future__ import annotations

import pytest

from peregrine.datastore import Datastore

CLIENT = "C.00000000000000aa"


@pytest.fixture
def store(datastore: Datastore) -> Datastore:
    datastore.clients.enroll(CLIENT, b"key", 1.0)
    return datastore


def test_every_change_bumps_the_version_of_the_whole_set(store: Datastore) -> None:
    events = store.events
    assert events.assignments() == (0, [])
    v1 = events.assign("Linux.Events.A", {"period": 1}, [], ["EXECVE"], 10.0, "alice")
    v2 = events.assign("Linux.Events.B", {}, ["web"], [], 11.0, "bob")
    v3 = events.assign("Linux.Events.A", {"period": 2}, ["db"], [], 12.0, "bob")
    assert v1 < v2 < v3
    version, assigned = events.assignments()
    assert version == v3
    assert [(a.artifact, a.parameters, a.labels, a.modified_by) for a in assigned] == [
        ("Linux.Events.A", {"period": 2}, ["db"], "bob"),
        ("Linux.Events.B", {}, ["web"], "bob"),
    ]
    v4 = events.unassign("Linux.Events.B", 13.0, "carol")
    assert v4 is not None and v4 > v3
    assert events.unassign("Linux.Events.B", 14.0, "carol") is None  # not assigned any more
    version, assigned = events.assignments()
    assert version == v4  # the removal is a change of the set too
    assert [a.artifact for a in assigned] == ["Linux.Events.A"]
    v5 = events.assign("Linux.Events.B", {}, [], [], 15.0, "dave")  # back again
    assert v5 > v4 and [a.artifact for a in events.assignments()[1]] == [
        "Linux.Events.A",
        "Linux.Events.B",
    ]


def test_an_assignment_applies_to_all_clients_or_to_its_labels(store: Datastore) -> None:
    store.events.assign("A", {}, [], [], 1.0, "x")
    store.events.assign("B", {}, ["web", "db"], [], 1.0, "x")
    every, labelled = store.events.assignments()[1]
    assert every.applies_to(set()) and every.applies_to({"web"})
    assert labelled.applies_to({"db"}) and not labelled.applies_to({"mail"})


def test_status_keeps_the_latest_report(store: Datastore) -> None:
    events = store.events
    events.record_status(CLIENT, "A", "running", None, 0, 100.0, 101.0)
    events.record_status(CLIENT, "A", "restarting", "killed: over 200 MB", 3, 110.0, 111.0)
    events.record_status(CLIENT, "A", "running", None, 0, 105.0, 112.0)  # older, late: ignored
    [status] = events.statuses(client_id=CLIENT)
    assert (status.state, status.error, status.restarts, status.reported) == (
        "restarting",
        "killed: over 200 MB",
        3,
        110.0,
    )
    assert events.statuses(artifact="B") == []
    store.clients.forget(CLIENT)  # a deleted client takes its statuses with it
    assert events.statuses() == []
