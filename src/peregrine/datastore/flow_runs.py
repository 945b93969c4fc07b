"""Runs of flow messages applied together: one read and one write for every flow of a batch.

A small collection reaches the server as one run (its start, rows, source status and end);
thousands of them arrive at once during a hunt. Applied message by message (``apply``,
``apply_and_transition``), each costs two or three statements, about ten a flow, and the
finished record is read back. Here every flow a batch of runs touches is read once (locked:
PostgreSQL ``FOR UPDATE``, SQLite's writer lock), each message is applied to that row in
Python, in order, with ``apply``'s rule (a ``seq`` at or below ``last_seq`` is a duplicate and
changes nothing), and the rows are written back by one ``executemany`` guarded by the
``last_seq`` that was read. A run resent after a reconnect, whole or in part, is therefore
counted once, message by message; the flow record a run ends is known without a read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Text, bindparam, delete, select, type_coerce, update

from .errors import NotFound
from .records import FINAL_STATES, FLOW_STATES, FlowRecord
from .schema import flows, tasks
from .transition import move


@dataclass(slots=True)
class FlowStep:
    """What one agent message changes on its flow: counts, a source's status (merged into its
    entry), a state to move to (unless the flow is final) and whether its task goes."""

    flow_id: str
    seq: int
    rows: int = 0
    bytes: int = 0
    logs: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    warnings: int = 0
    source: tuple[str, dict[str, Any]] | None = None
    to_state: str | None = None
    error: str | None = None
    drop_task: bool = False


@dataclass(slots=True)
class StepResult:
    """``applied``: counted (False for a duplicate); ``moved``: its state change happened;
    ``ended``: the flow as this step, entering a final state or not, left it (given for an
    applied step that asked for a final state)."""

    applied: bool = False
    moved: bool = False
    ended: FlowRecord | None = None


class StaleFlow(RuntimeError):
    """A flow changed between its locked read and its write: a bug, never a race."""


def apply_runs(
    conn: Connection, runs: Sequence[Sequence[FlowStep]], now: float
) -> list[list[StepResult] | NotFound]:
    """Apply each run's steps in order, in the caller's write transaction.

    A run naming an unknown flow changes nothing and gets ``NotFound``; the others are
    applied. Steps of one flow in several runs are applied in the runs' order.
    """
    for run in runs:
        for step in run:
            if step.to_state is not None and step.to_state not in FLOW_STATES:
                raise ValueError(
                    f"unknown collection state {step.to_state!r}; one of {FLOW_STATES}"
                )
    rows = _read(conn, {step.flow_id for run in runs for step in run})
    results: list[list[StepResult] | NotFound] = []
    dropped: list[dict[str, Any]] = []
    for run in runs:
        missing = next((step.flow_id for step in run if step.flow_id not in rows), None)
        if missing is not None:
            results.append(NotFound(f"no flow {missing}"))
            continue
        results.append([_apply(rows[step.flow_id], step, now, dropped) for step in run])
    changed = [row.parameters() for row in rows.values() if row.changed]
    if changed:
        written = conn.execute(_WRITE, changed).rowcount
        if written != len(changed):
            raise StaleFlow(f"{len(changed) - written} of {len(changed)} flows changed under lock")
    if dropped:
        conn.execute(_DROP_TASK, dropped)
    return results


@dataclass(slots=True)
class _Row:
    """A flow's row as read, changed in place by its steps."""

    values: dict[str, Any]
    read_seq: int
    sources: dict[str, Any] | None = None  # decoded on the first source status
    changed: bool = False

    def parameters(self) -> dict[str, Any]:
        values = self.values
        sources = values["sources"] if self.sources is None else json.dumps(self.sources)
        return {
            "b_flow": values["flow_id"],
            "b_read_seq": self.read_seq,
            "b_sources": sources,
            **{f"b_{name}": values[name] for name in _WRITTEN},
        }

    def record(self) -> FlowRecord:
        values = self.values
        data = {_FIELDS.get(name, name): value for name, value in values.items()}
        for name in _JSON:
            data[name] = json.loads(values[name])
        if self.sources is not None:
            data["sources"] = {key: dict(entry) for key, entry in self.sources.items()}
        return FlowRecord(**data)


def _apply(row: _Row, step: FlowStep, now: float, dropped: list[dict[str, Any]]) -> StepResult:
    """``apply`` and ``transition`` of one message, on the row in memory."""
    values = row.values
    if step.seq <= values["last_seq"]:
        return StepResult()
    row.changed = True
    values["last_seq"] = step.seq
    values["last_activity"] = now
    values["row_count"] += step.rows
    values["byte_count"] += step.bytes
    values["log_count"] += step.logs
    values["upload_count"] += step.uploads
    values["upload_bytes"] += step.upload_bytes
    values["warning_count"] += step.warnings
    if step.source is not None:
        if row.sources is None:
            row.sources = json.loads(values["sources"])
        name, status = step.source
        row.sources[name] = {**row.sources.get(name, {}), **status}
    result = StepResult(applied=True)
    if step.to_state is not None:
        result.moved = move(values, step.to_state, step.error, now)
        if step.to_state in FINAL_STATES:
            result.ended = row.record()
    if step.drop_task:
        dropped.append({"b_flow": step.flow_id})
    return result


#: Flows read per statement (SQLite allows 32,766 parameters; PostgreSQL more).
_READ_CHUNK = 500


def _read(conn: Connection, flow_ids: set[str]) -> dict[str, _Row]:
    """The rows of ``flow_ids`` that exist, locked until commit, their JSON left as text."""
    ordered = sorted(flow_ids)  # one lock order for every frontend: fewer deadlocks
    found: dict[str, _Row] = {}
    for start in range(0, len(ordered), _READ_CHUNK):
        chunk = ordered[start : start + _READ_CHUNK]
        for mapping in conn.execute(_READ, {"b_flows": chunk}).mappings():
            values = dict(mapping)
            found[values["flow_id"]] = _Row(values, values["last_seq"])
    return found


#: JSON columns read as their text: decoded only for a record or a source status.
_JSON = ("artifacts", "request", "sources")
_FIELDS = {
    "row_count": "rows",
    "byte_count": "bytes",
    "upload_count": "uploads",
    "log_count": "logs",
    "warning_count": "warnings",
}
_READ = (
    select(
        *(
            type_coerce(column, Text).label(column.name) if column.name in _JSON else column
            for column in flows.c
        )
    )
    .where(flows.c.flow_id.in_(bindparam("b_flows", expanding=True)))
    .order_by(flows.c.flow_id)
    .with_for_update()
)
#: What a step may change, written back whole.
_WRITTEN = (
    "state",
    "started",
    "finished",
    "error",
    "row_count",
    "byte_count",
    "log_count",
    "upload_count",
    "upload_bytes",
    "warning_count",
    "last_seq",
    "last_activity",
)
_WRITE = (
    update(flows)
    .where(flows.c.flow_id == bindparam("b_flow"), flows.c.last_seq == bindparam("b_read_seq"))
    .values(
        sources=bindparam("b_sources", type_=Text),
        **{name: bindparam(f"b_{name}") for name in _WRITTEN},
    )
)
_DROP_TASK = delete(tasks).where(tasks.c.flow_id == bindparam("b_flow"))
