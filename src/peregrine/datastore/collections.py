"""Collections (flows): what was asked of a client, its state, and statistics kept exact.

The agent numbers each message of a flow (``seq`` 1, 2, 3, ...) and resends what the server has
not acknowledged, so ``apply`` sees duplicates after every reconnect. It counts a message only
when its ``seq`` is above the flow's ``last_seq``, in the same UPDATE that raises ``last_seq``:
the check and the change are one atomic step, however many threads or processes race.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from .database import Database
from .errors import Conflict, NotFound
from .flow_runs import FlowStep, StepResult, apply_runs
from .records import (
    ERROR,
    IN_FLIGHT_STATES,
    IN_PROGRESS,
    SCHEDULED,
    UNRESPONSIVE,
    FlowRecord,
)
from .schema import clients, flows, tasks
from .transition import statement as _transition

#: Record field -> column, where they differ.
_COLUMNS = {
    "rows": "row_count",
    "bytes": "byte_count",
    "uploads": "upload_count",
    "logs": "log_count",
    "warnings": "warning_count",
}
_FIELDS = {column: name for name, column in _COLUMNS.items()}


class CollectionStore:
    """Every collection, keyed by flow id."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, record: FlowRecord, *, task: bytes | None = None) -> None:
        """Store a new collection and, given ``task``, its request for the client, atomically.

        Storing both in one transaction means a collection can never exist without the task
        that delivers it. Raises NotFound for an unknown client, Conflict for a used flow id.
        """
        try:
            with self._db.write() as conn:
                _require_client(conn, record.client_id)
                insert_flow(conn, record, task)
        except IntegrityError as exc:
            raise Conflict(f"flow {record.flow_id} already exists") from exc

    def create_for_new_clients(self, entries: list[tuple[FlowRecord, bytes]]) -> None:
        """Store new collections with their tasks (record, request) for clients enrolled in
        this same transaction (their interrogations): one INSERT for the flows, one for the
        tasks, no check that the clients exist. Raises Conflict for a used flow id."""
        try:
            with self._db.write() as conn:
                insert_flows(conn, entries)
        except IntegrityError as exc:
            raise Conflict(f"a flow id of {len(entries)} is in use already") from exc

    def get(self, flow_id: str) -> FlowRecord | None:
        """The collection's record, or None."""
        with self._db.read() as conn:
            row = conn.execute(_GET, {"b_flow": flow_id}).first()
        return None if row is None else _record(row)

    def owner(self, flow_id: str) -> str | None:
        """The client a collection belongs to, or None if there is no such collection."""
        with self._db.read() as conn:
            owner: str | None = conn.execute(_OWNER, {"b_flow": flow_id}).scalar_one_or_none()
        return owner

    def list_for_client(
        self, client_id: str, limit: int = 100, offset: int = 0
    ) -> list[FlowRecord]:
        """A page of the client's collections, newest first."""
        query = (
            select(flows)
            .where(flows.c.client_id == client_id)
            .order_by(flows.c.created.desc(), flows.c.flow_id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._db.read() as conn:
            return [_record(row) for row in conn.execute(query)]

    def transition(self, flow_id: str, to_state: str, now: float, error: str | None = None) -> bool:
        """Move a collection to ``to_state``; False if it is already in a final state.

        Entering "In progress" stamps ``started`` (once); entering a final state stamps
        ``finished``. Unresponsive is not final: a client that comes back can still finish.
        """
        statement, parameters = _transition(flow_id, to_state, now, error)
        with self._db.write() as conn:
            if conn.execute(statement, parameters).rowcount == 1:
                return True
            _require_flow(conn, flow_id)
        return False

    def withdraw(self, flow_id: str, now: float, error: str) -> bool:
        """End a collection that never started (still Scheduled) in Error with ``error``, and
        remove its task, in one transaction: it is never delivered after this. False (and
        only the task removed) if the agent started it meanwhile or it has already ended."""
        with self._db.write() as conn:
            ended = conn.execute(_WITHDRAW, {"b_flow": flow_id, "b_now": now, "b_error": error})
            conn.execute(_DROP_TASK, {"b_flow": flow_id})
            if ended.rowcount == 1:
                return True
            _require_flow(conn, flow_id)
        return False

    def apply_and_transition(
        self,
        flow_id: str,
        seq: int,
        now: float,
        to_state: str,
        error: str | None = None,
        *,
        drop_task: bool = False,
        uploads: int = 0,
        upload_bytes: int = 0,
    ) -> tuple[bool, bool]:
        """``apply`` and ``transition`` (and, with ``drop_task``, remove the flow's task) in one
        transaction: a flow's start and end cost one durable commit each, not three.
        Returns (applied, transitioned); a duplicate ``seq`` changes nothing."""
        counts = _counts(flow_id, seq, now, uploads=uploads, upload_bytes=upload_bytes)
        with self._db.write() as conn:
            if conn.execute(_COUNT, counts).rowcount != 1:
                _require_flow(conn, flow_id)
                return False, False
            moved = conn.execute(*_transition(flow_id, to_state, now, error)).rowcount == 1
            if drop_task:
                conn.execute(_DROP_TASK, {"b_flow": flow_id})
        return True, moved

    def apply(
        self,
        flow_id: str,
        seq: int,
        now: float,
        *,
        rows: int = 0,
        bytes: int = 0,
        logs: int = 0,
        uploads: int = 0,
        upload_bytes: int = 0,
        warnings: int = 0,
        source: tuple[str, dict[str, Any]] | None = None,
    ) -> bool:
        """Count agent message ``seq`` of the flow; False (and no change) for a duplicate.

        Any ``seq`` above ``last_seq`` is accepted and becomes the new ``last_seq`` (the agent
        sends in order, so a gap only means a message carried nothing to count). ``source``
        is ``("Artifact/source", {"status": ..., "rows": ..., ...})``, merged into that
        source's entry. Raises NotFound for an unknown flow.
        """
        counts = _counts(
            flow_id, seq, now, rows=rows, bytes=bytes, logs=logs,
            uploads=uploads, upload_bytes=upload_bytes, warnings=warnings,
        )  # fmt: skip
        with self._db.write() as conn:
            if conn.execute(_COUNT, counts).rowcount != 1:
                _require_flow(conn, flow_id)
                return False
            if source is not None:
                # The UPDATE above holds the row (PostgreSQL row lock, SQLite write lock) until
                # commit, so this read-modify-write cannot interleave with another.
                name, status = source
                current = conn.execute(_SOURCES, {"b_flow": flow_id}).scalar_one()
                current[name] = {**current.get(name, {}), **status}
                conn.execute(_SET_SOURCES, {"b_flow": flow_id, "b_sources": current})
        return True

    def apply_runs(
        self, runs: Sequence[Sequence[FlowStep]], now: float
    ) -> list[list[StepResult] | NotFound]:
        """Apply runs of agent messages (each a ``FlowStep``: what ``apply`` and
        ``apply_and_transition`` take) in one read and one write for all their flows, with
        the same rules; a run naming an unknown flow changes nothing and gets ``NotFound``
        (see ``flow_runs``)."""
        with self._db.write() as conn:
            return apply_runs(conn, runs, now)

    def in_flight(self) -> list[FlowRecord]:
        """Collections not yet in a final state, oldest first, for the time-out monitor."""
        query = (
            select(flows)
            .where(flows.c.state.in_(IN_FLIGHT_STATES))
            .order_by(flows.c.created, flows.c.flow_id)
        )
        with self._db.read() as conn:
            return [_record(row) for row in conn.execute(query)]

    def maybe_due(self, now: float, default_expiry: float, grace: float) -> list[FlowRecord]:
        """Collections not final that the time-out monitor may have to end at ``now``, oldest
        first: still Scheduled at their expiry (``created + default_expiry`` when they have
        none), past ``timeout + grace`` since they began, or In progress or Unresponsive
        ``progress_timeout`` after their last activity. A superset: a second's slack, and flows
        the monitor spares each pass (Unresponsive ones whose client stays offline, Scheduled
        ones of an offline client past their time-out) are read again; the monitor decides
        each. The rest of a hunt's thousands of flows in flight are
        compared in the database, not read and built into records every pass."""
        due = now + _DUE_SLACK
        began = func.coalesce(flows.c.started, flows.c.created)
        active = func.coalesce(flows.c.last_activity, flows.c.started, flows.c.created)
        expires = func.coalesce(flows.c.expires, flows.c.created + default_expiry)
        query = (
            select(flows)
            .where(
                flows.c.state.in_(IN_FLIGHT_STATES),
                or_(
                    and_(flows.c.state == SCHEDULED, expires <= due),
                    and_(flows.c.timeout.is_not(None), began + flows.c.timeout + grace <= due),
                    and_(
                        flows.c.state.in_((IN_PROGRESS, UNRESPONSIVE)),
                        flows.c.progress_timeout.is_not(None),
                        active + flows.c.progress_timeout <= due,
                    ),
                ),
            )
            .order_by(flows.c.created, flows.c.flow_id)
        )
        with self._db.read() as conn:
            return [_record(row) for row in conn.execute(query)]

    def has_in_flight(self, client_id: str, creator: str) -> bool:
        """Whether the client has a collection by ``creator`` not yet in a final state."""
        query = select(
            exists().where(
                flows.c.client_id == client_id,
                flows.c.creator == creator,
                flows.c.state.in_(IN_FLIGHT_STATES),
            )
        )
        with self._db.read() as conn:
            return bool(conn.execute(query).scalar())


_RECORD_FIELDS = tuple(FlowRecord.__dataclass_fields__)
#: Seconds ``maybe_due`` looks ahead, so rounding never hides a flow that is due.
_DUE_SLACK = 1.0

# The statements of the per-message path, built once: agents send thousands of messages a
# second, and building a statement costs several times what executing it does.
_COUNT = (
    update(flows)
    .where(flows.c.flow_id == bindparam("b_flow"), flows.c.last_seq < bindparam("b_seq"))
    .values(
        last_seq=bindparam("b_seq"),
        last_activity=bindparam("b_now"),
        row_count=flows.c.row_count + bindparam("b_rows"),
        byte_count=flows.c.byte_count + bindparam("b_bytes"),
        log_count=flows.c.log_count + bindparam("b_logs"),
        upload_count=flows.c.upload_count + bindparam("b_uploads"),
        upload_bytes=flows.c.upload_bytes + bindparam("b_upload_bytes"),
        warning_count=flows.c.warning_count + bindparam("b_warnings"),
    )
)
_DROP_TASK = delete(tasks).where(tasks.c.flow_id == bindparam("b_flow"))
_WITHDRAW = (
    update(flows)
    .where(flows.c.flow_id == bindparam("b_flow"), flows.c.state == SCHEDULED)
    .values(state=ERROR, error=bindparam("b_error"), finished=bindparam("b_now"))
)


def _counts(
    flow_id: str,
    seq: int,
    now: float,
    *,
    rows: int = 0,
    bytes: int = 0,
    logs: int = 0,
    uploads: int = 0,
    upload_bytes: int = 0,
    warnings: int = 0,
) -> dict[str, Any]:
    """Parameters of ``_COUNT``: count message ``seq`` unless the flow already has it."""
    return {
        "b_flow": flow_id,
        "b_seq": seq,
        "b_now": now,
        "b_rows": rows,
        "b_bytes": bytes,
        "b_logs": logs,
        "b_uploads": uploads,
        "b_upload_bytes": upload_bytes,
        "b_warnings": warnings,
    }


_INSERT_FLOW = flows.insert()
_OWNER = select(flows.c.client_id).where(flows.c.flow_id == bindparam("b_flow"))
#: Read once per finished flow (the ingestor's group commit): built once.
_GET = select(flows).where(flows.c.flow_id == bindparam("b_flow"))
_INSERT_TASK = tasks.insert()
_SOURCES = select(flows.c.sources).where(flows.c.flow_id == bindparam("b_flow"))
_SET_SOURCES = (
    update(flows)
    .where(flows.c.flow_id == bindparam("b_flow"))
    .values(sources=bindparam("b_sources"))
)


def insert_flow(conn: Connection, record: FlowRecord, task: bytes | None) -> None:
    """Insert the flow and, given ``task``, its request, inside the caller's transaction."""
    insert_flows(conn, [(record, task)])


def insert_flows(conn: Connection, items: Sequence[tuple[FlowRecord, bytes | None]]) -> None:
    """``insert_flow`` for many flows: one ``executemany`` for the flows and one for their
    tasks (a hunt's batch of clients), in the caller's transaction."""
    if not items:
        return
    conn.execute(
        _INSERT_FLOW,
        [{_COLUMNS.get(name, name): getattr(record, name) for name in _RECORD_FIELDS}
         for record, _task in items],
    )  # fmt: skip
    requests = [
        {
            "flow_id": record.flow_id,
            "client_id": record.client_id,
            "payload": task,
            "created": record.created,
        }
        for record, task in items
        if task is not None
    ]
    if requests:
        conn.execute(_INSERT_TASK, requests)


def _require_client(conn: Connection, client_id: str) -> None:
    if not conn.execute(select(exists().where(clients.c.client_id == client_id))).scalar():
        raise NotFound(f"no client {client_id}")


def _require_flow(conn: Connection, flow_id: str) -> None:
    if not conn.execute(select(exists().where(flows.c.flow_id == flow_id))).scalar():
        raise NotFound(f"no flow {flow_id}")


def _record(row: Row[Any]) -> FlowRecord:
    data = {_FIELDS.get(key, key): value for key, value in row._asdict().items()}
    return FlowRecord(**data)
