"""Timelines as definitions: a title, an owner and the sources merged on one time axis (the
rows themselves are read through the analysis engine when a page is asked for)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, delete, select

from .database import Database
from .owned import owned_page, update_owned
from .schema import timelines


def new_timeline_id() -> str:
    """``T.`` and 16 hex digits."""
    return "T." + secrets.token_hex(8)


@dataclass(slots=True)
class TimelineRecord:
    timeline_id: str
    title: str
    owner: str
    created: float
    modified: float
    shared: bool = False
    #: Each source as the API describes it (``timelines/model.py``).
    sources: list[dict[str, Any]] = field(default_factory=list)


class TimelineStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, timeline: TimelineRecord) -> None:
        with self._db.write() as conn:
            conn.execute(timelines.insert().values(**_values(timeline)))

    def get(self, timeline_id: str) -> TimelineRecord | None:
        with self._db.read() as conn:
            row = conn.execute(
                select(timelines).where(timelines.c.timeline_id == timeline_id)
            ).first()
        return None if row is None else _timeline(row)

    def list(
        self, visible_to: str | None, limit: int = 100, offset: int = 0
    ) -> tuple[list[TimelineRecord], int]:
        """Timelines newest first, and how many; ``visible_to``: that user's and shared ones."""
        rows, total = owned_page(self._db, timelines, "timeline_id", visible_to, limit, offset)
        return [_timeline(row) for row in rows], total

    def update(self, timeline_id: str, modified: float, **values: Any) -> bool:
        """Change a timeline's title, sharing or sources."""
        return update_owned(self._db, timelines, "timeline_id", timeline_id, modified, values,
                            ("title", "shared", "sources"))  # fmt: skip

    def delete(self, timeline_id: str) -> bool:
        with self._db.write() as conn:
            done = conn.execute(delete(timelines).where(timelines.c.timeline_id == timeline_id))
            return bool(done.rowcount)


def _values(timeline: TimelineRecord) -> dict[str, Any]:
    return {
        "timeline_id": timeline.timeline_id,
        "title": timeline.title,
        "owner": timeline.owner,
        "shared": int(timeline.shared),
        "sources": timeline.sources,
        "created": timeline.created,
        "modified": timeline.modified,
    }


def _timeline(row: Row[Any]) -> TimelineRecord:
    values = row._asdict()
    values["shared"] = bool(values["shared"])
    return TimelineRecord(**values)
