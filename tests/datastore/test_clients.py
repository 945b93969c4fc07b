"""Clients: enrollment keyed to one public key, contact times, interrogation results."""

from __future__ import annotations

import threading

import pytest

from peregrine.datastore import Datastore, FlowRecord, KeyMismatch, NotFound

CLIENT = "C.00000000000000aa"
KEY = bytes(range(32))

INFO = {
    "hostname": "web1",
    "fqdn": "web1.example.org",
    "os": "linux",
    "release": "Debian GNU/Linux 12",
    "kernel": "6.1.0-18-amd64",
    "arch": "x86_64",
    "ip_addresses": ["192.0.2.10", "2001:db8::10", "127.0.0.1"],
    "mac_addresses": ["02:00:00:00:00:01"],
    "users": ["root", "alice", "bob"],
    "agent_version": "0.1.0",
    "boot_time": 1700000000.5,
    "unknown_key": "ignored",
}


def test_enroll_is_new_once_then_known(datastore: Datastore) -> None:
    assert datastore.clients.enroll(CLIENT, KEY, 10.0) is True
    assert datastore.clients.enroll(CLIENT, KEY, 20.0) is False
    record = datastore.clients.get(CLIENT)
    assert record is not None
    assert record.public_key == KEY
    assert record.first_seen == record.last_seen == 10.0


def test_enroll_with_another_key_raises_and_keeps_the_first(datastore: Datastore) -> None:
    datastore.clients.enroll(CLIENT, KEY, 10.0)
    with pytest.raises(KeyMismatch):
        datastore.clients.enroll(CLIENT, b"another key", 11.0)
    record = datastore.clients.get(CLIENT)
    assert record is not None and record.public_key == KEY


