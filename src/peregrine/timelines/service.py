"""``TimelineService``: timelines kept in the datastore, read through the analysis engine.

Definitions follow the notebooks' rules (``auth/sharing.py``): readers list and open their own
and shared ones; reading rows runs queries, so pages and exports need ANALYZE, and every query
is checked against the caller's own permissions. Calls block: the API runs them in threads.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from typing import Any

from peregrine.analysis import AnalysisEngine, AnalysisError
from peregrine.analysis.values import jsonable
from peregrine.auth.roles import ANALYZE
from peregrine.auth.sharing import may_open, owns, visible_to
from peregrine.datastore import Datastore
from peregrine.datastore.timelines import TimelineRecord, new_timeline_id

from .model import (
    Source,
    TimelineError,
    TimelineForbidden,
    TimelineNotFound,
    parse_sources,
    render,
)
from .query import Filters, timeline_sql

MAX_PAGE = 5000


class TimelineService:
    def __init__(self, datastore: Datastore, engine: AnalysisEngine) -> None:
        self.datastore = datastore
        self.engine = engine

    # -- definitions ----------------------------------------------------------------------

    def visible(
        self, user: str, permissions: frozenset[str], limit: int, offset: int
    ) -> tuple[list[TimelineRecord], int]:
        return self.datastore.timelines.list(visible_to(user, permissions), limit, offset)

    def get(self, timeline_id: str, user: str, permissions: frozenset[str]) -> TimelineRecord:
        found = self.datastore.timelines.get(timeline_id)
        if found is None or not may_open(found.owner, found.shared, user, permissions):
            raise TimelineNotFound(f"no timeline {timeline_id}: list them with GET /timelines")
        return found

    def create(
        self, user: str, permissions: frozenset[str], title: str, sources: Any,
        shared: bool = False,
    ) -> TimelineRecord:  # fmt: skip
        _need_analyze(permissions)
        parsed = parse_sources(sources)
        now = time.time()
        record = TimelineRecord(
            timeline_id=new_timeline_id(),
            title=_title(title),
            owner=user,
            created=now,
            modified=now,
            shared=shared,
            sources=[s.to_dict() for s in parsed],
        )
        self.datastore.timelines.create(record)
        return record

    def update(
        self, timeline_id: str, user: str, permissions: frozenset[str], **changes: Any
    ) -> TimelineRecord:
        found = self.get(timeline_id, user, permissions)
        _need_analyze(permissions)
        if "shared" in changes and not owns(found.owner, user, permissions):
            raise TimelineForbidden("only the timeline's owner changes whether it is shared")
        if "title" in changes:
            changes["title"] = _title(changes["title"])
        if "sources" in changes:
            changes["sources"] = [s.to_dict() for s in parse_sources(changes["sources"])]
        self.datastore.timelines.update(timeline_id, time.time(), **changes)
        return self.get(timeline_id, user, permissions)

    def delete(self, timeline_id: str, user: str, permissions: frozenset[str]) -> None:
        found = self.get(timeline_id, user, permissions)
        if not owns(found.owner, user, permissions):
            raise TimelineForbidden("only the timeline's owner (or an administrator) deletes it")
        self.datastore.timelines.delete(timeline_id)

    # -- rows -----------------------------------------------------------------------------

    def page(
        self, timeline_id: str, user: str, permissions: frozenset[str], filters: Filters,
        offset: int = 0, limit: int = 100,
    ) -> dict[str, Any]:  # fmt: skip
        """Rows ``offset`` to ``offset + limit`` in time order; ``next_offset`` is None on the
        last page."""
        limit = max(1, min(limit, MAX_PAGE))
        sources = self._sources(timeline_id, user, permissions)
        sql = timeline_sql(sources, filters, limit + 1, offset)
        rows = list(self._rows(sql, permissions, sources))
        more = len(rows) > limit
        return {
            "rows": rows[:limit],
            "offset": offset,
            "next_offset": offset + limit if more else None,
        }

    def rows(
        self, timeline_id: str, user: str, permissions: frozenset[str], filters: Filters
    ) -> Generator[dict[str, Any], None, None]:
        """Every row in time order (up to the engine's row limit): for exports."""
        sources = self._sources(timeline_id, user, permissions)
        yield from self._rows(timeline_sql(sources, filters), permissions, sources)

    def _sources(self, timeline_id: str, user: str, permissions: frozenset[str]) -> list[Source]:
        _need_analyze(permissions)
        return parse_sources(self.get(timeline_id, user, permissions).sources)

    def _rows(
        self, sql: str, permissions: frozenset[str], sources: list[Source]
    ) -> Iterator[dict[str, Any]]:
        by_name = {s.name: (s, f"data_{index}") for index, s in enumerate(sources)}
        try:
            with self.engine.run(sql, permissions) as result:
                for batch in result:
                    for row in batch.to_pylist():
                        source, column = by_name[row["source"]]
                        values = jsonable(row[column]) or {}
                        yield {
                            "timestamp": row["ts"],
                            "datetime": _iso(row["ts"]),
                            "timestamp_desc": row["timestamp_desc"],
                            "source": source.name,
                            "message": render(source.message, values),
                            "data": values,
                        }
        except AnalysisError as exc:
            if "Referenced column" in str(exc) or "does not have a column named" in str(exc):
                raise TimelineError(
                    f"a source names a time column its rows do not have: {exc}"
                ) from None
            raise TimelineError(str(exc)) from None


def _iso(micros: int) -> str:
    """ISO 8601 with the UTC offset, as Timesketch reads it."""
    return datetime.fromtimestamp(micros / 1_000_000, UTC).isoformat()


def _title(title: Any) -> str:
    if not isinstance(title, str) or not 0 < len(title.strip()) <= 200:
        raise TimelineError("a title is 1 to 200 characters")
    return title.strip()


def _need_analyze(permissions: frozenset[str]) -> None:
    if ANALYZE not in permissions:
        raise TimelineForbidden("reading and writing timelines needs the ANALYZE permission")
