"""Timelines: ``/timelines`` (list, create), ``/timelines/{id}`` (read, change, delete), its
rows in time order (``/rows``: filtered, paged) and its Timesketch export (``/export``: JSONL
or CSV, streamed). Definitions follow the notebooks' sharing rules; reading rows runs queries,
so it needs ANALYZE. Changes and exports are audited with their outcome."""

from __future__ import annotations

import itertools
from typing import IO, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from peregrine.analysis import QueryRefused
from peregrine.analysis.statement import event_time
from peregrine.api.deps import Audit, context, require
from peregrine.api.routes.analysis import MAX_ROWS_HEADER
from peregrine.api.schemas import MAX_INT
from peregrine.api.sharing import call
from peregrine.api.streaming import produced
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import ANALYZE, READ_RESULTS
from peregrine.datastore.timelines import TimelineRecord
from peregrine.timelines import TimelineService
from peregrine.timelines.export import MEDIA_TYPES, write
from peregrine.timelines.model import MAX_SOURCES
from peregrine.timelines.query import Filters

router = APIRouter(prefix="/timelines", tags=["timelines"])

TimelineId = Path(pattern=r"^T\.[0-9a-f]{16}$", description="A timeline id (T. + 16 hex)")
_SOURCES_HELP = (
    'Each: {"kind": "flow"|"hunt"|"events", "id": "F.…"|"H.…"|"C.…", "artifact": "A.B", '
    '"source": "", "time": "column" or ["mtime", "atime", "ctime", "btime"], '
    '"desc": "Process start", "message": "{name} started by {user}", "label": "processes"}'
)


class TimelineIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    shared: bool = False
    sources: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_SOURCES,
                                          description=_SOURCES_HELP)  # fmt: skip


class TimelineEdit(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    shared: bool | None = None
    sources: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_SOURCES)


def _service(request: Request) -> TimelineService:
    return context(request).services.timelines


def _filters(
    start: str | None, end: str | None, q: str | None, source: list[str] | None
) -> Filters:
    try:
        return Filters(
            start=event_time(start, "start") if start else None,
            end=event_time(end, "end") if end else None,
            text=q or "",
            sources=source or [],
        )
    except QueryRefused as exc:
        raise HTTPException(400, str(exc).replace("events(): ", "")) from None


_Start = Query(None, max_length=40, description="From this time: ISO 8601 or epoch seconds")
_End = Query(None, max_length=40, description="Before this time: ISO 8601 or epoch seconds")
_Text = Query(None, max_length=500, description="Rows holding this text (any case)")
_Source = Query(None, description="Only these sources (their labels); repeat for several")


@router.get("", summary="Timelines you may read, newest first")
async def list_timelines(
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_INT),
    principal: Principal = Depends(require(READ_RESULTS)),
) -> dict[str, Any]:
    found, total = await call(
        _service(request).visible, principal.name, principal.permissions, limit, offset
    )
    return {"total": total, "items": [timeline_out(t) for t in found]}


@router.post("", status_code=201, summary="Define a timeline")
async def create_timeline(
    request: Request, body: TimelineIn, principal: Principal = Depends(require(ANALYZE))
) -> dict[str, Any]:
    audit = Audit(request, principal)
    audit.on_outcome("timeline.create", parameters={"title": body.title})
    made = await call(
        _service(request).create, principal.name, principal.permissions, body.title,
        body.sources, body.shared,
    )  # fmt: skip
    audit.on_outcome("timeline.create", target=made.timeline_id, parameters={"title": body.title})
    return timeline_out(made)


@router.get("/{timeline_id}", summary="A timeline's definition")
async def get_timeline(
    request: Request,
    timeline_id: str = TimelineId,
    principal: Principal = Depends(require(READ_RESULTS)),
) -> dict[str, Any]:
    found = await call(_service(request).get, timeline_id, principal.name, principal.permissions)
    return timeline_out(found)


@router.patch("/{timeline_id}", summary="Change the title, sources or sharing")
async def edit_timeline(
    request: Request,
    body: TimelineEdit,
    timeline_id: str = TimelineId,
    principal: Principal = Depends(require(ANALYZE)),
) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    Audit(request, principal).on_outcome("timeline.update", target=timeline_id,
                                         parameters=changes)  # fmt: skip
    found = await call(
        _service(request).update, timeline_id, principal.name, principal.permissions, **changes
    )
    return timeline_out(found)


@router.delete("/{timeline_id}", status_code=204, summary="Delete a timeline (its owner)")
async def delete_timeline(
    request: Request,
    timeline_id: str = TimelineId,
    principal: Principal = Depends(require(ANALYZE)),
) -> None:
    Audit(request, principal).on_outcome("timeline.delete", target=timeline_id)
    await call(_service(request).delete, timeline_id, principal.name, principal.permissions)


@router.get("/{timeline_id}/rows", summary="A page of the timeline's rows in time order")
async def timeline_rows(
    request: Request,
    timeline_id: str = TimelineId,
    start: str | None = _Start,
    end: str | None = _End,
    q: str | None = _Text,
    source: list[str] | None = _Source,
    offset: int = Query(0, ge=0, le=MAX_INT),
    limit: int = Query(100, ge=1, le=5000),
    principal: Principal = Depends(require(ANALYZE)),
) -> dict[str, Any]:
    """Each row: ``timestamp`` (µs), ``datetime`` (ISO 8601), ``timestamp_desc``, ``source``,
    ``message`` and ``data`` (the row); ``next_offset`` is null on the last page."""
    filters = _filters(start, end, q, source)
    page: dict[str, Any] = await call(
        _service(request).page, timeline_id, principal.name, principal.permissions, filters,
        offset, limit,
    )  # fmt: skip
    return page


@router.get("/{timeline_id}/export", summary="The timeline for Timesketch (JSONL or CSV)")
async def export_timeline(
    request: Request,
    timeline_id: str = TimelineId,
    format: Literal["jsonl", "csv"] = Query("jsonl"),
    start: str | None = _Start,
    end: str | None = _End,
    q: str | None = _Text,
    source: list[str] | None = _Source,
    principal: Principal = Depends(require(ANALYZE)),
) -> StreamingResponse:
    """Timesketch's required fields (``message``, ``datetime``, ``timestamp_desc``) and
    ``timestamp``; streamed as it is read, up to the server's analysis row limit (in the
    ``X-Peregrine-Max-Rows`` header: an export of exactly that many rows was probably cut)."""
    filters = _filters(start, end, q, source)
    Audit(request, principal).on_outcome(
        "timeline.export", target=timeline_id, parameters={"format": format}
    )
    service = _service(request)
    rows = service.rows(timeline_id, principal.name, principal.permissions, filters)
    # The first row is read here, so a bad source is the answer's status, not a cut body.
    first = await call(next, rows, None)

    def write_all(sink: IO[bytes]) -> None:
        try:
            write(itertools.chain([] if first is None else [first], rows), format, sink)
        finally:
            rows.close()  # the query's connection and slot, however the response ended

    return StreamingResponse(
        produced(write_all),
        media_type=MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="{timeline_id}.{format}"',
            MAX_ROWS_HEADER: str(service.engine.limits.max_rows),
        },
    )


def timeline_out(timeline: TimelineRecord) -> dict[str, Any]:
    return {
        "timeline_id": timeline.timeline_id,
        "title": timeline.title,
        "owner": timeline.owner,
        "shared": timeline.shared,
        "sources": timeline.sources,
        "created": timeline.created,
        "modified": timeline.modified,
    }
