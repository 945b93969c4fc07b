"""The audit log's table: one row per state-changing action, never updated, queried newest first.

``peregrine.auth.audit.AuditLog`` writes here and to a JSON-lines file; this store only keeps
and finds rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select

from .database import Database
from .records import AUDIT_RESULTS, AuditEntry
from .schema import audit

_COLUMNS = [audit.c[name] for name in AuditEntry.__dataclass_fields__]


class AuditStore:
    """Append and query audit entries."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self,
        time: float,
        actor: str,
        action: str,
        *,
        target: str | None = None,
        address: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        result: str = "ok",
        reason: str | None = None,
        credential: str | None = None,
    ) -> AuditEntry:
        """Append one entry; the stored entry with its id."""
        if result not in AUDIT_RESULTS:
            raise ValueError(f"audit result must be one of {', '.join(AUDIT_RESULTS)}")
        values: dict[str, Any] = {
            "time": time,
            "actor": actor,
            "credential": credential,
            "address": address,
            "action": action,
            "target": target,
            "parameters": dict(parameters or {}),
            "result": result,
            "reason": reason,
        }
        with self._db.write() as conn:
            audit_id = conn.execute(
                audit.insert().values(**values).returning(audit.c.audit_id)
            ).scalar_one()
        return AuditEntry(audit_id=int(audit_id), **values)

    def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        result: str | None = None,
        before: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """A page of entries, newest first, matching every filter given.

        ``since`` is inclusive and ``until`` exclusive (epoch seconds). ``action`` matches
        exactly, or by prefix when it ends in ``*`` (``"collection.*"``). Page with ``before``
        (the last ``audit_id`` of the previous page: stable while entries are added) or with
        ``offset``.
        """
        query = _filtered(
            select(*_COLUMNS), since, until, actor, action, target, result, before
        ).order_by(audit.c.audit_id.desc())
        with self._db.read() as conn:
            rows = conn.execute(query.limit(limit).offset(offset))
            return [AuditEntry(**row._asdict()) for row in rows]

    def count(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        result: str | None = None,
    ) -> int:
        """How many entries match (the same filters as ``query``)."""
        query = _filtered(
            select(func.count()).select_from(audit),
            since,
            until,
            actor,
            action,
            target,
            result,
            None,
        )
        with self._db.read() as conn:
            return int(conn.execute(query).scalar_one())


def _filtered(
    query: Select[Any],
    since: float | None,
    until: float | None,
    actor: str | None,
    action: str | None,
    target: str | None,
    result: str | None,
    before: int | None,
) -> Select[Any]:
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(audit.c.time >= since)
    if until is not None:
        conditions.append(audit.c.time < until)
    if actor is not None:
        conditions.append(audit.c.actor == actor)
    if action is not None:
        if action.endswith("*"):
            conditions.append(audit.c.action.startswith(action[:-1], autoescape=True))
        else:
            conditions.append(audit.c.action == action)
    if target is not None:
        conditions.append(audit.c.target == target)
    if result is not None:
        conditions.append(audit.c.result == result)
    if before is not None:
        conditions.append(audit.c.audit_id < before)
    return query.where(*conditions)
