"""Alert rules, the alerts they raise, and what windowed rules counted.

Exactly once lives here: an alert is inserted under its unique ``alert_key`` with "do nothing
on conflict", so a redelivered batch, a second frontend or a race raises nothing new, and the
caller learns which alerts were new (only those are forwarded). A windowed rule's members are
rows keyed by (rule, window, group, member), so every frontend counts the same fleet-wide set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError

from .database import Database
from .errors import Conflict, NotFound
from .schema import alert_rule_versions, alert_rules, alert_window_hits, alerts

ALERT_OPEN = "open"
ALERT_ACKNOWLEDGED = "acknowledged"
ALERT_STATES = (ALERT_OPEN, ALERT_ACKNOWLEDGED)


@dataclass(frozen=True, slots=True)
class RuleRecord:
    """One stored rule at its current version; ``definition`` is the rule's own business."""

    rule_id: str
    version: int
    severity: str
    enabled: bool
    builtin: bool
    definition: dict[str, Any]
    modified: float
    modified_by: str


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert: which rule raised it on which event (or window), and who acknowledged it."""

    alert_id: int
    alert_key: str
    rule_id: str
    rule_version: int
    severity: str
    time: float
    summary: str
    client_id: str | None = None
    hostname: str | None = None
    artifact: str | None = None
    source: str | None = None
    event_seq: int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    state: str = ALERT_OPEN
    acked_by: str | None = None
    acked_at: float | None = None
    ack_comment: str | None = None


_ALERT_COLUMNS = [alerts.c[name] for name in AlertRecord.__dataclass_fields__]
_RULE_COLUMNS = [alert_rules.c[name] for name in RuleRecord.__dataclass_fields__]


def _rule(row: Any) -> RuleRecord:
    values = row._asdict()
    values["enabled"] = bool(values["enabled"])
    values["builtin"] = bool(values["builtin"])
    return RuleRecord(**values)


class RuleStore:
    """Rules by id; every save is a new version, kept in ``alert_rule_versions``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> list[RuleRecord]:
        with self._db.read() as conn:
            rows = conn.execute(select(*_RULE_COLUMNS).order_by(alert_rules.c.rule_id))
            return [_rule(row) for row in rows]

    def get(self, rule_id: str) -> RuleRecord | None:
        with self._db.read() as conn:
            row = conn.execute(
                select(*_RULE_COLUMNS).where(alert_rules.c.rule_id == rule_id)
            ).one_or_none()
        return None if row is None else _rule(row)

    def save(
        self,
        rule_id: str,
        *,
        severity: str,
        enabled: bool,
        definition: Mapping[str, Any],
        modified: float,
        modified_by: str,
        builtin: bool = False,
        expected_version: int | None = None,
        create_only: bool = False,
    ) -> RuleRecord:
        """Store a new version of ``rule_id`` (version 1 when new).

        ``create_only`` raises Conflict when the rule exists (built-in rules are installed so,
        never overwriting an edit); ``expected_version`` raises Conflict when someone saved a
        newer version meanwhile.
        """
        with self._db.write() as conn:
            current = conn.execute(
                select(alert_rules.c.version, alert_rules.c.builtin).where(
                    alert_rules.c.rule_id == rule_id
                )
            ).one_or_none()
            if current is not None and create_only:
                raise Conflict(f"rule {rule_id} exists already")
            if expected_version is not None and (current is None or current[0] != expected_version):
                raise Conflict(f"rule {rule_id} changed meanwhile: read it again")
            version = 1 if current is None else int(current[0]) + 1
            values: dict[str, Any] = {
                "rule_id": rule_id,
                "version": version,
                "severity": severity,
                "enabled": int(enabled),
                "definition": dict(definition),
                "modified": modified,
                "modified_by": modified_by,
            }
            try:
                conn.execute(alert_rule_versions.insert().values(**values))
            except IntegrityError as exc:  # another frontend saved this version first
                raise Conflict(f"rule {rule_id} was saved meanwhile: read it again") from exc
            keep_builtin = bool(current[1]) if current is not None else builtin
            if current is None:
                conn.execute(alert_rules.insert().values(builtin=int(keep_builtin), **values))
            else:
                conn.execute(
                    update(alert_rules).where(alert_rules.c.rule_id == rule_id).values(**values)
                )
        values["enabled"] = enabled
        return RuleRecord(builtin=keep_builtin, **values)

    def versions(self, rule_id: str) -> list[RuleRecord]:
        """Every saved version of a rule, oldest first."""
        columns = [
            alert_rule_versions.c[name]
            for name in RuleRecord.__dataclass_fields__
            if name != "builtin"
        ]
        with self._db.read() as conn:
            rows = conn.execute(
                select(*columns)
                .where(alert_rule_versions.c.rule_id == rule_id)
                .order_by(alert_rule_versions.c.version)
            )
            return [_rule_version(row) for row in rows]


