"""Hunts: records and states, scheduling at most once per client under races, derived statistics."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Table, func, select

from peregrine.datastore import (
    CANCELLED,
    ERROR,
    FINISHED,
    HUNT_ARCHIVED,
    HUNT_PAUSED,
    HUNT_RUNNING,
    HUNT_STATES,
    HUNT_STOPPED,
    IN_PROGRESS,
    SCHEDULED,
    UNRESPONSIVE,
    Conflict,
    Datastore,
    FlowRecord,
    HuntRecord,
    HuntStats,
    NotFound,
    new_hunt_id,
    open_datastore,
)
from peregrine.datastore.collections import insert_flow
from peregrine.datastore.database import Database
from peregrine.datastore.hunts import ALLOWED_FROM
from peregrine.datastore.migrate import alembic_config, head_revision
from peregrine.datastore.schema import flows, hunt_clients, tasks

HUNT = "H.00000000000000a1"
DAY = 86_400.0
_flow_numbers = itertools.count(1)


def hunt(
    hunt_id: str = HUNT,
    *,
    state: str = HUNT_PAUSED,
    created: float = 100.0,
    expires: float = 100.0 + 7 * DAY,
    client_limit: int | None = None,
    schedule: dict[str, Any] | None = None,
    parent_id: str | None = None,
) -> HuntRecord:
    return HuntRecord(
        hunt_id=hunt_id,
        description="Find cron persistence",
        tags=["ir-2024-17", "persistence"],
        artifacts=[{"name": "Linux.Sys.Crontab", "parameters": {"Glob": "/etc/cron*"}}],
        limits={"timeout": 600, "max_rows": 10_000, "cpu_limit": 25.0},
        include_labels=["web"],
        exclude_labels=["quarantined"],
        os=["linux"],
        client_limit=client_limit,
        expires=expires,
        creator="alice",
        created=created,
        state=state,
        notifications_per_second=50.0,
        permissions=["COLLECT_CLIENT", "FILESYSTEM_READ"],
        schedule=schedule,
        parent_id=parent_id,
    )


def client_id(n: int) -> str:
    return f"C.{n:016x}"


def flow_for(client: str, hunt_id: str | None = None, created: float = 200.0) -> FlowRecord:
    """A new flow (fresh id every call) as the hunt manager would build it for ``client``."""
    return FlowRecord(
        flow_id=f"F.{next(_flow_numbers):016x}",
        client_id=client,
        artifacts=[{"name": "Linux.Sys.Crontab", "parameters": {}}],
        request={"max_rows": 10_000},
        creator="alice",
        created=created,
        hunt_id=hunt_id,
    )


def enroll(store: Datastore, count: int, start: int = 0) -> list[str]:
    ids = [client_id(n) for n in range(start, start + count)]
    for n, cid in enumerate(ids):
        store.clients.enroll(cid, cid.encode(), float(n))
    return ids


def run_together(count: int, work: Callable[[int], None]) -> None:
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


def row_count(store: Datastore, table: Table) -> int:
    with store._db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def running(datastore: Datastore) -> Datastore:
    """A datastore with one Running hunt."""
    datastore.hunts.create(hunt(state=HUNT_RUNNING))
    return datastore


# -- records and states ------------------------------------------------------------------------


def test_new_hunt_ids_are_h_and_16_hex() -> None:
    ids = {new_hunt_id() for _ in range(100)}
    assert len(ids) == 100
    for hunt_id in ids:
        assert hunt_id.startswith("H.") and len(hunt_id) == 18
        int(hunt_id[2:], 16)


def test_create_and_get_round_trip(datastore: Datastore) -> None:
    record = hunt(client_limit=5)
    datastore.hunts.create(record)
    assert datastore.hunts.get(HUNT) == record
    assert record.state == HUNT_PAUSED  # the default
    assert datastore.hunts.get("H.ffffffffffffffff") is None


def test_create_refuses_a_used_id_an_unknown_parent_and_an_unknown_state(
    datastore: Datastore,
) -> None:
    datastore.hunts.create(hunt())
    with pytest.raises(Conflict):
        datastore.hunts.create(hunt(created=500.0))
    with pytest.raises(NotFound):
        datastore.hunts.create(hunt("H.00000000000000b1", parent_id="H.ffffffffffffffff"))
    with pytest.raises(ValueError, match="unknown hunt state"):
        datastore.hunts.create(hunt("H.00000000000000b2", state="Done"))
    assert [h.hunt_id for h in datastore.hunts.list()] == [HUNT]
    assert datastore.hunts.get(HUNT) == hunt()


def test_list_is_newest_first_filtered_and_paged(datastore: Datastore) -> None:
    states = [HUNT_PAUSED, HUNT_RUNNING, HUNT_STOPPED, HUNT_ARCHIVED, HUNT_RUNNING]
    for n, state in enumerate(states):
        datastore.hunts.create(hunt(f"H.{n:016x}", state=state, created=100.0 + n))
    newest_first = [f"H.{n:016x}" for n in reversed(range(5))]
    assert [h.hunt_id for h in datastore.hunts.list()] == newest_first
    assert [h.hunt_id for h in datastore.hunts.list(limit=2, offset=1)] == newest_first[1:3]
    running = datastore.hunts.list(states=[HUNT_RUNNING])
    assert [h.hunt_id for h in running] == [f"H.{4:016x}", f"H.{1:016x}"]
    visible = datastore.hunts.list(states=(s for s in HUNT_STATES if s != HUNT_ARCHIVED))
    assert len(visible) == 4
    with pytest.raises(ValueError, match="unknown hunt state"):
        datastore.hunts.list(states=["Done"])


@pytest.mark.parametrize("to_state", HUNT_STATES)
@pytest.mark.parametrize("from_state", HUNT_STATES)
def test_set_state_allows_exactly_the_listed_transitions(
    datastore: Datastore, from_state: str, to_state: str
) -> None:
    datastore.hunts.create(hunt(state=from_state))
    allowed = from_state in ALLOWED_FROM[to_state]
    assert datastore.hunts.set_state(HUNT, to_state, 300.0) is allowed
    record = datastore.hunts.get(HUNT)
    assert record is not None
    assert record.state == (to_state if allowed else from_state)


def test_transition_table_is_the_documented_one() -> None:
    pairs = {(a, b) for b, sources in ALLOWED_FROM.items() for a in sources}
    assert pairs == {
        (HUNT_PAUSED, HUNT_RUNNING),
        (HUNT_RUNNING, HUNT_PAUSED),
        (HUNT_PAUSED, HUNT_STOPPED),
        (HUNT_RUNNING, HUNT_STOPPED),
        (HUNT_PAUSED, HUNT_ARCHIVED),
        (HUNT_RUNNING, HUNT_ARCHIVED),
        (HUNT_STOPPED, HUNT_ARCHIVED),
    }


def test_started_and_stopped_are_stamped_once(datastore: Datastore) -> None:
    datastore.hunts.create(hunt())
    assert datastore.hunts.set_state(HUNT, HUNT_RUNNING, 110.0)
    assert datastore.hunts.set_state(HUNT, HUNT_PAUSED, 120.0)
    assert datastore.hunts.set_state(HUNT, HUNT_RUNNING, 130.0)
    assert datastore.hunts.set_state(HUNT, HUNT_STOPPED, 140.0)
    assert datastore.hunts.set_state(HUNT, HUNT_ARCHIVED, 150.0)
    record = datastore.hunts.get(HUNT)
    assert record is not None
    assert (record.state, record.started, record.stopped) == (HUNT_ARCHIVED, 110.0, 140.0)


def test_archiving_a_running_hunt_stops_it(datastore: Datastore) -> None:
    datastore.hunts.create(hunt(state=HUNT_RUNNING))
    assert datastore.hunts.set_state(HUNT, HUNT_ARCHIVED, 150.0)
    record = datastore.hunts.get(HUNT)
    assert record is not None and record.stopped == 150.0
    assert datastore.hunts.running(160.0) == []


def test_set_state_rejects_unknown_hunts_and_states(datastore: Datastore) -> None:
    datastore.hunts.create(hunt())
    with pytest.raises(NotFound):
        datastore.hunts.set_state("H.ffffffffffffffff", HUNT_RUNNING, 1.0)
    with pytest.raises(ValueError, match="unknown hunt state"):
        datastore.hunts.set_state(HUNT, "Started", 1.0)


def test_running_lists_unexpired_running_hunts_but_not_templates(datastore: Datastore) -> None:
    datastore.hunts.create(hunt("H.0000000000000001", state=HUNT_RUNNING, expires=1000.0))
    datastore.hunts.create(hunt("H.0000000000000002", state=HUNT_RUNNING, expires=2000.0))
    datastore.hunts.create(hunt("H.0000000000000003", state=HUNT_PAUSED, expires=2000.0))
    datastore.hunts.create(hunt("H.0000000000000004", state=HUNT_STOPPED, expires=2000.0))
    template = hunt("H.0000000000000005", state=HUNT_RUNNING, schedule={"every_seconds": 3600})
    datastore.hunts.create(template)
    ids = [h.hunt_id for h in datastore.hunts.running(500.0)]
    assert ids == ["H.0000000000000001", "H.0000000000000002"]
    assert [h.hunt_id for h in datastore.hunts.running(1000.0)] == ["H.0000000000000002"]
    assert datastore.hunts.running(2000.0) == []


def test_templates_are_the_running_scheduled_hunts(datastore: Datastore) -> None:
    every_hour = {"every_seconds": 3600}
    datastore.hunts.create(hunt("H.0000000000000001", state=HUNT_RUNNING, schedule=every_hour))
    datastore.hunts.create(hunt("H.0000000000000002", state=HUNT_PAUSED, schedule=every_hour))
    datastore.hunts.create(hunt("H.0000000000000003", state=HUNT_RUNNING))
    cron = {"cron": "0 3 * * *"}
    datastore.hunts.create(
        hunt("H.0000000000000004", state=HUNT_RUNNING, schedule=cron, created=50.0)
    )
    templates = datastore.hunts.templates()
    assert [h.hunt_id for h in templates] == ["H.0000000000000004", "H.0000000000000001"]
    assert templates[0].schedule == cron and templates[0].is_template


def test_set_last_run(datastore: Datastore) -> None:
    datastore.hunts.create(hunt(schedule={"every_seconds": 60}))
    datastore.hunts.set_last_run(HUNT, 400.0)
    record = datastore.hunts.get(HUNT)
    assert record is not None and record.last_run == 400.0
    with pytest.raises(NotFound):
        datastore.hunts.set_last_run("H.ffffffffffffffff", 1.0)


def test_recurrence_is_created_once_however_many_schedulers_race(datastore: Datastore) -> None:
    datastore.hunts.create(hunt(state=HUNT_RUNNING, schedule={"every_seconds": 60}))
    results: list[bool] = []

    def create(n: int) -> None:
        child = hunt(f"H.{n + 1:016x}", state=HUNT_RUNNING, created=1000.0, parent_id=HUNT)
        results.append(datastore.hunts.create_recurrence(HUNT, child, last_run=None))

    run_together(8, create)
    assert sorted(results) == [False] * 7 + [True]
    children = [h for h in datastore.hunts.list() if h.parent_id == HUNT]
    assert len(children) == 1
    template = datastore.hunts.get(HUNT)
    assert template is not None and template.last_run == 1000.0
    # The next run names the last_run it read; a stale one is refused.
    later = hunt("H.00000000000000f1", created=1060.0, parent_id=HUNT)
    assert not datastore.hunts.create_recurrence(HUNT, later, last_run=None)
    assert datastore.hunts.create_recurrence(HUNT, later, last_run=1000.0)
    assert datastore.hunts.get("H.00000000000000f1") == later


def test_recurrence_needs_its_template_as_parent(datastore: Datastore) -> None:
    datastore.hunts.create(hunt(schedule={"every_seconds": 60}))
    with pytest.raises(ValueError, match="parent_id"):
        datastore.hunts.create_recurrence(HUNT, hunt("H.00000000000000f1"), last_run=None)
    orphan = hunt("H.00000000000000f2", parent_id="H.ffffffffffffffff")
    with pytest.raises(NotFound):
        datastore.hunts.create_recurrence("H.ffffffffffffffff", orphan, last_run=None)


def test_matches_include_any_exclude_none_and_os() -> None:
    record = replace(hunt(), include_labels=["web", "db"], exclude_labels=["quarantined"])
    assert record.matches(["web"], "Linux")
    assert record.matches(["db", "other"], "linux")
    assert not record.matches(["mail"], "linux")
    assert not record.matches(["web", "quarantined"], "linux")
    assert not record.matches(["web"], "windows")
    assert not record.matches(["web"], None)  # the OS is not known before interrogation
    anything = replace(record, include_labels=[], exclude_labels=[], os=[])
    assert anything.matches([], None)


# -- scheduling --------------------------------------------------------------------------------


def test_schedule_client_stores_index_flow_and_task_together(running: Datastore) -> None:
    (client,) = enroll(running, 1)
    flow = flow_for(client)
    assert running.hunts.schedule_client(HUNT, flow, b"task", 300.0)
    stored = running.collections.get(flow.flow_id)
    assert stored == replace(flow, hunt_id=HUNT)
    assert running.tasks.pending(client) == [(flow.flow_id, b"task")]
    assert running.hunts.is_scheduled(HUNT, client)
    assert running.hunts.scheduled_hunts(client) == {HUNT}
    # The second time writes nothing.
    again = flow_for(client)
    assert not running.hunts.schedule_client(HUNT, again, b"task", 301.0)
    assert running.collections.get(again.flow_id) is None
    assert running.tasks.pending(client) == [(flow.flow_id, b"task")]


def test_scheduled_hunts_lists_every_hunt_of_the_client(running: Datastore) -> None:
    client, other = enroll(running, 2)
    running.hunts.create(hunt("H.00000000000000b2", state=HUNT_RUNNING))
    running.hunts.create(hunt("H.00000000000000b3", state=HUNT_RUNNING))
    for hunt_id in (HUNT, "H.00000000000000b2"):
        assert running.hunts.schedule_client(hunt_id, flow_for(client), b"t", 300.0)
    assert running.hunts.scheduled_hunts(client) == {HUNT, "H.00000000000000b2"}
    assert running.hunts.scheduled_hunts(other) == set()
    assert not running.hunts.is_scheduled("H.00000000000000b3", client)


def test_one_client_checking_in_on_16_threads_is_scheduled_once(running: Datastore) -> None:
    (client,) = enroll(running, 1)
    results: list[bool] = []
    run_together(
        16,
        lambda n: results.append(
            running.hunts.schedule_client(HUNT, flow_for(client), b"task %d" % n, 300.0)
        ),
    )
    assert sorted(results) == [False] * 15 + [True]
    assert len(running.collections.list_for_client(client)) == 1
    assert len(running.tasks.pending(client)) == 1
    assert row_count(running, hunt_clients) == 1
    assert row_count(running, flows) == 1
    assert row_count(running, tasks) == 1


def test_client_limit_holds_when_40_clients_race_on_16_threads(datastore: Datastore) -> None:
    datastore.hunts.create(hunt(state=HUNT_RUNNING, client_limit=5))
    clients = enroll(datastore, 40)
    results: list[bool] = []
    lock = threading.Lock()

    def schedule(n: int) -> None:
        for client in clients[n::16]:
            ok = datastore.hunts.schedule_client(HUNT, flow_for(client), b"task", 300.0)
            with lock:
                results.append(ok)

    run_together(16, schedule)
    assert len(results) == 40 and results.count(True) == 5
    assert datastore.hunts.stats(HUNT).scheduled == 5
    assert row_count(datastore, flows) == 5
    assert row_count(datastore, tasks) == 5


def test_hunt_add_bypasses_limit_and_state_but_still_schedules_once(datastore: Datastore) -> None:
    datastore.hunts.create(hunt(state=HUNT_RUNNING, client_limit=1))
    first, second = enroll(datastore, 2)
    assert datastore.hunts.schedule_client(HUNT, flow_for(first), b"t", 300.0)
    assert not datastore.hunts.schedule_client(HUNT, flow_for(second), b"t", 300.0)
    assert datastore.hunts.set_state(HUNT, HUNT_PAUSED, 301.0)
    results: list[bool] = []
    run_together(
        8,
        lambda _: results.append(
            datastore.hunts.schedule_client(
                HUNT, flow_for(second), b"t", 302.0, respect_limit=False
            )
        ),
    )
    assert sorted(results) == [False] * 7 + [True]
    assert not datastore.hunts.schedule_client(
        HUNT, flow_for(first), b"t", 303.0, respect_limit=False
    )
    assert datastore.hunts.stats(HUNT).scheduled == 2


def test_only_a_running_unexpired_hunt_schedules_by_default(datastore: Datastore) -> None:
    (client,) = enroll(datastore, 1)
    datastore.hunts.create(hunt("H.0000000000000001", state=HUNT_PAUSED))
    datastore.hunts.create(hunt("H.0000000000000002", state=HUNT_STOPPED))
    datastore.hunts.create(hunt("H.0000000000000003", state=HUNT_RUNNING, expires=300.0))
    template = hunt("H.0000000000000004", state=HUNT_RUNNING, schedule={"every_seconds": 9})
    datastore.hunts.create(template)
    for n in range(1, 5):
        assert not datastore.hunts.schedule_client(f"H.{n:016x}", flow_for(client), b"t", 300.0)
    assert datastore.hunts.scheduled_hunts(client) == set()
    # hunt_add on the expired one works.
    assert datastore.hunts.schedule_client(
        "H.0000000000000003", flow_for(client), b"t", 300.0, respect_limit=False
    )


def test_no_client_is_scheduled_after_stop_returns(running: Datastore) -> None:
    """Check-ins race a stop: what is scheduled when set_state returns is all there ever is."""
    clients = enroll(running, 120)
    at_stop: set[str] = set()
    late: list[str] = []
    stopped = threading.Event()
    lock = threading.Lock()

    def work(n: int) -> None:
        if n == 0:
            assert running.hunts.set_state(HUNT, HUNT_STOPPED, 400.0)
            stopped.set()
            with running._db.read() as conn:
                at_stop.update(conn.execute(select(hunt_clients.c.client_id)).scalars())
            return
        for client in clients[n - 1 :: 7]:
            was_stopped = stopped.is_set()
            scheduled = running.hunts.schedule_client(HUNT, flow_for(client), b"t", 300.0)
            if scheduled and was_stopped:
                with lock:
                    late.append(client)

    run_together(8, work)
    assert late == []
    with running._db.read() as conn:
        final = set(conn.execute(select(hunt_clients.c.client_id)).scalars())
    assert final == at_stop


def test_schedule_client_refusals_write_nothing(running: Datastore) -> None:
    (client,) = enroll(running, 1)
    with pytest.raises(NotFound):
        running.hunts.schedule_client("H.ffffffffffffffff", flow_for(client), b"t", 300.0)
    with pytest.raises(NotFound):
        running.hunts.schedule_client(HUNT, flow_for("C.ffffffffffffffff"), b"t", 300.0)
    with pytest.raises(ValueError, match="belongs to hunt"):
        running.hunts.schedule_client(HUNT, flow_for(client, "H.0000000000000bad"), b"t", 300.0)
    used = flow_for("C.ffffffffffffffff")
    running.clients.enroll(used.client_id, b"other", 1.0)
    running.collections.create(used)
    with pytest.raises(Conflict):
        running.hunts.schedule_client(HUNT, replace(used, client_id=client), b"t", 300.0)
    assert not running.hunts.is_scheduled(HUNT, client)
    assert running.tasks.pending(client) == []
    # Nothing half-written stands in the way of the next attempt.
    assert running.hunts.schedule_client(HUNT, flow_for(client), b"t", 301.0)


def test_index_survives_a_restart_mid_scheduling(datastore_url: str) -> None:
    """A frontend dies half-way through a hunt; the next one schedules only the rest."""
    with open_datastore(datastore_url) as store:
        store.hunts.create(hunt(state=HUNT_RUNNING))
        clients = enroll(store, 10)
        for client in clients[:6]:
            assert store.hunts.schedule_client(HUNT, flow_for(client), b"t", 300.0)
    with open_datastore(datastore_url) as store:
        results = [store.hunts.schedule_client(HUNT, flow_for(c), b"t", 400.0) for c in clients]
        assert results == [False] * 6 + [True] * 4
        assert store.hunts.stats(HUNT).scheduled == 10
        for client in clients:
            assert len(store.collections.list_for_client(client)) == 1


def test_forgetting_a_client_removes_it_from_its_hunts(running: Datastore) -> None:
    client, other = enroll(running, 2)
    running.hunts.schedule_client(HUNT, flow_for(client), b"t", 300.0)
    running.hunts.schedule_client(HUNT, flow_for(other), b"t", 300.0)
    running.clients.forget(client)
    assert running.hunts.scheduled_hunts(client) == set()
    assert [c.client_id for c in running.hunts.clients(HUNT)] == [other]
    assert running.hunts.stats(HUNT).scheduled == 1


# -- statistics and progress -------------------------------------------------------------------


def _drive_flows(store: Datastore, flow_ids: list[str]) -> None:
    """Move ten flows to a mix of states with results: the scenario the stats test expects."""
    collections = store.collections
    plan = [
        (IN_PROGRESS, 0),
        (IN_PROGRESS, 7),
        (FINISHED, 10),
        (FINISHED, 20),
        (FINISHED, 30),
        (FINISHED, 0),
        (ERROR, 4),
        (CANCELLED, 0),
        (UNRESPONSIVE, 0),
        (SCHEDULED, 0),
    ]
    for flow_id, (state, rows) in zip(flow_ids, plan, strict=True):
        if state != SCHEDULED:
            collections.transition(flow_id, IN_PROGRESS, 310.0)
        if rows:
            assert collections.apply(flow_id, 1, 320.0, rows=rows, bytes=rows * 100)
            assert not collections.apply(flow_id, 1, 321.0, rows=rows, bytes=rows * 100)
        if state not in (SCHEDULED, IN_PROGRESS):
            collections.transition(flow_id, state, 330.0, error="boom" if state == ERROR else None)


EXPECTED_STATS = HuntStats(
    scheduled=10,
    in_progress=2,
    finished=4,
    with_results=3,
    without_results=1,
    errors=1,
    cancelled=1,
    unresponsive=1,
    rows=71,
    bytes=7100,
    waiting=1,
)


def test_stats_are_derived_and_survive_a_restart(datastore_url: str) -> None:
    with open_datastore(datastore_url) as store:
        store.hunts.create(hunt(state=HUNT_RUNNING))
        assert store.hunts.stats(HUNT) == HuntStats()
        flow_ids = []
        for client in enroll(store, 10):
            flow = flow_for(client)
            assert store.hunts.schedule_client(HUNT, flow, b"t", 300.0)
            flow_ids.append(flow.flow_id)
        # A flow of the same clients outside the hunt must not count.
        outside = flow_for(client_id(0))
        store.collections.create(outside)
        store.collections.apply(outside.flow_id, 1, 1.0, rows=1000, bytes=1000)
        _drive_flows(store, flow_ids)
        assert store.hunts.stats(HUNT) == EXPECTED_STATS
    with open_datastore(datastore_url) as store:
        assert store.hunts.stats(HUNT) == EXPECTED_STATS
    with pytest.raises(NotFound), open_datastore(datastore_url) as store:
        store.hunts.stats("H.ffffffffffffffff")


def test_clients_pages_in_schedule_order_with_state_filter(running: Datastore) -> None:
    clients = enroll(running, 10)
    flow_ids = []
    for n, client in enumerate(clients):
        flow = flow_for(client)
        running.hunts.schedule_client(HUNT, flow, b"t", 300.0 + n)
        flow_ids.append(flow.flow_id)
    running.clients.set_info(clients[2], {"hostname": "web3"}, 305.0)
    _drive_flows(running, flow_ids)
    page = running.hunts.clients(HUNT, limit=3, offset=1)
    assert [c.client_id for c in page] == clients[1:4]
    third = page[1]
    assert (third.flow_id, third.scheduled, third.state) == (flow_ids[2], 302.0, FINISHED)
    assert (third.rows, third.bytes, third.error, third.hostname) == (10, 1000, None, "web3")
    finished = running.hunts.clients(HUNT, state=FINISHED)
    assert [c.client_id for c in finished] == clients[2:6]
    errors = running.hunts.clients(HUNT, state=ERROR)
    assert [(c.client_id, c.error) for c in errors] == [(clients[6], "boom")]
    assert running.hunts.clients(HUNT, offset=10) == []
    with pytest.raises(ValueError, match="unknown collection state"):
        running.hunts.clients(HUNT, state="Done")


def test_flows_are_ordered_by_schedule_time_then_client(running: Datastore) -> None:
    clients = enroll(running, 6)
    times = [300.0, 300.0, 300.0, 200.0, 400.0, 300.0]  # ties broken by client id
    flow_of = {}
    for client, at in zip(reversed(clients), times, strict=True):
        flow = flow_for(client)
        running.hunts.schedule_client(HUNT, flow, b"t", at)
        flow_of[client] = flow.flow_id
    running.clients.set_info(clients[0], {"hostname": "db1"}, 1.0)
    order = [clients[2], clients[0], clients[3], clients[4], clients[5], clients[1]]
    listed = running.hunts.flows(HUNT)
    expected = [(c, flow_of[c], "db1" if c == clients[0] else None) for c in order]
    assert listed == expected
    assert running.hunts.flows(HUNT, limit=2) == expected[:2]
    assert running.hunts.flows(HUNT, after=300.0) == expected[5:]
    assert running.hunts.flows(HUNT, after=300.0, after_client=clients[3]) == expected[3:]
    assert running.hunts.flows(HUNT, after=200.0, limit=2) == expected[1:3]


def test_cancel_unfinished_cancels_the_rest_and_withdraws_tasks(running: Datastore) -> None:
    clients = enroll(running, 10)
    flow_ids = []
    for client in clients:
        flow = flow_for(client)
        running.hunts.schedule_client(HUNT, flow, b"t", 300.0)
        flow_ids.append(flow.flow_id)
    _drive_flows(running, flow_ids)
    # The agent reported the first eight started: their tasks are gone; two are still queued.
    for flow_id in flow_ids[:8]:
        running.tasks.delivered(flow_id)
    # Unrelated flows of the same clients stay as they are.
    outside = flow_for(clients[0])
    running.collections.create(outside, task=b"other")

    changed = running.hunts.cancel_unfinished(HUNT, 500.0, "hunt stopped by alice")

    unfinished = [0, 1, 8, 9]  # in progress, unresponsive, scheduled
    assert changed == sorted((clients[n], flow_ids[n]) for n in unfinished)
    for n in unfinished:
        record = running.collections.get(flow_ids[n])
        assert record is not None
        assert (record.state, record.finished, record.error) == (
            CANCELLED,
            500.0,
            "hunt stopped by alice",
        )
        assert running.tasks.pending(clients[n]) == (
            [(outside.flow_id, b"other")] if n == 0 else []
        )
    finished = running.collections.get(flow_ids[2])
    assert finished is not None and (finished.state, finished.finished) == (FINISHED, 330.0)
    outside_now = running.collections.get(outside.flow_id)
    assert outside_now is not None and outside_now.state == SCHEDULED
    stats = running.hunts.stats(HUNT)
    assert (stats.cancelled, stats.in_progress, stats.unresponsive, stats.waiting) == (5, 0, 0, 0)
    assert running.hunts.cancel_unfinished(HUNT, 600.0, "again") == []
    with pytest.raises(NotFound):
        running.hunts.cancel_unfinished("H.ffffffffffffffff", 600.0, "x")


# -- migration ---------------------------------------------------------------------------------


def test_upgrading_from_0001_keeps_flows_outside_any_hunt(datastore_url: str) -> None:
    db = Database(datastore_url)
    try:
        with db.write() as conn:
            command.upgrade(alembic_config(conn), "0001")
            conn.exec_driver_sql(
                "INSERT INTO clients (client_id, public_key, first_seen, last_seen, "
                "ip_addresses, mac_addresses, users, labels) "
                "VALUES ('C.0000000000000001', 'k', 1, 1, '[]', '[]', '[]', '[]')"
            )
            conn.exec_driver_sql(
                "INSERT INTO flows (flow_id, client_id, artifacts, request, creator, created, "
                "state, sources) VALUES ('F.0000000000000001', 'C.0000000000000001', '[]', "
                "'{}', 'alice', 2, 'Scheduled', '{}')"
            )
    finally:
        db.close()
    with open_datastore(datastore_url) as store:
        assert store.revision() == head_revision()
        record = store.collections.get("F.0000000000000001")
        assert record is not None and record.hunt_id is None and record.creator == "alice"
        store.hunts.create(hunt(state=HUNT_RUNNING))
        flow = flow_for("C.0000000000000001")
        assert store.hunts.schedule_client(HUNT, flow, b"t", 300.0)


# -- scheduling in batches -----------------------------------------------------------------------


def test_schedule_many_writes_each_new_client_once(running: Datastore) -> None:
    ids = enroll(running, 6)
    assert running.hunts.schedule_client(HUNT, flow_for(ids[0]), b"t", 300.0)
    batch = [(flow_for(cid), b"task") for cid in [*ids, "C.ffffffffffffffff"]]
    done = running.hunts.schedule_many(HUNT, batch, 301.0)
    assert done == ids[1:]  # the one already scheduled and the unknown client are skipped
    assert running.hunts.stats(HUNT).scheduled == 6
    assert row_count(running, hunt_clients) == 6
    assert row_count(running, tasks) == 6
    # Again: nothing new, nothing doubled.
    assert running.hunts.schedule_many(HUNT, [(flow_for(c), b"t") for c in ids], 302.0) == []
    assert row_count(running, flows) == 6


def test_schedule_many_schedules_a_client_named_twice_in_a_batch_once(
    running: Datastore,
) -> None:
    ids = enroll(running, 3)
    batch = [(flow_for(c), b"t") for c in [ids[2], ids[0], ids[2], ids[1], ids[0]]]
    assert running.hunts.schedule_many(HUNT, batch, 300.0) == ids
    assert row_count(running, flows) == 3
    assert row_count(running, tasks) == 3
    assert row_count(running, hunt_clients) == 3


def test_schedule_many_rolls_back_when_another_frontend_takes_a_pair_meanwhile(
    running: Datastore,
) -> None:
    """PostgreSQL: a pair inserted by a transaction not yet committed when the batch reads is
    found only by the batch's insert, which waits for it; the batch then writes nothing."""
    if running._db.backend != "postgresql":
        pytest.skip("SQLite's one writer lock leaves no room between the read and the insert")
    ids = enroll(running, 4)
    other = running._db.engine.connect()
    other_txn = other.begin()
    rival_pid = other.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    rival = replace(flow_for(ids[2]), hunt_id=HUNT)
    insert_flow(other, rival, b"rival")
    other.execute(
        hunt_clients.insert().values(
            hunt_id=HUNT, client_id=ids[2], flow_id=rival.flow_id, scheduled=299.0
        )
    )
    outcome: list[list[str] | None] = []
    batch = threading.Thread(
        target=lambda: outcome.append(
            running.hunts.schedule_many(HUNT, [(flow_for(c), b"t") for c in ids], 300.0)
        )
    )
    batch.start()
    deadline = time.monotonic() + 10
    while not _waiting_for(running, rival_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    other_txn.commit()
    other.close()
    batch.join(10)
    assert outcome == [None]  # the caller decides these clients one by one
    assert row_count(running, flows) == 1  # only the rival's
    assert row_count(running, tasks) == 1
    assert running.hunts.clients(HUNT)[0].flow_id == rival.flow_id


def _waiting_for(store: Datastore, pid: int) -> bool:
    """Whether a session waits for a lock that backend ``pid`` holds (only this test's: the
    shared test server runs other tests meanwhile)."""
    with store._db.read() as conn:
        waiting = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE %(pid)s = ANY(pg_blocking_pids(pid))",
            {"pid": pid},
        ).scalar_one()
    return bool(waiting)


def test_schedule_many_declines_what_it_cannot_decide_alone(datastore: Datastore) -> None:
    ids = enroll(datastore, 3)
    datastore.hunts.create(hunt(state=HUNT_RUNNING, client_limit=2))
    datastore.hunts.create(hunt("H.00000000000000aa", state=HUNT_PAUSED))
    batch = [(flow_for(c), b"t") for c in ids]
    assert datastore.hunts.schedule_many(HUNT, batch, 300.0) is None  # has a client limit
    assert datastore.hunts.schedule_many("H.00000000000000aa", batch, 300.0) is None  # paused
    assert row_count(datastore, flows) == 0


def test_schedule_many_and_single_schedulers_racing_schedule_once(running: Datastore) -> None:
    ids = enroll(running, 40)

    def work(n: int) -> None:
        if n % 2:
            running.hunts.schedule_many(HUNT, [(flow_for(c), b"t") for c in ids], 300.0)
        else:
            for cid in ids:
                running.hunts.schedule_client(HUNT, flow_for(cid), b"t", 300.0)

    run_together(8, work)
    assert running.hunts.stats(HUNT).scheduled == 40
    assert row_count(running, hunt_clients) == 40
    assert row_count(running, flows) == 40
