"""Hunts: create, start/pause/stop/archive, hunt_add, clients, statistics, results, exports."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse

from peregrine.analysis.pages import table_call
from peregrine.api.deps import Audit, context, require
from peregrine.api.routes.clients import ClientId
from peregrine.api.row_pages import FILTERS, ORDER, SORT, row_query, sorted_page
from peregrine.api.schemas import MAX_INT, Hunt, HuntClient, HuntIn, HuntStats, RowsPage
from peregrine.api.streaming import MEDIA, stream_export
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import READ_RESULTS, START_HUNT
from peregrine.datastore import HUNT_STATES, HuntRecord
from peregrine.services.collections import Limits
from peregrine.services.hunts import HuntError, HuntSpec

router = APIRouter(prefix="/hunts", tags=["hunts"])
HuntId = Annotated[str, Path(pattern=r"^H\.[0-9a-f]{16}$", examples=["H.0123456789abcdef"])]


def hunt_out(record: HuntRecord) -> Hunt:
    return Hunt.model_validate(record)


def hunt_with_warnings(request: Request, record: HuntRecord) -> Hunt:
    """The hunt, warning when no known client matches its conditions (a mistyped label)."""
    out = hunt_out(record)
    index = context(request).services.client_index
    if index.matching(record):
        return out
    labels = sorted({label for c in index.clients.values() for label in c.labels})
    conditions = (
        f"labels {record.include_labels or 'any'}, not {record.exclude_labels or 'none'}, "
        f"os {record.os or 'any'}"
    )
    known = ", ".join(labels[:20]) + (" …" if len(labels) > 20 else "") if labels else "none"
    out.warnings.append(
        f"no known client matches this hunt ({conditions}; {len(index)} clients known, "
        f"labels in use: {known}); it will run on clients that enroll or gain a label later"
    )
    return out


async def _hunt(request: Request, hunt_id: str) -> HuntRecord:
    record = await asyncio.to_thread(context(request).services.datastore.hunts.get, hunt_id)
    if record is None:
        raise HTTPException(404, f"no hunt {hunt_id}")
    return record


@router.post(
    "",
    response_model=Hunt,
    status_code=201,
    summary="Create a hunt (paused, or running with start)",
)
async def create_hunt(
    request: Request, body: HuntIn, principal: Principal = Depends(require(START_HUNT))
) -> Hunt:
    services = context(request).services
    data = body.model_dump()
    spec = HuntSpec(
        artifacts=[(a.name, a.parameters) for a in body.artifacts],
        description=body.description,
        tags=body.tags,
        include_labels=body.include_labels,
        exclude_labels=body.exclude_labels,
        os=body.os,
        client_limit=body.client_limit,
        expires_in=body.expires_in,
        notifications_per_second=body.notifications_per_second,
        limits=Limits(**body.limits.model_dump()),
        every_seconds=body.every_seconds,
        cron=body.cron,
    )
    audit = Audit(request, principal)
    try:
        record = await services.hunts.create(
            spec, principal.name, principal.query_permissions, start=body.start
        )
    except HuntError as exc:
        await audit.record("hunt.create", parameters=data, result="refused", reason=str(exc))
        raise HTTPException(400, str(exc)) from None
    entries = [audit.record("hunt.create", target=record.hunt_id, parameters=data)]
    if body.start:
        entries.append(audit.record("hunt.start", target=record.hunt_id))
    await asyncio.gather(*entries)  # one commit of the group, most often
    return hunt_with_warnings(request, record)


@router.get("", response_model=list[Hunt], summary="List hunts")
async def list_hunts(
    request: Request,
    state: list[str] | None = Query(None, description="Paused, Running, Stopped, Archived"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_INT),
    _: Principal = Depends(require(READ_RESULTS)),
) -> list[Hunt]:
    known = set(HUNT_STATES)
    if state and not set(state) <= known:
        raise HTTPException(400, f"state must be among {', '.join(sorted(known))}")
    store = context(request).services.datastore.hunts
    return [hunt_out(h) for h in await asyncio.to_thread(store.list, state, limit, offset)]


@router.get("/{hunt_id}", response_model=Hunt, summary="One hunt")
async def get_hunt(
    hunt_id: HuntId, request: Request, _: Principal = Depends(require(READ_RESULTS))
) -> Hunt:
    return hunt_out(await _hunt(request, hunt_id))


async def _change(
    request: Request, principal: Principal, hunt_id: str, action: str, **kw: bool
) -> Hunt:
    manager = context(request).services.hunts
    await _hunt(request, hunt_id)
    audit = Audit(request, principal)
    try:
        record = await getattr(manager, action)(hunt_id, **kw)
    except HuntError as exc:
        await audit.record(f"hunt.{action}", target=hunt_id, result="refused", reason=str(exc))
        raise HTTPException(409, str(exc)) from None
    await audit.record(f"hunt.{action}", target=hunt_id, parameters=kw or None)
    return hunt_with_warnings(request, record) if action == "start" else hunt_out(record)


@router.post("/{hunt_id}/start", response_model=Hunt, summary="Start (or resume) a hunt")
async def start_hunt(
    hunt_id: HuntId, request: Request, principal: Principal = Depends(require(START_HUNT))
) -> Hunt:
    return await _change(request, principal, hunt_id, "start")


@router.post("/{hunt_id}/pause", response_model=Hunt, summary="Pause a hunt")
async def pause_hunt(
    hunt_id: HuntId, request: Request, principal: Principal = Depends(require(START_HUNT))
) -> Hunt:
    return await _change(request, principal, hunt_id, "pause")


@router.post("/{hunt_id}/stop", response_model=Hunt, summary="Stop a hunt")
async def stop_hunt(
    hunt_id: HuntId,
    request: Request,
    cancel: bool = Query(False, description="Also cancel the collections still running."),
    principal: Principal = Depends(require(START_HUNT)),
) -> Hunt:
    return await _change(request, principal, hunt_id, "stop", cancel_running=cancel)


@router.post("/{hunt_id}/archive", response_model=Hunt, summary="Archive a hunt")
async def archive_hunt(
    hunt_id: HuntId, request: Request, principal: Principal = Depends(require(START_HUNT))
) -> Hunt:
    return await _change(request, principal, hunt_id, "archive")


@router.post(
    "/{hunt_id}/clients/{client_id}", response_model=bool, summary="hunt_add: add a client"
)
async def hunt_add(
    hunt_id: HuntId,
    client_id: ClientId,
    request: Request,
    principal: Principal = Depends(require(START_HUNT)),
) -> bool:
    """Schedules the hunt on this client now, even if the hunt is paused or expired; false if
    the client already has it (a hunt runs on a client at most once)."""
    manager = context(request).services.hunts
    await _hunt(request, hunt_id)
    audit = Audit(request, principal)
    try:
        added = await manager.hunt_add(hunt_id, client_id)
    except HuntError as exc:
        await audit.record("hunt.add_client", target=hunt_id, result="refused", reason=str(exc))
        raise HTTPException(409, str(exc)) from None
    await audit.record("hunt.add_client", target=f"{hunt_id}/{client_id}")
    return bool(added)


@router.get("/{hunt_id}/stats", response_model=HuntStats, summary="Hunt statistics")
async def hunt_stats(
    hunt_id: HuntId, request: Request, _: Principal = Depends(require(READ_RESULTS))
) -> HuntStats:
    """Computed from the stored collections each time: they cannot drift."""
    await _hunt(request, hunt_id)
    stats = await asyncio.to_thread(context(request).services.datastore.hunts.stats, hunt_id)
    return HuntStats.model_validate(stats)


@router.get("/{hunt_id}/clients", response_model=list[HuntClient], summary="Clients of a hunt")
async def hunt_clients(
    hunt_id: HuntId,
    request: Request,
    state: str | None = Query(None, description="e.g. Finished, Error, In progress"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_INT),
    _: Principal = Depends(require(READ_RESULTS)),
) -> list[HuntClient]:
    await _hunt(request, hunt_id)
    store = context(request).services.datastore.hunts
    try:
        clients = await asyncio.to_thread(store.clients, hunt_id, limit, offset, state)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return [HuntClient.model_validate(c) for c in clients]


@router.get("/{hunt_id}/results", response_model=RowsPage, summary="A page of a hunt's results")
async def hunt_results(
    hunt_id: HuntId,
    request: Request,
    artifact: str = Query(..., min_length=1, max_length=200),
    source: str = Query("", max_length=200),
    offset: int = Query(0, ge=0, le=MAX_INT),
    limit: int = Query(100, ge=1, le=10_000),
    sort: str | None = SORT,
    order: str = ORDER,
    filter: list[str] = FILTERS,
    _: Principal = Depends(require(READ_RESULTS)),
) -> RowsPage:
    """One combined result set across the hunt's clients, each row with `client_id` and
    `hostname`. Sorted or filtered pages are one query of the analysis engine."""
    query = row_query(sort, order, filter)
    await _hunt(request, hunt_id)
    if not query.plain:
        table = table_call("hunt", hunt_id, artifact, source)
        rows, total = await sorted_page(request, table, None, query, offset, limit)
        return RowsPage(offset=offset, rows=rows, total=total)
    results = context(request).services.hunt_results
    rows = await asyncio.to_thread(results.page, hunt_id, artifact, source, offset, limit)
    total = await asyncio.to_thread(results.count, hunt_id, artifact, source)
    return RowsPage(offset=offset, rows=rows, total=total)


@router.get(
    "/{hunt_id}/export",
    summary="Export a hunt's results (streamed)",
    response_class=StreamingResponse,
)
async def export_hunt(
    hunt_id: HuntId,
    request: Request,
    artifact: str = Query(..., min_length=1, max_length=200),
    source: str = Query("", max_length=200),
    format: str = Query("csv", pattern="^(csv|jsonl|parquet)$"),
    principal: Principal = Depends(require(READ_RESULTS)),
) -> StreamingResponse:
    """Streams as it is produced, whatever the size: no time-out, flat memory."""
    # Recorded with its real outcome once the status is known (refused for an unknown hunt),
    # and again as an error if the export fails while it streams.
    Audit(request, principal).on_outcome(
        "hunt.export",
        target=hunt_id,
        parameters={"artifact": artifact, "source": source, "format": format},
    )
    await _hunt(request, hunt_id)
    results = context(request).services.hunt_results
    return StreamingResponse(
        stream_export(results, hunt_id, artifact, source, format),
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{hunt_id}.{format}"'},
    )
