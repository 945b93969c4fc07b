"""Event monitoring in the datastore: the assignments (which event artifacts run where) and
each client's report of how they run.

The assignments are one versioned set: every change gets a version above every earlier one
(an unassignment too: its row stays, marked removed), so the highest version names the whole
set, and an agent given the set twice can tell whether anything changed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from .database import Database
from .schema import event_assignments, event_status

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EventAssignment:
    """One event artifact to run, with its parameters, on every client (``labels`` empty) or
    on clients holding any of ``labels``; ``permissions`` are its assigner's, as granted."""

    artifact: str
    parameters: dict[str, Any]
    labels: list[str]
    permissions: list[str]
    version: int
    modified: float
    modified_by: str

    def applies_to(self, client_labels: frozenset[str] | set[str]) -> bool:
        return not self.labels or any(label in client_labels for label in self.labels)


@dataclass(frozen=True, slots=True)
class EventStatus:
    """How one event artifact runs on one client, as its agent last said."""

    client_id: str
    artifact: str
    state: str
    error: str | None
    restarts: int
    reported: float  # agent time of the report
    updated: float  # server time it was stored


class EventStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- assignments ------------------------------------------------------------------------

    def assign(
        self,
        artifact: str,
        parameters: dict[str, Any],
        labels: list[str],
        permissions: list[str],
        now: float,
        by: str,
    ) -> int:
        """Assign (or re-assign with new parameters or labels); the set's new version."""
        with self._db.write() as conn:
            version = self._next_version(conn)
            values = {
                "parameters": parameters,
                "labels": labels,
                "permissions": permissions,
                "version": version,
                "removed": 0,
                "modified": now,
                "modified_by": by,
            }
            insert = (sqlite if self._db.backend == "sqlite" else postgresql).insert
            statement = insert(event_assignments).values(artifact=artifact, **values)
            conn.execute(statement.on_conflict_do_update(index_elements=["artifact"], set_=values))
            return version

    def unassign(self, artifact: str, now: float, by: str) -> int | None:
        """Stop running ``artifact`` anywhere; the set's new version, None if not assigned."""
        with self._db.write() as conn:
            version = self._next_version(conn)
            changed = conn.execute(
                update(event_assignments)
                .where(event_assignments.c.artifact == artifact, event_assignments.c.removed == 0)
                .values(removed=1, version=version, modified=now, modified_by=by)
            ).rowcount
            return version if changed else None

    def _next_version(self, conn: Any) -> int:
        if self._db.backend != "sqlite":
            # SQLite has one writer; PostgreSQL writers of this set take turns here, so no
            # two changes get one version.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('peregrine.events'))"))
        current = conn.execute(select(func.max(event_assignments.c.version))).scalar()
        return int(current or 0) + 1

    def assignments(self) -> tuple[int, list[EventAssignment]]:
        """The set's version and its assignments (removed ones left out), by artifact."""
        columns = event_assignments.c
        with self._db.read() as conn:
            rows = conn.execute(select(event_assignments).order_by(columns.artifact)).all()
        version = max((int(row.version) for row in rows), default=0)
        return version, [_record(EventAssignment, row) for row in rows if not row.removed]

    # -- status -----------------------------------------------------------------------------

    def record_status(
        self,
        client_id: str,
        artifact: str,
        state: str,
        error: str | None,
        restarts: int,
        reported: float,
        now: float,
    ) -> None:
        """Keep the client's latest report for the artifact (an older one arriving late is
        ignored)."""
        values = {
            "state": state,
            "error": error,
            "restarts": restarts,
            "reported": reported,
            "updated": now,
        }
        insert = (sqlite if self._db.backend == "sqlite" else postgresql).insert
        statement = insert(event_status).values(client_id=client_id, artifact=artifact, **values)
        with self._db.write() as conn:
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["client_id", "artifact"],
                    set_=values,
                    where=event_status.c.reported <= reported,
                )
            )

    def statuses(
        self, client_id: str | None = None, artifact: str | None = None, limit: int = 1000
    ) -> list[EventStatus]:
        query = select(event_status).order_by(event_status.c.client_id, event_status.c.artifact)
        if client_id is not None:
            query = query.where(event_status.c.client_id == client_id)
        if artifact is not None:
            query = query.where(event_status.c.artifact == artifact)
        with self._db.read() as conn:
            rows = conn.execute(query.limit(limit)).all()
        return [_record(EventStatus, row) for row in rows]


def _record(kind: type[T], row: Any) -> T:
    """A row as ``kind`` (a dataclass whose fields are columns of the row)."""
    return kind(**{f.name: row._mapping[f.name] for f in fields(kind)})  # type: ignore[arg-type]
