"""Tasks: the durable queue of requests waiting for a client."""

from __future__ import annotations

import pytest

from peregrine.datastore import Datastore, FlowRecord, NotFound

CLIENT = "C.00000000000000aa"
OTHER = "C.00000000000000bb"


@pytest.fixture
def store(datastore: Datastore) -> Datastore:
    for client_id in (CLIENT, OTHER):
        datastore.clients.enroll(client_id, client_id.encode(), 1.0)
    for n, client_id in enumerate([CLIENT, CLIENT, OTHER, CLIENT]):
        datastore.collections.create(FlowRecord(f"F.{n:016x}", client_id, [], {}, "alice", 5.0))
    return datastore


def test_pending_is_oldest_first_per_client(store: Datastore) -> None:
    store.tasks.add(CLIENT, "F.0000000000000003", b"third", 30.0)
    store.tasks.add(CLIENT, "F.0000000000000000", b"\x00\xff binary", 31.0)
    store.tasks.add(OTHER, "F.0000000000000002", b"other", 32.0)
    assert store.tasks.pending(CLIENT) == [
        ("F.0000000000000003", b"third"),
        ("F.0000000000000000", b"\x00\xff binary"),
    ]
    assert store.tasks.pending(OTHER) == [("F.0000000000000002", b"other")]


def test_adding_the_same_flow_twice_queues_it_once(store: Datastore) -> None:
    store.tasks.add(CLIENT, "F.0000000000000000", b"first", 30.0)
    store.tasks.add(CLIENT, "F.0000000000000000", b"second", 31.0)
    assert store.tasks.pending(CLIENT) == [("F.0000000000000000", b"first")]


def test_delivered_and_cancel_remove_only_their_task(store: Datastore) -> None:
    for n in (0, 1, 3):
        store.tasks.add(CLIENT, f"F.{n:016x}", b"x", float(n))
    store.tasks.delivered("F.0000000000000000")
    store.tasks.cancel("F.0000000000000003")
    store.tasks.cancel("F.0000000000000003")  # twice is harmless
    assert store.tasks.pending(CLIENT) == [("F.0000000000000001", b"x")]


def test_add_needs_the_clients_own_flow(store: Datastore) -> None:
    with pytest.raises(NotFound):
        store.tasks.add(CLIENT, "F.ffffffffffffffff", b"x", 1.0)
    with pytest.raises(NotFound):
        store.tasks.add(CLIENT, "F.0000000000000002", b"x", 1.0)  # OTHER's flow
    assert store.tasks.pending(CLIENT) == []


def test_waiting_names_the_clients_with_queued_requests(store: Datastore) -> None:
    store.tasks.add(CLIENT, "F.0000000000000000", b"x", 1.0)
    store.tasks.add(CLIENT, "F.0000000000000001", b"x", 2.0)
    unknown = [f"C.{n:016x}" for n in range(1200)]  # more than one chunk
    assert store.tasks.waiting([*unknown, OTHER, CLIENT]) == {CLIENT}
    store.tasks.add(OTHER, "F.0000000000000002", b"x", 3.0)
    assert store.tasks.waiting([CLIENT, OTHER]) == {CLIENT, OTHER}
    assert store.tasks.waiting([]) == set()
