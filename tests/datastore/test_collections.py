"""Collections: records, state rules, and statistics that stay exact under duplicates and races."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from peregrine.datastore import (
    CANCELLED,
    ERROR,
    FINISHED,
    IN_PROGRESS,
    SCHEDULED,
    UNRESPONSIVE,
    Conflict,
    Datastore,
    FlowRecord,
    NotFound,
)

CLIENT = "C.00000000000000aa"
FLOW = "F.0000000000000001"
ARTIFACTS = [
    {"name": "Linux.Sys.Users", "parameters": {}},
    {"name": "Generic.Files.Glob", "parameters": {"Glob": "/etc/**/*.conf", "Depth": 3}},
]
REQUEST = {"max_rows": 1_000_000, "max_bytes": 1 << 30, "cpu_limit": 50.0, "urgent": False}


@pytest.fixture
def store(datastore: Datastore) -> Datastore:
    datastore.clients.enroll(CLIENT, b"key", 1.0)
    return datastore


def flow(flow_id: str = FLOW, created: float = 100.0, client_id: str = CLIENT) -> FlowRecord:
    return FlowRecord(
        flow_id=flow_id,
        client_id=client_id,
        artifacts=ARTIFACTS,
        request=REQUEST,
        creator="alice",
        created=created,
        timeout=600.0,
        progress_timeout=120.0,
    )


def run_together(count: int, work: Callable[[], None]) -> None:
    """Start ``count`` threads at one barrier so their calls really overlap."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_create_and_get_round_trip(store: Datastore) -> None:
    store.collections.create(flow())
    assert store.collections.get(FLOW) == flow()
    assert store.collections.get("F.ffffffffffffffff") is None


def test_create_needs_a_known_client_and_a_new_id(store: Datastore) -> None:
    with pytest.raises(NotFound):
        store.collections.create(flow(client_id="C.ffffffffffffffff"))
    store.collections.create(flow())
    with pytest.raises(Conflict):
        store.collections.create(flow(created=200.0))
    assert store.collections.get(FLOW) == flow()


def test_create_with_a_task_queues_it_in_the_same_step(store: Datastore) -> None:
    store.collections.create(flow(), task=b"\x00request\xff")
    assert store.tasks.pending(CLIENT) == [(FLOW, b"\x00request\xff")]


def test_list_for_client_is_newest_first_and_paged(store: Datastore) -> None:
    store.clients.enroll("C.00000000000000bb", b"other", 1.0)
    for n in range(5):
        store.collections.create(flow(f"F.{n:016x}", created=100.0 + n))
    store.collections.create(
        flow("F.00000000000000ff", created=500.0, client_id="C.00000000000000bb")
    )
    newest_first = [f"F.{n:016x}" for n in reversed(range(5))]
    assert [f.flow_id for f in store.collections.list_for_client(CLIENT)] == newest_first
    page = store.collections.list_for_client(CLIENT, limit=2, offset=2)
    assert [f.flow_id for f in page] == newest_first[2:4]


def test_in_progress_stamps_started_once(store: Datastore) -> None:
    store.collections.create(flow())
    assert store.collections.transition(FLOW, IN_PROGRESS, 110.0)
    assert store.collections.transition(FLOW, UNRESPONSIVE, 300.0)
    assert store.collections.transition(FLOW, IN_PROGRESS, 310.0)
    record = store.collections.get(FLOW)
    assert record is not None
    assert (record.state, record.started, record.finished) == (IN_PROGRESS, 110.0, None)
    assert record.last_activity == 310.0


def test_final_state_stamps_finished_and_is_never_left(store: Datastore) -> None:
    store.collections.create(flow())
    store.collections.transition(FLOW, IN_PROGRESS, 110.0)
    assert store.collections.transition(FLOW, ERROR, 150.0, error="disk full")
    for state in (SCHEDULED, IN_PROGRESS, UNRESPONSIVE, FINISHED, CANCELLED, ERROR):
        assert store.collections.transition(FLOW, state, 200.0, error="late") is False
    record = store.collections.get(FLOW)
    assert record is not None
    assert (record.state, record.error, record.finished) == (ERROR, "disk full", 150.0)
    assert record.duration == 40.0


def test_unresponsive_can_still_finish(store: Datastore) -> None:
    store.collections.create(flow())
    store.collections.transition(FLOW, UNRESPONSIVE, 700.0)
    assert store.collections.transition(FLOW, FINISHED, 800.0)
    record = store.collections.get(FLOW)
    assert record is not None and (record.state, record.finished) == (FINISHED, 800.0)


def test_transition_rejects_unknown_states_and_flows(store: Datastore) -> None:
    store.collections.create(flow())
    with pytest.raises(ValueError, match="unknown collection state"):
        store.collections.transition(FLOW, "Done", 1.0)
    with pytest.raises(NotFound):
        store.collections.transition("F.ffffffffffffffff", FINISHED, 1.0)