def test_concurrent_enrollment_is_new_exactly_once(datastore: Datastore) -> None:
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def enroll() -> None:
        barrier.wait()
        results.append(datastore.clients.enroll(CLIENT, KEY, 1.0))

    threads = [threading.Thread(target=enroll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_get_unknown_client_is_none(datastore: Datastore) -> None:
    assert datastore.clients.get("C.ffffffffffffffff") is None


def test_seen_moves_last_seen_only(datastore: Datastore) -> None:
    datastore.clients.enroll(CLIENT, KEY, 10.0)
    datastore.clients.seen(CLIENT, 25.5, "192.0.2.7:51234")
    record = datastore.clients.get(CLIENT)
    assert record is not None
    assert (record.first_seen, record.last_seen) == (10.0, 25.5)
    assert record.last_address == "192.0.2.7:51234"


def test_seen_many_updates_each_client_in_one_call_and_skips_unknown(
    datastore: Datastore,
) -> None:
    other = "C.00000000000000bb"
    datastore.clients.enroll(CLIENT, KEY, 10.0)
    datastore.clients.enroll(other, bytes(32), 11.0)
    datastore.clients.seen_many(
        [(CLIENT, 20.0, "192.0.2.1"), ("C.ffffffffffffffff", 21.0, None), (other, 22.0, None)]
    )
    first, second = datastore.clients.get(CLIENT), datastore.clients.get(other)
    assert first is not None and second is not None
    assert (first.first_seen, first.last_seen, first.last_address) == (10.0, 20.0, "192.0.2.1")
    assert (second.last_seen, second.last_address) == (22.0, None)
    assert datastore.clients.get("C.ffffffffffffffff") is None


def test_set_info_round_trips_every_field(datastore: Datastore) -> None:
    datastore.clients.enroll(CLIENT, KEY, 10.0)
    datastore.clients.set_info(CLIENT, INFO, 30.0)
    record = datastore.clients.get(CLIENT)
    assert record is not None
    for key, value in INFO.items():
        if key != "unknown_key":
            assert getattr(record, key) == value, key
    assert record.interrogated == 30.0
    assert record.last_seen == 10.0


def test_set_info_keeps_fields_it_is_not_given(datastore: Datastore) -> None:
    datastore.clients.enroll(CLIENT, KEY, 10.0)
    datastore.clients.set_info(CLIENT, INFO, 30.0)
    datastore.clients.set_info(CLIENT, {"hostname": "web2", "users": []}, 40.0)
    record = datastore.clients.get(CLIENT)
    assert record is not None
    assert (record.hostname, record.users, record.fqdn) == ("web2", [], "web1.example.org")
    assert record.ip_addresses == INFO["ip_addresses"]


def test_labels_are_sorted_and_unique(datastore: Datastore) -> None:
    datastore.clients.enroll(CLIENT, KEY, 10.0)
    datastore.clients.set_labels(CLIENT, ["web", "dmz", "web"])
    record = datastore.clients.get(CLIENT)
    assert record is not None and record.labels == ["dmz", "web"]


def test_updating_an_unknown_client_raises(datastore: Datastore) -> None:
    with pytest.raises(NotFound):
        datastore.clients.seen(CLIENT, 1.0, None)
    with pytest.raises(NotFound):
        datastore.clients.set_info(CLIENT, INFO, 1.0)


def test_list_pages_in_enrollment_order(datastore: Datastore) -> None:
    ids = [f"C.{n:016x}" for n in range(7)]
    for n, client_id in enumerate(reversed(ids)):
        datastore.clients.enroll(client_id, client_id.encode(), float(n))
    expected = list(reversed(ids))
    assert datastore.clients.count() == 7
    assert [c.client_id for c in datastore.clients.list()] == expected
    assert [c.client_id for c in datastore.clients.list(limit=3, offset=3)] == expected[3:6]
    assert datastore.clients.list(limit=5, offset=7) == []


def test_forget_removes_the_client_with_its_flows_and_tasks(datastore: Datastore) -> None:
    datastore.clients.enroll(CLIENT, KEY, 10.0)
    flow = FlowRecord("F.0000000000000001", CLIENT, [], {}, "alice", 11.0)
    datastore.collections.create(flow, task=b"request")
    datastore.clients.forget(CLIENT)
    assert datastore.clients.get(CLIENT) is None
    assert datastore.collections.get(flow.flow_id) is None
    assert datastore.tasks.pending(CLIENT) == []


def test_enrolled_since_pages_new_clients_in_enrollment_order(datastore: Datastore) -> None:
    ids = [f"C.{n:016x}" for n in range(6)]
    for n, client_id in enumerate(ids):
        datastore.clients.enroll(client_id, client_id.encode(), 100.0 + n // 2)  # pairs
    clients = datastore.clients
    assert [c.client_id for c in clients.enrolled_since(101.0)] == ids[2:]
    assert [c.first_seen for c in clients.enrolled_since(101.0)] == [101.0, 101.0, 102.0, 102.0]
    first = clients.enrolled_since(100.0, limit=3)
    assert [c.client_id for c in first] == ids[:3]
    rest = clients.enrolled_since(first[-1].first_seen, first[-1].client_id, limit=3)
    assert [c.client_id for c in rest] == ids[3:]
    assert clients.enrolled_since(103.0) == []


def test_forget_returns_the_collections_it_removed_and_refuses_unknown_clients(
    datastore: Datastore,
) -> None:
    other = "C.00000000000000bb"
    datastore.clients.enroll(CLIENT, KEY, 10.0)
    datastore.clients.enroll(other, b"other key", 10.0)
    datastore.clients.add_labels(CLIENT, ["retired"])
    flows = [FlowRecord(f"F.000000000000000{n}", CLIENT, [], {}, "alice", 11.0) for n in (1, 2)]
    for flow in flows:
        datastore.collections.create(flow, task=b"request")
    kept = FlowRecord("F.0000000000000003", other, [], {}, "alice", 11.0)
    datastore.collections.create(kept, task=b"request")
    assert sorted(datastore.clients.forget(CLIENT)) == [f.flow_id for f in flows]
    assert datastore.clients.get(CLIENT) is None
    assert datastore.collections.list_for_client(CLIENT) == []
    assert datastore.tasks.pending(CLIENT) == []
    assert datastore.collections.get(kept.flow_id) == kept
    assert datastore.tasks.pending(other) == [(kept.flow_id, b"request")]
    with pytest.raises(NotFound):
        datastore.clients.forget(CLIENT)


def test_set_info_many_stores_each_result_and_refuses_an_unknown_client(
    datastore: Datastore,
) -> None:
    """A burst of interrogations in one call: each client gets its own facts (whatever keys
    each result gives), and a client that is not enrolled gets NotFound, nothing stored."""
    other, unknown = "C.00000000000000bb", "C.00000000000000cc"
    datastore.clients.enroll(CLIENT, KEY, 10.0)
    datastore.clients.enroll(other, bytes(32), 10.0)
    outcomes = datastore.clients.set_info_many(
        [(CLIENT, INFO, 30.0), (unknown, INFO, 30.0), (other, {"hostname": "db1"}, 31.0)]
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], NotFound)
    first, second = datastore.clients.get(CLIENT), datastore.clients.get(other)
    assert first is not None and second is not None
    assert (first.hostname, first.users, first.interrogated) == ("web1", INFO["users"], 30.0)
    assert (second.hostname, second.os, second.users, second.interrogated) == (
        "db1", None, [], 31.0,
    )  # fmt: skip
    assert datastore.clients.get(unknown) is None


def test_enroll_many_tells_new_known_and_forged_apart(datastore: Datastore) -> None:
    """A burst of enrollments in one call: each gets what ``enroll`` would have said, a
    client given twice in the burst is new once, and a forger's key stores nothing."""
    known, new, twice = CLIENT, "C.00000000000000bb", "C.00000000000000cc"
    datastore.clients.enroll(known, KEY, 10.0)
    outcomes = datastore.clients.enroll_many(
        [
            (new, b"n" * 32, 20.0),
            (known, KEY, 20.0),
            (known, b"x" * 32, 20.0),
            (twice, b"t" * 32, 20.0),
            (twice, b"t" * 32, 21.0),
            (twice, b"y" * 32, 21.0),
        ]
    )
    assert outcomes[:2] == [True, False]
    assert isinstance(outcomes[2], KeyMismatch)
    assert outcomes[3:5] == [True, False]
    assert isinstance(outcomes[5], KeyMismatch)
    for client_id, key in ((known, KEY), (new, b"n" * 32), (twice, b"t" * 32)):
        record = datastore.clients.get(client_id)
        assert record is not None and record.public_key == key
    first = datastore.clients.get(new)
    assert first is not None and (first.first_seen, first.labels, first.users) == (20.0, [], [])
