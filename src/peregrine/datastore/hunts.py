"""Hunts: one collection asked of many clients, scheduled on each client at most once.

The hunt manager's (hunt, client) index is the table ``hunt_clients``; its primary key is the
guarantee. ``schedule_client`` writes the index row, the flow and its task in one transaction,
so a client is never scheduled twice however many check-ins, label changes and frontends race,
and a crash mid-scheduling leaves either all three or none. Statistics are one aggregate query
over the hunt's flows each time they are asked for: there are no counters to drift.

Locking, where a decision reads before it writes: on SQLite every write transaction holds the
one writer lock (``BEGIN IMMEDIATE``); on PostgreSQL ``schedule_client`` locks the hunt's row,
exclusively when it must count against ``client_limit`` and shared otherwise, so a hunt that
``set_state`` has stopped schedules nobody afterwards.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from .collections import insert_flow, insert_flows
from .database import Database
from .errors import Conflict, NotFound
from .records import (
    CANCELLED,
    ERROR,
    FINAL_STATES,
    FINISHED,
    FLOW_STATES,
    HUNT_ARCHIVED,
    HUNT_PAUSED,
    HUNT_RUNNING,
    HUNT_STATES,
    HUNT_STOPPED,
    IN_PROGRESS,
    SCHEDULED,
    UNRESPONSIVE,
    FlowRecord,
    HuntClient,
    HuntRecord,
    HuntStats,
)
from .schema import clients, flows, hunt_clients, hunts, tasks

#: The states a hunt may enter each state from. Archiving a running hunt stops it too.
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    HUNT_RUNNING: (HUNT_PAUSED,),
    HUNT_PAUSED: (HUNT_RUNNING,),
    HUNT_STOPPED: (HUNT_PAUSED, HUNT_RUNNING),
    HUNT_ARCHIVED: (HUNT_PAUSED, HUNT_RUNNING, HUNT_STOPPED),
}

_HUNT_FIELDS = tuple(HuntRecord.__dataclass_fields__)


def new_hunt_id() -> str:
    """A new random hunt id: ``H.`` and 16 hex digits."""
    return "H." + secrets.token_hex(8)


class _AlreadyScheduled(Exception):
    """Raised inside a transaction to roll it back: another frontend scheduled the client first."""


class HuntStore:
    """Every hunt, and which clients each was scheduled on."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- hunts -------------------------------------------------------------------------------

    def create(self, record: HuntRecord) -> None:
        """Store a new hunt or template; Conflict for a used id, NotFound for an unknown parent."""
        _check_state(record.state)
        try:
            with self._db.write() as conn:
                _insert_hunt(conn, record)
        except IntegrityError as exc:
            raise Conflict(f"hunt {record.hunt_id} already exists") from exc

    def create_recurrence(
        self, template_id: str, record: HuntRecord, *, last_run: float | None
    ) -> bool:
        """Create the next hunt of a recurring template, once, however many schedulers race.

        ``last_run`` is the template's ``last_run`` as the caller read it. In one transaction
        the template's ``last_run`` becomes ``record.created`` and ``record`` is stored, only if
        ``last_run`` is still what the caller read; otherwise (another frontend, or this one
        before a restart, created this run already) nothing is written and the result is False.
        """
        if record.parent_id != template_id:
            raise ValueError(f"hunt {record.hunt_id} must name {template_id} as its parent_id")
        _check_state(record.state)
        claim = (
            update(hunts)
            .where(
                hunts.c.hunt_id == template_id,
                hunts.c.last_run.is_not_distinct_from(last_run),
            )
            .values(last_run=record.created)
        )
        try:
            with self._db.write() as conn:
                if conn.execute(claim).rowcount != 1:
                    _require_hunt(conn, template_id)
                    return False
                _insert_hunt(conn, record)
        except IntegrityError as exc:
            raise Conflict(f"hunt {record.hunt_id} already exists") from exc
        return True

    def get(self, hunt_id: str) -> HuntRecord | None:
        """The hunt's record, or None."""
        with self._db.read() as conn:
            row = conn.execute(select(hunts).where(hunts.c.hunt_id == hunt_id)).first()
        return None if row is None else _record(row)

    def list(
        self, states: Iterable[str] | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[HuntRecord]:
        """A page of hunts (templates included), newest first, optionally only in ``states``."""
        query = select(hunts).order_by(hunts.c.created.desc(), hunts.c.hunt_id.desc())
        if states is not None:
            wanted = builtins.list(states)
            for state in wanted:
                _check_state(state)
            query = query.where(hunts.c.state.in_(wanted))
        with self._db.read() as conn:
            return [_record(row) for row in conn.execute(query.limit(limit).offset(offset))]

    def set_state(self, hunt_id: str, state: str, now: float) -> bool:
        """Move the hunt to ``state`` if ``ALLOWED_FROM`` permits it; False (no change) if not.

        Starting stamps ``started`` (the first time only); stopping or archiving stamps
        ``stopped`` (the first time only). Raises NotFound for an unknown hunt.
        """
        _check_state(state)
        values: dict[str, Any] = {"state": state}
        if state == HUNT_RUNNING:
            values["started"] = func.coalesce(hunts.c.started, now)
        if state in (HUNT_STOPPED, HUNT_ARCHIVED):
            values["stopped"] = func.coalesce(hunts.c.stopped, now)
        statement = (
            update(hunts)
            .where(hunts.c.hunt_id == hunt_id, hunts.c.state.in_(ALLOWED_FROM[state]))
            .values(**values)
        )
        with self._db.write() as conn:
            if conn.execute(statement).rowcount == 1:
                return True
            _require_hunt(conn, hunt_id)
        return False

    def set_last_run(self, hunt_id: str, now: float) -> None:
        """Note when the scheduler last created a hunt from this template."""
        with self._db.write() as conn:
            result = conn.execute(
                update(hunts).where(hunts.c.hunt_id == hunt_id).values(last_run=now)
            )
        if result.rowcount != 1:
            raise NotFound(f"no hunt {hunt_id}")

    def running(self, now: float) -> builtins.list[HuntRecord]:
        """Hunts that schedule clients now: Running, not expired, and not templates."""
        query = (
            select(hunts)
            .where(
                hunts.c.state == HUNT_RUNNING,
                hunts.c.expires > now,
                hunts.c.schedule.is_(None),
            )
            .order_by(hunts.c.created, hunts.c.hunt_id)
        )
        with self._db.read() as conn:
            return [_record(row) for row in conn.execute(query)]

    def templates(self) -> builtins.list[HuntRecord]:
        """Recurring hunts' templates the scheduler should act on (Running), oldest first."""
        query = (
            select(hunts)
            .where(hunts.c.schedule.is_not(None), hunts.c.state == HUNT_RUNNING)
            .order_by(hunts.c.created, hunts.c.hunt_id)
        )
        with self._db.read() as conn:
            return [_record(row) for row in conn.execute(query)]

    # -- scheduling --------------------------------------------------------------------------

    def schedule_client(
        self,
        hunt_id: str,
        flow: FlowRecord,
        task: bytes,
        now: float,
        *,
        respect_limit: bool = True,
        require_running: bool | None = None,
    ) -> bool:
        """Schedule the hunt on ``flow.client_id``: index row, flow and task, all or nothing.

        False, with nothing written, when the client already has this hunt; with
        ``respect_limit``, also when the hunt already has ``client_limit`` clients; with
        ``require_running`` (by default the same as ``respect_limit``), also when the hunt is
        not Running, has expired, or is a template. ``hunt_add`` passes
        ``respect_limit=False`` to schedule one client on any hunt, still at most once.

        The flow is stored with ``hunt_id`` set. Raises NotFound for an unknown hunt or
        client, Conflict for a used flow id.
        """
        if flow.hunt_id not in (None, hunt_id):
            raise ValueError(f"flow {flow.flow_id} belongs to hunt {flow.hunt_id}, not {hunt_id}")
        if require_running is None:
            require_running = respect_limit
        record = replace(flow, hunt_id=hunt_id)
        client_id = record.client_id
        try:
            with self._db.write() as conn:
                # client_limit never changes, so it can be read before choosing the lock.
                client_limit = conn.execute(
                    select(hunts.c.client_limit).where(hunts.c.hunt_id == hunt_id)
                ).first()
                if client_limit is None:
                    raise NotFound(f"no hunt {hunt_id}")
                limit = client_limit[0] if respect_limit else None
                # Exclusive when counting (schedulers of a limited hunt take turns), shared
                # otherwise; either way set_state waits for this transaction, or it sees the
                # state set_state committed.
                hunt = conn.execute(
                    select(hunts.c.state, hunts.c.expires, hunts.c.schedule)
                    .where(hunts.c.hunt_id == hunt_id)
                    .with_for_update(read=limit is None)
                ).one()
                if require_running and (
                    hunt.state != HUNT_RUNNING or hunt.expires <= now or hunt.schedule is not None
                ):
                    return False
                if not conn.execute(
                    select(exists().where(clients.c.client_id == client_id))
                ).scalar():
                    raise NotFound(f"no client {client_id}")
                if _scheduled(conn, hunt_id, client_id):
                    return False
                if limit is not None and _client_count(conn, hunt_id) >= limit:
                    return False
                insert_flow(conn, record, task)
                inserted = conn.execute(
                    self._db.insert_ignore(hunt_clients)
                    .values(
                        hunt_id=hunt_id, client_id=client_id, flow_id=record.flow_id, scheduled=now
                    )
                    .returning(hunt_clients.c.flow_id)
                ).first()
                if inserted is None:
                    # Another frontend's transaction inserted the same (hunt, client) after our
                    # check (PostgreSQL only): roll back the flow and task written above.
                    raise _AlreadyScheduled
        except _AlreadyScheduled:
            return False
        except IntegrityError as exc:
            raise Conflict(f"flow {record.flow_id} already exists") from exc
        return True

    def schedule_many(
        self, hunt_id: str, batch: builtins.list[tuple[FlowRecord, bytes]], now: float
    ) -> builtins.list[str] | None:
        """Schedule a Running hunt without a ``client_limit`` on many clients in one
        transaction (a hunt's start: one commit per batch, not per client).

        Returns the client ids scheduled, in client order (clients that already have the
        hunt, are unknown, or come again later in the batch are skipped). Returns None, with
        nothing written, when the hunt is not running or has a limit, or when another
        frontend scheduled one of these clients meanwhile: the caller then falls back to
        ``schedule_client`` one by one, which decides each exactly.

        A few statements for the whole batch: which clients exist and which have the hunt
        already (one read each), then the flows, their tasks and the (hunt, client) pairs as
        one ``executemany`` each. The pairs are inserted only if absent and counted back, so a
        pair another frontend took between the read and the insert rolls the batch back.
        """
        try:
            with self._db.write() as conn:
                hunt = conn.execute(
                    select(hunts.c.state, hunts.c.expires, hunts.c.schedule, hunts.c.client_limit)
                    .where(hunts.c.hunt_id == hunt_id)
                    .with_for_update(read=True)
                ).first()
                if hunt is None:
                    raise NotFound(f"no hunt {hunt_id}")
                if (
                    hunt.state != HUNT_RUNNING
                    or hunt.expires <= now
                    or hunt.schedule is not None
                    or hunt.client_limit is not None
                ):
                    return None
                wanted = {flow.client_id for flow, _task in batch}
                known = _present(conn, _KNOWN_CLIENTS, {}, wanted)
                taken = _present(conn, _SCHEDULED_CLIENTS, {"b_hunt": hunt_id}, wanted)
                # In client order: two frontends' batches then lock (hunt, client) keys in the
                # same order, and one waits for the other instead of both deadlocking.
                fresh: dict[str, tuple[FlowRecord, bytes]] = {}
                for flow, task in sorted(batch, key=lambda item: item[0].client_id):
                    client_id = flow.client_id
                    if client_id in known and client_id not in taken and client_id not in fresh:
                        fresh[client_id] = (replace(flow, hunt_id=hunt_id), task)
                if not fresh:
                    return []
                insert_flows(conn, builtins.list(fresh.values()))
                pairs = [
                    {"hunt_id": hunt_id, "client_id": cid, "flow_id": f.flow_id, "scheduled": now}
                    for cid, (f, _task) in fresh.items()
                ]
                inserted = conn.execute(
                    self._db.insert_ignore(hunt_clients).returning(hunt_clients.c.client_id),
                    pairs,
                ).all()
                if len(inserted) != len(pairs):
                    # Another frontend's transaction took some of these pairs after the read
                    # (PostgreSQL only): roll back the flows and tasks written above.
                    raise _AlreadyScheduled
        except _AlreadyScheduled:
            return None
        except IntegrityError as exc:
            raise Conflict(f"a flow id in the batch already exists: {exc}") from exc
        return builtins.list(fresh)

    def is_scheduled(self, hunt_id: str, client_id: str) -> bool:
        """Whether the hunt was ever scheduled on the client."""
        with self._db.read() as conn:
            return _scheduled(conn, hunt_id, client_id)

    def scheduled_hunts(self, client_id: str) -> set[str]:
        """Every hunt the client was scheduled on."""
        query = select(hunt_clients.c.hunt_id).where(hunt_clients.c.client_id == client_id)
        with self._db.read() as conn:
            return set(conn.execute(query).scalars())

    # -- progress ----------------------------------------------------------------------------

    def clients(
        self, hunt_id: str, limit: int = 100, offset: int = 0, state: str | None = None
    ) -> builtins.list[HuntClient]:
        """A page of the hunt's clients in the order they were scheduled, optionally one state."""
        query = (
            select(
                hunt_clients.c.client_id,
                hunt_clients.c.flow_id,
                hunt_clients.c.scheduled,
                flows.c.state,
                flows.c.row_count,
                flows.c.byte_count,
                flows.c.error,
                clients.c.hostname,
            )
            .select_from(_joined())
            .where(hunt_clients.c.hunt_id == hunt_id)
            .order_by(hunt_clients.c.scheduled, hunt_clients.c.client_id)
            .limit(limit)
            .offset(offset)
        )
        if state is not None:
            if state not in FLOW_STATES:
                raise ValueError(f"unknown collection state {state!r}; one of {FLOW_STATES}")
            query = query.where(flows.c.state == state)
        with self._db.read() as conn:
            return [HuntClient(*row) for row in conn.execute(query)]

    def stats(self, hunt_id: str) -> HuntStats:
        """The hunt's statistics, counted from its flows now. NotFound for an unknown hunt."""
        state = flows.c.state
        query = (
            select(
                func.count(),
                _count(state == IN_PROGRESS),
                _count(state == FINISHED),
                _count(and_(state == FINISHED, flows.c.row_count > 0)),
                _count(and_(state == FINISHED, flows.c.row_count == 0)),
                _count(state == ERROR),
                _count(state == CANCELLED),
                _count(state == UNRESPONSIVE),
                func.coalesce(func.sum(flows.c.row_count), 0),
                func.coalesce(func.sum(flows.c.byte_count), 0),
                _count(state == SCHEDULED),
                func.coalesce(func.sum(flows.c.upload_count), 0),
                func.coalesce(func.sum(flows.c.upload_bytes), 0),
            )
            .select_from(hunt_clients.join(flows, flows.c.flow_id == hunt_clients.c.flow_id))
            .where(hunt_clients.c.hunt_id == hunt_id)
        )
        with self._db.read() as conn:
            _require_hunt(conn, hunt_id)
            row = conn.execute(query).one()
        # PostgreSQL sums BIGINT as NUMERIC (Decimal): every field becomes a plain int.
        return HuntStats(*(int(value) for value in row))

    def flows(
        self,
        hunt_id: str,
        after: float | None = None,
        limit: int = 1000,
        *,
        after_client: str | None = None,
    ) -> builtins.list[tuple[str, str, str | None]]:
        """(client_id, flow_id, hostname) of the hunt's flows, by (scheduled time, client id).

        ``after`` skips flows scheduled at or before that time; with ``after_client`` too, it
        skips up to and including that (scheduled, client id) position, so a page can resume
        exactly even when clients were scheduled at the same instant (``clients()`` gives
        each client's ``scheduled``).
        """
        query = (
            select(hunt_clients.c.client_id, hunt_clients.c.flow_id, clients.c.hostname)
            .select_from(
                hunt_clients.join(clients, clients.c.client_id == hunt_clients.c.client_id)
            )
            .where(hunt_clients.c.hunt_id == hunt_id)
            .order_by(hunt_clients.c.scheduled, hunt_clients.c.client_id)
            .limit(limit)
        )
        if after is not None:
            position: ColumnElement[bool] = hunt_clients.c.scheduled > after
            if after_client is not None:
                position = or_(
                    position,
                    and_(
                        hunt_clients.c.scheduled == after,
                        hunt_clients.c.client_id > after_client,
                    ),
                )
            query = query.where(position)
        with self._db.read() as conn:
            return [(client_id, flow_id, host) for client_id, flow_id, host in conn.execute(query)]

    def cancel_unfinished(
        self, hunt_id: str, now: float, reason: str
    ) -> builtins.list[tuple[str, str]]:
        """Cancel every flow of the hunt not yet final and withdraw its task, in one step.

        Returns (client_id, flow_id) of the flows cancelled, so the caller can tell connected
        agents to stop them. A flow that finishes meanwhile keeps its result.
        """
        cancel = (
            update(flows)
            .where(flows.c.hunt_id == hunt_id, flows.c.state.not_in(FINAL_STATES))
            .values(state=CANCELLED, finished=now, error=reason)
            .returning(flows.c.client_id, flows.c.flow_id)
        )
        cancelled = select(flows.c.flow_id).where(
            flows.c.hunt_id == hunt_id, flows.c.state == CANCELLED
        )
        with self._db.write() as conn:
            _require_hunt(conn, hunt_id)
            changed = sorted((client_id, flow_id) for client_id, flow_id in conn.execute(cancel))
            if changed:
                conn.execute(delete(tasks).where(tasks.c.flow_id.in_(cancelled)))
        return changed


def _check_state(state: str) -> None:
    if state not in HUNT_STATES:
        raise ValueError(f"unknown hunt state {state!r}; one of {HUNT_STATES}")


def _insert_hunt(conn: Connection, record: HuntRecord) -> None:
    if record.parent_id is not None:
        _require_hunt(conn, record.parent_id)
    conn.execute(hunts.insert().values(**{name: getattr(record, name) for name in _HUNT_FIELDS}))


def _require_hunt(conn: Connection, hunt_id: str) -> None:
    if not conn.execute(select(exists().where(hunts.c.hunt_id == hunt_id))).scalar():
        raise NotFound(f"no hunt {hunt_id}")


# Built once: asked for every client of a hunt's start.
_SCHEDULED = select(
    exists().where(
        hunt_clients.c.hunt_id == bindparam("b_hunt"),
        hunt_clients.c.client_id == bindparam("b_client"),
    )
)
_KNOWN_CLIENTS = select(clients.c.client_id).where(
    clients.c.client_id.in_(bindparam("b_clients", expanding=True))
)
_SCHEDULED_CLIENTS = select(hunt_clients.c.client_id).where(
    hunt_clients.c.hunt_id == bindparam("b_hunt"),
    hunt_clients.c.client_id.in_(bindparam("b_clients", expanding=True)),
)
#: Client ids per ``IN`` list (SQLite allows 32,766 parameters; PostgreSQL more).
_IN_CHUNK = 500


def _scheduled(conn: Connection, hunt_id: str, client_id: str) -> bool:
    return bool(conn.execute(_SCHEDULED, {"b_hunt": hunt_id, "b_client": client_id}).scalar())


def _present(
    conn: Connection, query: Any, parameters: dict[str, Any], client_ids: set[str]
) -> set[str]:
    """Which of ``client_ids`` ``query`` finds, asked ``_IN_CHUNK`` ids at a time."""
    ordered = sorted(client_ids)
    found: set[str] = set()
    for start in range(0, len(ordered), _IN_CHUNK):
        chunk = ordered[start : start + _IN_CHUNK]
        found.update(conn.execute(query, {**parameters, "b_clients": chunk}).scalars())
    return found


def _client_count(conn: Connection, hunt_id: str) -> int:
    query = select(func.count()).select_from(hunt_clients).where(hunt_clients.c.hunt_id == hunt_id)
    return int(conn.execute(query).scalar_one())


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _joined() -> Any:
    return hunt_clients.join(flows, flows.c.flow_id == hunt_clients.c.flow_id).join(
        clients, clients.c.client_id == hunt_clients.c.client_id
    )


def _record(row: Row[Any]) -> HuntRecord:
    return HuntRecord(**row._asdict())
