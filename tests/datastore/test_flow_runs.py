"""Runs of flow messages applied together (``CollectionStore.apply_runs``): the same record as
message by message, each ``seq`` counted once however a run is replayed, on both backends."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from peregrine.datastore import (
    CANCELLED,
    FINAL_STATES,
    FINISHED,
    FLOW_STATES,
    IN_PROGRESS,
    Datastore,
    FlowRecord,
    FlowStep,
    NotFound,
    StepResult,
)

CLIENT = "C.00000000000000aa"
NOW = 500.0


@pytest.fixture
def store(datastore: Datastore) -> Datastore:
    datastore.clients.enroll(CLIENT, b"key", 1.0)
    return datastore


def new_flow(store: Datastore, flow_id: str) -> str:
    record = FlowRecord(
        flow_id=flow_id,
        client_id=CLIENT,
        artifacts=[{"name": "Linux.Sys.Users", "parameters": {}}],
        request={"max_rows": 1000},
        creator="alice",
        created=1.0,
        timeout=600.0,
        progress_timeout=120.0,
    )
    store.collections.create(record, task=b"request")
    return flow_id


def small_collection(flow_id: str) -> list[FlowStep]:
    """What a small collection sends: start, rows, a log, a source's status, end."""
    done = {"status": "finished", "rows": 3, "error": None, "elapsed": 0.5, "warnings": 1}
    return [
        FlowStep(flow_id, 1, to_state=IN_PROGRESS, drop_task=True),
        FlowStep(flow_id, 2, rows=3, bytes=120),
        FlowStep(flow_id, 3, logs=2),
        FlowStep(flow_id, 4, warnings=1, source=("Linux.Sys.Users/users", done)),
        FlowStep(flow_id, 5, to_state=FINISHED, uploads=1, upload_bytes=64),
    ]


def one_by_one(store: Datastore, steps: list[FlowStep]) -> None:
    """The same messages through ``apply`` and ``apply_and_transition``, one call each."""
    collections = store.collections
    for s in steps:
        counts = dict(uploads=s.uploads, upload_bytes=s.upload_bytes)
        if s.to_state is None:
            more = dict(rows=s.rows, bytes=s.bytes, logs=s.logs, warnings=s.warnings)
            collections.apply(s.flow_id, s.seq, NOW, source=s.source, **counts, **more)
        else:
            collections.apply_and_transition(
                s.flow_id, s.seq, NOW, s.to_state, s.error, drop_task=s.drop_task, **counts
            )


def record(store: Datastore, flow_id: str) -> FlowRecord:
    found = store.collections.get(flow_id)
    assert found is not None
    return found


def test_a_folded_run_gives_the_record_of_message_by_message(store: Datastore) -> None:
    folded, single = new_flow(store, "F.0000000000000001"), new_flow(store, "F.0000000000000002")
    (results,) = store.collections.apply_runs([small_collection(folded)], NOW)
    one_by_one(store, small_collection(single))
    assert isinstance(results, list)
    assert [r.applied for r in results] == [True] * 5
    assert [r.moved for r in results] == [True, False, False, False, True]
    expected = record(store, single)
    assert dataclasses.replace(record(store, folded), flow_id=single) == expected
    assert (expected.state, expected.rows, expected.logs, expected.warnings) == (FINISHED, 3, 2, 1)
    # The record the run ended is the stored one, without reading it back.
    ended = results[-1].ended
    assert ended is not None and ended == record(store, folded)
    assert store.tasks.pending(CLIENT) == []  # both starts took their task


def test_a_run_replayed_after_a_partial_apply_counts_each_message_once(
    store: Datastore,
) -> None:
    """A reconnect resends a run whose first messages were stored: only the rest count."""
    replayed, reference = (
        new_flow(store, "F.0000000000000001"),
        new_flow(store, "F.0000000000000002"),
    )
    store.collections.apply_runs([small_collection(replayed)[:2]], NOW)
    (results,) = store.collections.apply_runs([small_collection(replayed)], NOW)
    assert isinstance(results, list)
    assert [r.applied for r in results] == [False, False, True, True, True]
    store.collections.apply_runs([small_collection(reference)], NOW)
    assert dataclasses.replace(record(store, replayed), flow_id=reference) == record(
        store, reference
    )
    # The whole run again: a duplicate from end to end, nothing changes, no second end.
    before = record(store, replayed)
    (again,) = store.collections.apply_runs([small_collection(replayed)], NOW + 10)
    assert again == [StepResult()] * 5
    assert record(store, replayed) == before


