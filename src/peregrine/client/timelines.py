"""``client.timelines``: timelines on the server (``/timelines``).

::

    t = p.timelines.create("Intrusion", [
        {"kind": "flow", "id": "F.…", "artifact": "Generic.Forensic.Bodyfile",
         "time": ["mtime", "atime", "ctime", "btime"], "message": "{path}"},
        {"kind": "hunt", "id": "H.…", "artifact": "Generic.System.Pslist",
         "time": "start_time", "desc": "Process start", "message": "{name} on {hostname}"},
    ])
    page = p.timelines.rows(t["timeline_id"], start="2026-11-30T00:00:00Z", q="curl")
    p.timelines.export(t["timeline_id"], "intrusion.jsonl")     # for Timesketch (or .csv)
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peregrine.client._core import Call, segment
from peregrine.client._exports import format_for

if TYPE_CHECKING:
    from peregrine.client.aio import AsyncPeregrine
    from peregrine.client.sync import Peregrine

Json = dict[str, Any]


def _path(timeline_id: str, tail: str = "") -> str:
    return f"/timelines/{segment(timeline_id)}{tail}"


def _filters(
    start: str | float | None, end: str | float | None, q: str | None,
    sources: builtins.list[str] | None,
) -> Json:  # fmt: skip
    params: Json = {"start": start, "end": end, "q": q, "source": sources}
    return {k: (str(v) if isinstance(v, int | float) else v) for k, v in params.items() if v}


class TimelineCalls:
    """Every timeline request, described once (sent by the sync and the async client)."""

    @staticmethod
    def list(limit: int = 100, offset: int = 0) -> Call[Json]:
        return Call("GET", "/timelines", Json, {"limit": limit, "offset": offset})

    @staticmethod
    def create(title: str, sources: builtins.list[Json], shared: bool = False) -> Call[Json]:
        body = {"title": title, "sources": sources, "shared": shared}
        return Call("POST", "/timelines", Json, {}, body)

    @staticmethod
    def get(timeline_id: str) -> Call[Json]:
        return Call("GET", _path(timeline_id), Json)

    @staticmethod
    def update(timeline_id: str, **changes: Any) -> Call[Json]:
        body = {k: v for k, v in changes.items() if v is not None}
        return Call("PATCH", _path(timeline_id), Json, {}, body)

    @staticmethod
    def delete(timeline_id: str) -> Call[None]:
        return Call("DELETE", _path(timeline_id), None)

    @staticmethod
    def rows(timeline_id: str, offset: int, limit: int, filters: Json) -> Call[Json]:
        params = {**filters, "offset": offset, "limit": limit}
        return Call("GET", _path(timeline_id, "/rows"), Json, params)

    @staticmethod
    def export(timeline_id: str, fmt: str, filters: Json) -> Call[None]:
        return Call("GET", _path(timeline_id, "/export"), None, {**filters, "format": fmt})


def export_format(path: str | os.PathLike[str], fmt: str | None) -> str:
    return format_for(path, fmt, ("jsonl", "csv"), "timeline")


class Timelines:
    """Timelines of a :class:`~peregrine.client.Peregrine`."""

    def __init__(self, client: Peregrine) -> None:
        self._c = client

    def list(self, limit: int = 100, offset: int = 0) -> Json:
        return self._c._run(TimelineCalls.list(limit, offset))

    def create(self, title: str, sources: builtins.list[Json], shared: bool = False) -> Json:
        return self._c._run(TimelineCalls.create(title, sources, shared))

    def get(self, timeline_id: str) -> Json:
        return self._c._run(TimelineCalls.get(timeline_id))

    def update(self, timeline_id: str, **changes: Any) -> Json:
        """``title``, ``sources`` or ``shared``."""
        return self._c._run(TimelineCalls.update(timeline_id, **changes))

    def delete(self, timeline_id: str) -> None:
        self._c._run(TimelineCalls.delete(timeline_id))

    def rows(
        self, timeline_id: str, *, offset: int = 0, limit: int = 100,
        start: str | float | None = None, end: str | float | None = None, q: str | None = None,
        sources: builtins.list[str] | None = None,
    ) -> Json:  # fmt: skip
        """A page: ``{"rows": [...], "offset": N, "next_offset": N or None}``."""
        filters = _filters(start, end, q, sources)
        return self._c._run(TimelineCalls.rows(timeline_id, offset, limit, filters))

    def iter_rows(self, timeline_id: str, page_size: int = 1000, **filters: Any) -> Iterator[Json]:
        """Every row in time order, page after page."""
        offset: int | None = 0
        while offset is not None:
            page = self.rows(timeline_id, offset=offset, limit=page_size, **filters)
            yield from page["rows"]
            offset = page["next_offset"]

    def export(
        self, timeline_id: str, path: str | os.PathLike[str], format: str | None = None,
        **filters: Any,
    ) -> Path:  # fmt: skip
        """Write Timesketch's JSONL or CSV to ``path`` (by its suffix by default)."""
        call = TimelineCalls.export(
            timeline_id, export_format(path, format), _filters(**_named(filters))
        )
        return self._c._to_file(call, path)


class AsyncTimelines:
    """Timelines of an :class:`~peregrine.client.AsyncPeregrine`."""

    def __init__(self, client: AsyncPeregrine) -> None:
        self._c = client

    async def list(self, limit: int = 100, offset: int = 0) -> Json:
        return await self._c._run(TimelineCalls.list(limit, offset))

    async def create(self, title: str, sources: builtins.list[Json], shared: bool = False) -> Json:
        return await self._c._run(TimelineCalls.create(title, sources, shared))

    async def rows(
        self, timeline_id: str, *, offset: int = 0, limit: int = 100, **filters: Any
    ) -> Json:
        call = TimelineCalls.rows(timeline_id, offset, limit, _filters(**_named(filters)))
        return await self._c._run(call)

    async def export(
        self, timeline_id: str, path: str | os.PathLike[str], format: str | None = None,
        **filters: Any,
    ) -> Path:  # fmt: skip
        call = TimelineCalls.export(
            timeline_id, export_format(path, format), _filters(**_named(filters))
        )
        return await self._c._to_file(call, path)


def _named(filters: Json) -> Json:
    """start, end, q and sources, refusing anything else (a misspelt filter is not ignored)."""
    unknown = set(filters) - {"start", "end", "q", "sources"}
    if unknown:
        raise TypeError(f"unknown timeline filter(s): {', '.join(sorted(unknown))}")
    return {name: filters.get(name) for name in ("start", "end", "q", "sources")}