def _rule_version(row: Any) -> RuleRecord:
    values = row._asdict()
    values["enabled"] = bool(values["enabled"])
    return RuleRecord(builtin=False, **values)


class AlertStore:
    """Raise (once per key), list, and acknowledge alerts; count windowed rules' members."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def raise_many(self, new: Iterable[Mapping[str, Any]]) -> list[AlertRecord]:
        """Insert each alert whose ``alert_key`` is not stored yet; the ones inserted."""
        raised: list[AlertRecord] = []
        with self._db.write() as conn:
            for values in new:
                row = dict(values, state=ALERT_OPEN)
                result = conn.execute(
                    self._db.insert_ignore(alerts).values(**row).returning(alerts.c.alert_id)
                ).scalar_one_or_none()
                if result is not None:
                    raised.append(AlertRecord(alert_id=int(result), **row))
        return raised

    def get(self, alert_id: int) -> AlertRecord | None:
        with self._db.read() as conn:
            row = conn.execute(
                select(*_ALERT_COLUMNS).where(alerts.c.alert_id == alert_id)
            ).one_or_none()
        return None if row is None else AlertRecord(**row._asdict())

    def query(
        self,
        *,
        state: str | None = None,
        severity: Iterable[str] | None = None,
        client_id: str | None = None,
        rule_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[AlertRecord]:
        """Alerts matching every filter given, newest first (oldest first with ``after``, to
        follow new ones). ``since`` inclusive, ``until`` exclusive (epoch seconds)."""
        conditions: list[ColumnElement[bool]] = []
        if state is not None:
            conditions.append(alerts.c.state == state)
        if severity is not None:
            conditions.append(alerts.c.severity.in_(list(severity)))
        if client_id is not None:
            conditions.append(alerts.c.client_id == client_id)
        if rule_id is not None:
            conditions.append(alerts.c.rule_id == rule_id)
        if since is not None:
            conditions.append(alerts.c.time >= since)
        if until is not None:
            conditions.append(alerts.c.time < until)
        if before is not None:
            conditions.append(alerts.c.alert_id < before)
        if after is not None:
            conditions.append(alerts.c.alert_id > after)
        order = alerts.c.alert_id.asc() if after is not None else alerts.c.alert_id.desc()
        query = select(*_ALERT_COLUMNS).where(*conditions).order_by(order).limit(limit)
        with self._db.read() as conn:
            return [AlertRecord(**row._asdict()) for row in conn.execute(query)]

    def acknowledge(self, alert_id: int, who: str, at: float, comment: str = "") -> AlertRecord:
        """Mark an open alert acknowledged; Conflict when it already is (by whom, when)."""
        with self._db.write() as conn:
            done = conn.execute(
                update(alerts)
                .where(alerts.c.alert_id == alert_id, alerts.c.state == ALERT_OPEN)
                .values(state=ALERT_ACKNOWLEDGED, acked_by=who, acked_at=at, ack_comment=comment)
            ).rowcount
        record = self.get(alert_id)
        if record is None:
            raise NotFound(f"no alert {alert_id}")
        if not done:
            raise Conflict(f"alert {alert_id} was acknowledged already by {record.acked_by}")
        return record

    def add_members(
        self, rule_id: str, window_start: float, group_key: str, members: Iterable[str]
    ) -> None:
        """Remember that ``members`` matched ``rule_id`` in this window and group (idempotent)."""
        rows = [
            {
                "rule_id": rule_id,
                "window_start": window_start,
                "group_key": group_key,
                "member": member,
            }
            for member in set(members)
        ]
        if rows:
            with self._db.write() as conn:
                conn.execute(self._db.insert_ignore(alert_window_hits), rows)

    def count_members(self, rule_id: str, window_start: float, group_key: str) -> int:
        """How many distinct members every frontend has stored for this window and group."""
        with self._db.read() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(alert_window_hits)
                    .where(
                        alert_window_hits.c.rule_id == rule_id,
                        alert_window_hits.c.window_start == window_start,
                        alert_window_hits.c.group_key == group_key,
                    )
                ).scalar_one()
            )

    def forget_windows(self, before: float) -> int:
        """Drop counted members of windows that started before ``before``; how many."""
        with self._db.write() as conn:
            return int(
                conn.execute(
                    alert_window_hits.delete().where(alert_window_hits.c.window_start < before)
                ).rowcount
            )