def test_the_same_run_twice_in_one_batch_counts_once(store: Datastore) -> None:
    """Two sessions of one agent (the old one still storing) bring the same run together."""
    flow_id = new_flow(store, "F.0000000000000001")
    first, second = store.collections.apply_runs(
        [small_collection(flow_id), small_collection(flow_id)], NOW
    )
    assert isinstance(first, list) and isinstance(second, list)
    assert all(r.applied for r in first) and not any(r.applied for r in second)
    stored = record(store, flow_id)
    assert (stored.rows, stored.bytes, stored.logs, stored.last_seq) == (3, 120, 2, 5)


def test_a_run_naming_an_unknown_flow_changes_nothing(store: Datastore) -> None:
    good, spoiled = new_flow(store, "F.0000000000000001"), new_flow(store, "F.0000000000000002")
    bad_run = [FlowStep(spoiled, 1, rows=5), FlowStep("F.00000000000000ff", 1, rows=1)]
    results = store.collections.apply_runs([bad_run, [FlowStep(good, 1, rows=7)]], NOW)
    assert isinstance(results[0], NotFound)
    assert results[1] == [StepResult(applied=True)]
    assert (record(store, spoiled).rows, record(store, spoiled).last_seq) == (0, 0)
    assert (record(store, good).rows, record(store, good).last_seq) == (7, 1)


def test_a_final_flow_counts_a_run_but_keeps_its_state(store: Datastore) -> None:
    flow_id = new_flow(store, "F.0000000000000001")
    store.collections.transition(flow_id, CANCELLED, 100.0)
    (results,) = store.collections.apply_runs([small_collection(flow_id)], NOW)
    assert isinstance(results, list)
    assert [r.moved for r in results] == [False] * 5
    ended = results[-1].ended
    assert ended is not None and (ended.state, ended.finished, ended.rows) == (CANCELLED, 100.0, 3)
    assert record(store, flow_id) == ended


def test_an_unknown_state_is_refused(store: Datastore) -> None:
    flow_id = new_flow(store, "F.0000000000000001")
    with pytest.raises(ValueError, match="unknown collection state"):
        store.collections.apply_runs([[FlowStep(flow_id, 1, to_state="Done")]], NOW)
    assert record(store, flow_id).last_seq == 0


def test_a_state_change_in_a_run_is_the_one_transition_makes(store: Datastore) -> None:
    """Every state to every state, with and without an error, started or not: ``apply_runs``
    (the row changed in memory) and ``apply_and_transition`` (the UPDATE) agree."""
    cases = list(itertools.product(FLOW_STATES, FLOW_STATES, (None, "lost"), (None, 7.0)))
    for i, (before, _, _, started) in enumerate(cases):
        for kind in "ab":
            flow = FlowRecord(
                flow_id=f"F.{kind}{i:015d}",
                client_id=CLIENT,
                artifacts=[],
                request={},
                creator="alice",
                created=1.0,
                state=before,
                started=started,
                finished=8.0 if before in FINAL_STATES else None,
                last_activity=started,
            )
            store.collections.create(flow, task=None)
    runs = [[FlowStep(f"F.a{i:015d}", 1, to_state=c[1], error=c[2])] for i, c in enumerate(cases)]
    results = store.collections.apply_runs(runs, NOW)
    for i, (case, result) in enumerate(zip(cases, results, strict=True)):
        applied, moved = store.collections.apply_and_transition(
            f"F.b{i:015d}", 1, NOW, case[1], case[2]
        )
        assert isinstance(result, list) and result[0].applied and applied, case
        assert result[0].moved == moved == (case[0] not in FINAL_STATES), case
        expected = record(store, f"F.b{i:015d}")
        in_run = dataclasses.replace(record(store, f"F.a{i:015d}"), flow_id=expected.flow_id)
        assert in_run == expected, case