def test_apply_counts_each_seq_once(store: Datastore) -> None:
    store.collections.create(flow())
    apply = store.collections.apply
    assert apply(FLOW, 1, 120.0, rows=10, bytes=1000)
    assert apply(FLOW, 2, 121.0, logs=3)
    assert not apply(FLOW, 2, 122.0, logs=3)  # resent after a reconnect
    assert not apply(FLOW, 1, 123.0, rows=10, bytes=1000)
    assert apply(FLOW, 3, 124.0, uploads=1, upload_bytes=4096)
    assert apply(FLOW, 5, 125.0, rows=5, bytes=50)  # a gap is accepted
    assert not apply(FLOW, 4, 126.0, rows=99)
    record = store.collections.get(FLOW)
    assert record is not None
    counters = (record.rows, record.bytes, record.logs, record.uploads, record.upload_bytes)
    assert counters == (15, 1050, 3, 1, 4096)
    assert (record.last_seq, record.last_activity) == (5, 125.0)


def test_apply_merges_source_status(store: Datastore) -> None:
    store.collections.create(flow())
    source = "Linux.Sys.Users/users"
    store.collections.apply(FLOW, 1, 1.0, rows=4, source=(source, {"status": "running"}))
    done = {"status": "finished", "rows": 4, "error": None, "elapsed": 0.25}
    store.collections.apply(FLOW, 2, 2.0, source=(source, done))
    store.collections.apply(FLOW, 2, 3.0, source=(source, {"status": "duplicate"}))
    store.collections.apply(FLOW, 3, 4.0, source=("Other/x", {"status": "skipped"}))
    record = store.collections.get(FLOW)
    assert record is not None
    assert record.sources == {source: done, "Other/x": {"status": "skipped"}}


def test_apply_to_an_unknown_flow_raises(store: Datastore) -> None:
    with pytest.raises(NotFound):
        store.collections.apply("F.ffffffffffffffff", 1, 1.0, rows=1)


def test_concurrent_duplicates_count_once(store: Datastore) -> None:
    store.collections.create(flow())
    results: list[bool] = []
    run_together(8, lambda: results.append(store.collections.apply(FLOW, 1, 1.0, rows=7)))
    assert sorted(results) == [False] * 7 + [True]
    record = store.collections.get(FLOW)
    assert record is not None and (record.rows, record.last_seq) == (7, 1)


def test_concurrent_resent_streams_stay_exact(store: Datastore) -> None:
    """Eight threads replay the same 25-message stream: every message is counted exactly once."""
    store.collections.create(flow())
    accepted: list[int] = []

    def replay() -> None:
        for seq in range(1, 26):
            if store.collections.apply(FLOW, seq, float(seq), rows=seq, logs=1):
                accepted.append(seq)

    run_together(8, replay)
    assert sorted(accepted) == list(range(1, 26))
    record = store.collections.get(FLOW)
    assert record is not None
    assert (record.rows, record.logs, record.last_seq) == (sum(range(1, 26)), 25, 25)


def test_in_flight_lists_only_unfinished_collections(store: Datastore) -> None:
    states = [SCHEDULED, IN_PROGRESS, UNRESPONSIVE, FINISHED, ERROR, CANCELLED]
    for n, state in enumerate(states):
        store.collections.create(flow(f"F.{n:016x}", created=float(n)))
        if state != SCHEDULED:
            store.collections.transition(f"F.{n:016x}", state, 10.0)
    in_flight = store.collections.in_flight()
    assert [f.state for f in in_flight] == [SCHEDULED, IN_PROGRESS, UNRESPONSIVE]


def test_maybe_due_reads_only_flows_the_monitor_may_end(store: Datastore) -> None:
    """The monitor's read at ``now`` = 1000: each rule's flow just due is read, the same flow
    a few seconds short of it is not, and a final flow never is (both backends' arithmetic)."""
    made = iter(range(100))

    def add(state: str, created: float, **fields: float | None) -> str:
        flow_id = f"F.{next(made):016x}"
        record = flow(flow_id, created=created)
        store.collections.create(replace(record, **{"timeout": None, **fields}))
        if state != SCHEDULED:
            store.collections.transition(flow_id, state, created)
        return flow_id

    expiring = add(SCHEDULED, 10.0, expires=999.0)
    add(SCHEDULED, 10.0, expires=1005.0)
    no_expiry = add(SCHEDULED, 500.0)  # created + default expiry (500 s)
    add(SCHEDULED, 600.0)
    timed_out = add(IN_PROGRESS, 300.0, timeout=600.0, progress_timeout=None)  # 300+600+30<1000
    add(IN_PROGRESS, 400.0, timeout=600.0, progress_timeout=None)
    quiet = add(UNRESPONSIVE, 800.0, progress_timeout=120.0)  # active at 800: 920 < 1000
    add(IN_PROGRESS, 900.0, progress_timeout=120.0)
    add(FINISHED, 10.0, timeout=1.0, expires=20.0, progress_timeout=1.0)
    due = store.collections.maybe_due(1000.0, default_expiry=500.0, grace=30.0)
    assert {record.flow_id for record in due} == {expiring, no_expiry, timed_out, quiet}


