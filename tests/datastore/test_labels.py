"""Client labels changed atomically, and the keyset-paged summaries the hunt index loads."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from peregrine.datastore import ClientSummary, Datastore, NotFound
from peregrine.datastore.schema import clients

CLIENT = "C.00000000000000aa"


def run_together(count: int, work: Callable[[int], object]) -> None:
    """Start ``count`` threads at one barrier so their calls really overlap."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.fixture
def store(datastore: Datastore) -> Datastore:
    datastore.clients.enroll(CLIENT, b"key", 1.0)
    return datastore


def labels_of(store: Datastore, client_id: str = CLIENT) -> list[str]:
    record = store.clients.get(client_id)
    assert record is not None
    return record.labels


def test_add_labels_merges_sorted_and_unique(store: Datastore) -> None:
    assert store.clients.add_labels(CLIENT, ["web", "dmz", "web"]) == ["dmz", "web"]
    assert store.clients.add_labels(CLIENT, ["app", "dmz"]) == ["app", "dmz", "web"]
    assert store.clients.add_labels(CLIENT, []) == ["app", "dmz", "web"]
    assert labels_of(store) == ["app", "dmz", "web"]


def test_remove_labels_keeps_the_rest(store: Datastore) -> None:
    store.clients.set_labels(CLIENT, ["app", "dmz", "web"])
    assert store.clients.remove_labels(CLIENT, ["dmz", "absent"]) == ["app", "web"]
    assert store.clients.remove_labels(CLIENT, ["app", "web"]) == []
    assert labels_of(store) == []


def test_label_changes_on_an_unknown_client_raise(store: Datastore) -> None:
    with pytest.raises(NotFound):
        store.clients.add_labels("C.ffffffffffffffff", ["web"])
    with pytest.raises(NotFound):
        store.clients.remove_labels("C.ffffffffffffffff", ["web"])


def test_one_string_is_not_taken_for_a_list_of_letters(store: Datastore) -> None:
    with pytest.raises(TypeError, match="not one string"):
        store.clients.add_labels(CLIENT, "web")
    assert labels_of(store) == []


def test_concurrent_additions_all_land(store: Datastore) -> None:
    run_together(8, lambda n: store.clients.add_labels(CLIENT, [f"label-{n}"]))
    assert labels_of(store) == [f"label-{n}" for n in range(8)]


def test_concurrent_additions_and_removals_lose_nothing(store: Datastore) -> None:
    """Eight threads each add one label and remove another, repeatedly, all at once."""
    store.clients.set_labels(CLIENT, [f"old-{n}" for n in range(8)])

    def churn(n: int) -> None:
        for round_ in range(5):
            store.clients.add_labels(CLIENT, [f"new-{n}-{round_}"])
        store.clients.remove_labels(CLIENT, [f"old-{n}"])

    run_together(8, churn)
    assert labels_of(store) == sorted(f"new-{n}-{r}" for n in range(8) for r in range(5))


def test_all_for_index_pages_every_client_by_id(datastore: Datastore) -> None:
    count = 12_000
    ids = [f"C.{n * 7919 % count:016x}" for n in range(count)]  # enrolled out of id order
    rows = [
        {
            "client_id": client_id,
            "public_key": client_id.encode(),
            "first_seen": float(n),
            "last_seen": float(n),
            "ip_addresses": [],
            "mac_addresses": [],
            "users": [],
            "labels": ["all"] if n % 2 else [],
        }
        for n, client_id in enumerate(ids)
    ]
    with datastore._db.write() as conn:  # one bulk insert: enroll() 12,000 times is slow
        conn.execute(clients.insert(), rows)
    probe = ids[1235]  # odd: it has the label "all"
    datastore.clients.set_info(
        probe, {"hostname": "web1", "os": "linux", "ip_addresses": ["192.0.2.1"]}, 5.0
    )
    datastore.clients.seen(probe, 9.5, None)
    datastore.clients.add_labels(probe, ["web"])

    seen: list[ClientSummary] = []
    after: str | None = None
    pages = 0
    while page := datastore.clients.all_for_index(after=after):
        seen.extend(page)
        after = page[-1].client_id
        pages += 1
    assert pages == 3
    assert [c.client_id for c in seen] == sorted(ids)
    summary = next(c for c in seen if c.client_id == probe)
    assert summary == ClientSummary(probe, "web1", "linux", ["all", "web"], 9.5, ["192.0.2.1"])
    assert datastore.clients.all_for_index(limit=2) == seen[:2]
    assert datastore.clients.all_for_index(after=seen[-2].client_id) == seen[-1:]
