"""Event monitoring: which event artifacts run where (assignments), how they run (status),
the events stored (pages and streamed exports by time range) and a live follow (SSE)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from peregrine.api.deps import Audit, context, require
from peregrine.api.routes.clients import ClientId
from peregrine.api.schemas import MAX_INT
from peregrine.api.streaming import MEDIA, produced
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import READ_RESULTS, START_HUNT
from peregrine.datastore.events import EventAssignment
from peregrine.services.event_monitoring import EventAssignmentError, EventMonitoring

router = APIRouter(prefix="/events", tags=["event monitoring"])
ArtifactName = Annotated[str, Path(min_length=1, max_length=256)]
#: Seconds between keep-alive comments on a quiet follow.
HEARTBEAT_SECONDS = 15.0


class AssignmentIn(BaseModel):
    artifact: str = Field(min_length=1, max_length=256, examples=["Linux.Events.ProcessExecution"])
    parameters: dict[str, Any] = Field(default_factory=dict)
    #: Empty: every client. Otherwise clients holding any of these labels.
    labels: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=100
    )


class AssignmentOut(BaseModel):
    artifact: str
    parameters: dict[str, Any]
    labels: list[str]
    version: int
    modified: float
    modified_by: str


class AssignmentSet(BaseModel):
    version: int
    assignments: list[AssignmentOut]


class StatusOut(BaseModel):
    client_id: str
    artifact: str
    state: str
    error: str | None
    restarts: int
    reported: float
    updated: float


class EventsPage(BaseModel):
    offset: int
    rows: list[dict[str, Any]]


def _out(assignment: EventAssignment) -> AssignmentOut:
    return AssignmentOut(
        artifact=assignment.artifact,
        parameters=assignment.parameters,
        labels=assignment.labels,
        version=assignment.version,
        modified=assignment.modified,
        modified_by=assignment.modified_by,
    )


@router.get("/assignments", response_model=AssignmentSet, summary="The event assignments")
async def list_assignments(
    request: Request, _: Principal = Depends(require(READ_RESULTS))
) -> AssignmentSet:
    monitoring = context(request).services.event_monitoring
    version, assigned = await monitoring.assignments(fresh=True)
    return AssignmentSet(version=version, assignments=[_out(a) for a in assigned])


@router.post(
    "/assignments",
    response_model=AssignmentSet,
    status_code=201,
    summary="Run an event artifact on every client, or on clients with given labels",
)
async def assign(
    request: Request, body: AssignmentIn, principal: Principal = Depends(require(START_HUNT))
) -> AssignmentSet:
    """Replaces an earlier assignment of the same artifact. Pushed at once to connected
    clients; others get it when they connect."""
    monitoring = context(request).services.event_monitoring
    audit = Audit(request, principal)
    data = body.model_dump()
    try:
        version = await monitoring.assign(
            body.artifact, body.parameters, body.labels, principal.name,
            principal.query_permissions,
        )  # fmt: skip
    except EventAssignmentError as exc:
        await audit.record(
            "events.assign", target=body.artifact, parameters=data, result="refused",
            reason=str(exc),
        )  # fmt: skip
        raise HTTPException(400, str(exc)) from None
    await audit.record(
        "events.assign", target=body.artifact, parameters={**data, "version": version}
    )
    return await list_assignments(request, principal)


@router.delete(
    "/assignments/{artifact}", response_model=AssignmentSet, summary="Stop an event artifact"
)
async def unassign(
    artifact: ArtifactName, request: Request, principal: Principal = Depends(require(START_HUNT))
) -> AssignmentSet:
    monitoring = context(request).services.event_monitoring
    audit = Audit(request, principal)
    version = await monitoring.unassign(artifact, principal.name)
    if version is None:
        reason = f"{artifact} is not assigned (GET /events/assignments lists what is)"
        await audit.record("events.unassign", target=artifact, result="refused", reason=reason)
        raise HTTPException(404, reason)
    await audit.record("events.unassign", target=artifact, parameters={"version": version})
    return await list_assignments(request, principal)


@router.get("/status", response_model=list[StatusOut], summary="How event artifacts run")
async def status(
    request: Request,
    client_id: str | None = Query(None, pattern=r"^C\.[0-9a-f]{16}$"),
    artifact: str | None = Query(None, max_length=256),
    limit: int = Query(1000, ge=1, le=10_000),
    _: Principal = Depends(require(READ_RESULTS)),
) -> list[StatusOut]:
    """Each client's latest report per artifact: running, restarting (with the error and how
    many restarts), failed or stopped."""
    store = context(request).services.datastore.events
    statuses = await asyncio.to_thread(store.statuses, client_id, artifact, limit)
    return [StatusOut.model_validate(s, from_attributes=True) for s in statuses]


#: The latest time a range may name (2100-01-01): later ones overflow the platform's time_t
#: once a day is added, and no event is stored that far ahead.
LAST_TIME = 4_102_444_800


def _range(start: float | None, end: float | None) -> tuple[float, float]:
    """Without ``end``: a day ahead of now (an agent's clock may run fast); without ``start``:
    the day before ``end``, or before now when no ``end`` is given."""
    now = time.time()
    if start is None:
        start = (now if end is None else end) - 86400
    end = now + 86400 if end is None else end
    if start > end:
        raise HTTPException(400, "start must not be after end")
    return start, end


@router.get(
    "/clients/{client_id}/{artifact}",
    response_model=EventsPage,
    summary="A page of a client's events of one artifact, by time",
)
async def events_page(
    client_id: ClientId,
    artifact: ArtifactName,
    request: Request,
    start: float | None = Query(
        None, ge=0, le=LAST_TIME, description="From (seconds since the epoch)."
    ),
    end: float | None = Query(
        None, ge=0, le=LAST_TIME, description="Before (default: now, and a day)."
    ),
    offset: int = Query(0, ge=0, le=MAX_INT),
    limit: int = Query(100, ge=1, le=10_000),
    _: Principal = Depends(require(READ_RESULTS)),
) -> EventsPage:
    """Rows in stored order, each with `_seq` (its number in the client's stream of the
    artifact), `_time` (when the agent batched it) and `_source`. Without `start`, the day
    before `end`."""
    first, last = _range(start, end)
    files = context(request).services.event_monitoring.files
    rows = await asyncio.to_thread(files.read, client_id, artifact, first, last, offset, limit)
    return EventsPage(offset=offset, rows=rows)


@router.get(
    "/clients/{client_id}/{artifact}/export",
    summary="Export a client's events of one artifact over a time range (streamed)",
    response_class=StreamingResponse,
)
async def export_events(
    client_id: ClientId,
    artifact: ArtifactName,
    request: Request,
    start: float | None = Query(None, ge=0, le=LAST_TIME),
    end: float | None = Query(None, ge=0, le=LAST_TIME),
    format: str = Query("csv", pattern="^(csv|jsonl|parquet)$"),
    principal: Principal = Depends(require(READ_RESULTS)),
) -> StreamingResponse:
    first, last = _range(start, end)
    Audit(request, principal).on_outcome(
        "events.export",
        target=f"{client_id}/{artifact}",
        parameters={"start": first, "end": last, "format": format},
    )
    exporter = context(request).services.event_monitoring.exporter(first, last)
    return StreamingResponse(
        produced(lambda sink: exporter.export(client_id, artifact, format, sink)),
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="events.{format}"'},
    )


@router.get("/follow", summary="Events as they are stored, on any frontend (SSE)")
async def follow(
    request: Request,
    client_id: str | None = Query(None, pattern=r"^C\.[0-9a-f]{16}$"),
    artifact: str | None = Query(None, max_length=256),
    seconds: float | None = Query(None, gt=0, le=86400, description="Stop after this long."),
    _: Principal = Depends(require(READ_RESULTS)),
) -> StreamingResponse:
    """One `data:` line per stored batch (JSON: client_id, hostname, artifact, source,
    first_seq, received, rows), filtered by client and artifact: the batches this frontend
    stores and, in a cluster or with `--workers`, those the others store (told over the bus,
    read from the shared filestore). A follower more than 256 batches behind loses the oldest
    (read them back by time range)."""
    monitoring = context(request).services.event_monitoring
    return StreamingResponse(
        _follow(request, monitoring, client_id, artifact, seconds),
        media_type="text/event-stream",
    )


async def _follow(
    request: Request,
    monitoring: EventMonitoring,
    client_id: str | None,
    artifact: str | None,
    seconds: float | None,
) -> AsyncIterator[bytes]:
    until = None if seconds is None else time.monotonic() + seconds
    async with monitoring.follow(client_id, artifact) as queue:
        yield b": following\n\n"
        while not await request.is_disconnected():
            left = HEARTBEAT_SECONDS if until is None else until - time.monotonic()
            if left <= 0:
                return
            try:
                batch = await asyncio.wait_for(queue.get(), min(left, HEARTBEAT_SECONDS))
            except TimeoutError:
                if until is None or time.monotonic() < until:
                    yield b": keep-alive\n\n"
                continue
            body = {
                "client_id": batch.client_id,
                "hostname": batch.hostname,
                "artifact": batch.artifact,
                "source": batch.source,
                "first_seq": batch.first_seq,
                "received": batch.received,
                "rows": batch.rows,
            }
            yield f"data: {json.dumps(body, default=_bytes)}\n\n".encode()


def _bytes(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return str(value)