def test_reads_do_not_wait_for_a_writer(store: Datastore) -> None:
    """A long write transaction (held open here) must not stall reads on either backend."""
    store.collections.create(flow())
    holding = threading.Event()
    release = threading.Event()

    def hold_write() -> None:
        with store._db.write() as conn:  # the same path every store write takes
            conn.exec_driver_sql("UPDATE flows SET creator = 'writer'")
            holding.set()
            release.wait(10)

    writer = threading.Thread(target=hold_write)
    writer.start()
    try:
        assert holding.wait(10)
        began = time.monotonic()
        record = store.collections.get(FLOW)
        assert time.monotonic() - began < 1.0
        assert record is not None and record.creator == "alice"  # not the uncommitted write
    finally:
        release.set()
        writer.join()
    record = store.collections.get(FLOW)
    assert record is not None and record.creator == "writer"


def test_apply_and_transition_is_one_step_and_counts_once(store: Datastore) -> None:
    store.collections.create(flow(), task=b"request")
    assert store.collections.apply_and_transition(
        FLOW, 1, 110.0, "In progress", drop_task=True
    ) == (True, True)
    record = store.collections.get(FLOW)
    assert record is not None and record.state == "In progress" and record.started == 110.0
    assert record.last_seq == 1 and store.tasks.pending(CLIENT) == []
    # The same message again (a resend): nothing changes.
    assert store.collections.apply_and_transition(FLOW, 1, 111.0, "In progress") == (False, False)
    done = store.collections.apply_and_transition(
        FLOW, 2, 120.0, "Error", "boom", uploads=2, upload_bytes=300
    )
    assert done == (True, True)
    record = store.collections.get(FLOW)
    assert record is not None
    assert (record.state, record.error, record.finished) == ("Error", "boom", 120.0)
    assert (record.uploads, record.upload_bytes, record.last_seq) == (2, 300, 2)
    # A final flow counts a late message but keeps its state.
    assert store.collections.apply_and_transition(FLOW, 3, 130.0, "Finished") == (True, False)
    assert store.collections.get(FLOW).state == "Error"  # type: ignore[union-attr]


def test_expires_round_trips(store: Datastore) -> None:
    waiting = FlowRecord(FLOW, CLIENT, ARTIFACTS, REQUEST, "alice", 100.0, expires=700.0)
    store.collections.create(waiting)
    assert store.collections.get(FLOW) == waiting


def test_withdraw_ends_a_waiting_flow_with_its_task_in_one_step(store: Datastore) -> None:
    store.collections.create(flow(), task=b"request")
    assert store.collections.withdraw(FLOW, 200.0, "expired before the client came online")
    record = store.collections.get(FLOW)
    assert record is not None
    assert (record.state, record.finished) == (ERROR, 200.0)
    assert record.error == "expired before the client came online"
    assert store.tasks.pending(CLIENT) == []
    assert not store.collections.withdraw(FLOW, 300.0, "again")  # final: left alone
    assert store.collections.get(FLOW) == record


def test_withdraw_leaves_a_started_flow_running(store: Datastore) -> None:
    """The agent started it just before the expiry was applied: it keeps running."""
    store.collections.create(flow(), task=b"request")
    store.collections.transition(FLOW, IN_PROGRESS, 150.0)
    assert not store.collections.withdraw(FLOW, 200.0, "expired")
    record = store.collections.get(FLOW)
    assert record is not None and record.state == IN_PROGRESS and record.error is None
    with pytest.raises(NotFound):
        store.collections.withdraw("F.00000000000000ff", 200.0, "expired")


def test_has_in_flight_counts_only_the_creators_unfinished_collections(store: Datastore) -> None:
    assert not store.collections.has_in_flight(CLIENT, "alice")
    store.collections.create(flow())
    assert store.collections.has_in_flight(CLIENT, "alice")
    assert not store.collections.has_in_flight(CLIENT, "bob")
    assert not store.collections.has_in_flight("C.00000000000000bb", "alice")
    store.collections.transition(FLOW, IN_PROGRESS, 101.0)
    assert store.collections.has_in_flight(CLIENT, "alice")
    store.collections.transition(FLOW, ERROR, 102.0, "lost")
    assert not store.collections.has_in_flight(CLIENT, "alice")
