"""Collections (flows) on one client: create, cancel, state, logs, result pages, uploads."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse

from peregrine.analysis.pages import table_call
from peregrine.api.deps import Audit, context, require
from peregrine.api.disposition import attachment
from peregrine.api.routes.clients import ClientId
from peregrine.api.row_pages import FILTERS, ORDER, SORT, row_query, sorted_page
from peregrine.api.schemas import MAX_INT, CollectionIn, Flow, RowsPage, Upload
from peregrine.api.streaming import MEDIA, stream_export
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import COLLECT_CLIENT, READ_RESULTS
from peregrine.datastore import FlowRecord
from peregrine.services.collections import CollectionError, Limits
from peregrine.services.flow_export import FlowExport

router = APIRouter(tags=["collections"])
FlowId = Annotated[str, Path(pattern=r"^F\.[0-9a-zA-Z]{16}$", examples=["F.0123456789abcdef"])]


def flow_out(record: FlowRecord) -> Flow:
    return Flow.model_validate(record)


async def _flow(request: Request, flow_id: str) -> FlowRecord:
    record = await asyncio.to_thread(context(request).services.datastore.collections.get, flow_id)
    if record is None:
        raise HTTPException(404, f"no collection {flow_id}")
    return record


@router.post("/collections", response_model=Flow, status_code=201, summary="Start a collection")
async def create_collection(
    request: Request, body: CollectionIn, principal: Principal = Depends(require(COLLECT_CLIENT))
) -> Flow:
    """Stored first, then pushed to the client at once if it is connected (else when it next
    connects). Artifacts needing permissions the caller lacks (EXECVE...) are refused."""
    services = context(request).services
    audit = Audit(request, principal)
    params = body.model_dump()
    try:
        record = await services.collect(
            body.client_id,
            [(a.name, a.parameters) for a in body.artifacts],
            creator=principal.name,
            permissions=principal.query_permissions,
            limits=Limits(**body.limits.model_dump()),
        )
    except CollectionError as exc:
        await audit.record(
            "collection.create", target=body.client_id, parameters=params, result="refused",
            reason=str(exc),
        )  # fmt: skip
        raise HTTPException(400, str(exc)) from None
    await audit.record(
        "collection.create", target=f"{body.client_id}/{record.flow_id}", parameters=params
    )
    return flow_out(record)


@router.get(
    "/clients/{client_id}/collections", response_model=list[Flow], summary="A client's collections"
)
async def list_collections(
    client_id: ClientId,
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_INT),
    _: Principal = Depends(require(READ_RESULTS)),
) -> list[Flow]:
    store = context(request).services.datastore.collections
    records = await asyncio.to_thread(store.list_for_client, client_id, limit, offset)
    return [flow_out(r) for r in records]


@router.get("/collections/{flow_id}", response_model=Flow, summary="A collection's state")
async def get_collection(
    flow_id: FlowId, request: Request, _: Principal = Depends(require(READ_RESULTS))
) -> Flow:
    return flow_out(await _flow(request, flow_id))


@router.post("/collections/{flow_id}/cancel", response_model=Flow, summary="Cancel a collection")
async def cancel_collection(
    flow_id: FlowId, request: Request, principal: Principal = Depends(require(COLLECT_CLIENT))
) -> Flow:
    services = context(request).services
    record = await _flow(request, flow_id)
    changed = await services.collections.cancel(flow_id, f"cancelled by {principal.name}")
    await Audit(request, principal).record(
        "collection.cancel", target=f"{record.client_id}/{flow_id}",
        result="ok" if changed else "refused",
        reason=None if changed else f"already {record.state}",
    )  # fmt: skip
    services.events.flow_changed(flow_id)
    return flow_out(await _flow(request, flow_id))


@router.get("/collections/{flow_id}/logs", response_model=RowsPage, summary="A collection's log")
async def collection_logs(
    flow_id: FlowId,
    request: Request,
    offset: int = Query(0, ge=0, le=MAX_INT),
    limit: int = Query(100, ge=1, le=10_000),
    _: Principal = Depends(require(READ_RESULTS)),
) -> RowsPage:
    record = await _flow(request, flow_id)
    fs = context(request).services.filestore
    rows = await asyncio.to_thread(fs.read_logs, record.client_id, flow_id, offset, limit)
    total = await asyncio.to_thread(fs.log_count, record.client_id, flow_id)
    return RowsPage(offset=offset, rows=rows, total=total)


@router.get(
    "/collections/{flow_id}/results", response_model=RowsPage, summary="A page of a result set"
)
async def collection_results(
    flow_id: FlowId,
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
    """Any page costs the same: the result set has a row index. Sorted or filtered pages
    are one query of the analysis engine over the whole result set."""
    query = row_query(sort, order, filter)
    record = await _flow(request, flow_id)
    fs = context(request).services.filestore
    if not query.plain:
        columns = await asyncio.to_thread(fs.columns, record.client_id, flow_id, artifact, source)
        if not columns:
            return RowsPage(offset=offset, rows=[], total=0)
        table = table_call("flow", flow_id, artifact, source)
        kept, total = await sorted_page(request, table, columns, query, offset, limit)
        return RowsPage(offset=offset, rows=kept, total=total)
    rows: list[dict[str, Any]] = await asyncio.to_thread(
        fs.read_rows, record.client_id, flow_id, artifact, source, offset, limit
    )
    total = await asyncio.to_thread(fs.row_count, record.client_id, flow_id, artifact, source)
    return RowsPage(offset=offset, rows=rows, total=total)


@router.get(
    "/collections/{flow_id}/export",
    summary="Export a result set (streamed)",
    response_class=StreamingResponse,
)
async def export_results(
    flow_id: FlowId,
    request: Request,
    artifact: str = Query(..., min_length=1, max_length=200),
    source: str = Query("", max_length=200),
    format: str = Query("csv", pattern="^(csv|jsonl|parquet)$"),
    principal: Principal = Depends(require(READ_RESULTS)),
) -> StreamingResponse:
    """The whole result set in its stored order, streamed as it is read: no time-out, flat
    memory, whatever its size (as a hunt's export)."""
    audit = Audit(request, principal)
    parameters = {"artifact": artifact, "source": source, "format": format}
    audit.on_outcome("collection.export", target=flow_id, parameters=parameters)
    record = await _flow(request, flow_id)
    audit.on_outcome(
        "collection.export", target=f"{record.client_id}/{flow_id}", parameters=parameters
    )
    export = FlowExport(context(request).services.filestore, record.client_id)
    name = f"{flow_id}-{artifact}{'-' + source if source else ''}.{format}"
    return StreamingResponse(
        stream_export(export, flow_id, artifact, source, format),
        media_type=MEDIA[format],
        headers={"Content-Disposition": attachment(name)},
    )


@router.get("/collections/{flow_id}/uploads", response_model=list[Upload], summary="Uploaded files")
async def collection_uploads(
    flow_id: FlowId, request: Request, _: Principal = Depends(require(READ_RESULTS))
) -> list[Upload]:
    record = await _flow(request, flow_id)
    fs = context(request).services.filestore
    uploads = await asyncio.to_thread(fs.uploads, record.client_id, flow_id)
    return [Upload.model_validate(u) for u in uploads]


@router.get(
    "/collections/{flow_id}/uploads/{upload_id}",
    summary="Download an uploaded file",
    response_class=StreamingResponse,
)
async def download_upload(
    flow_id: FlowId,
    upload_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")],
    request: Request,
    principal: Principal = Depends(require(READ_RESULTS)),
) -> StreamingResponse:
    # Recorded with its real outcome once the status is known (and as an error if the
    # transfer breaks off), not as done before it is.
    audit = Audit(request, principal)
    audit.on_outcome("upload.download", target=f"{flow_id}/{upload_id}")
    record = await _flow(request, flow_id)
    audit.on_outcome("upload.download", target=f"{record.client_id}/{flow_id}/{upload_id}")
    fs = context(request).services.filestore
    uploads = {
        u.upload_id: u for u in await asyncio.to_thread(fs.uploads, record.client_id, flow_id)
    }
    upload = uploads.get(upload_id)
    if upload is None:
        raise HTTPException(404, f"no upload {upload_id} in {flow_id}")
    handle = await asyncio.to_thread(fs.open_upload, record.client_id, flow_id, upload.stored_name)

    def chunks() -> Iterator[bytes]:
        with handle:
            while data := handle.read(1 << 20):
                yield data

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": attachment(upload.stored_name.rsplit("/", 1)[-1]),
            "X-Content-SHA256": upload.sha256,
            "Content-Length": str(upload.size),
        },
    )
