"""The file browser: a client's stored directory listings and downloads, and launching them.

A reader may browse what was already collected; only who may collect asks the client again.
Each launch is an ordinary collection (``services/file_browser.py``), audited as
``vfs.list`` or ``vfs.download`` with the path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import Field

from peregrine.api.deps import Audit, context, require
from peregrine.api.routes.clients import ClientId
from peregrine.api.routes.collections import flow_out
from peregrine.api.schemas import MAX_INT, Flow, Out, Strict, Upload
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import COLLECT_CLIENT, READ_RESULTS
from peregrine.services.collections import CollectionError
from peregrine.services.file_browser import (
    DOWNLOAD_FILE,
    LIST_DIRECTORY,
    MAX_PATH,
    PathRefused,
    PathRuns,
    clean_path,
)

router = APIRouter(tags=["files"])
PathQuery = Query(..., min_length=1, max_length=MAX_PATH, examples=["/etc"])


class PathIn(Strict):
    path: str = Field(min_length=1, max_length=MAX_PATH, examples=["/etc"])


class Runs(Out):
    """A path's newest finished collection, a newer one still going, and a newer failure."""

    path: str
    finished: Flow | None = Field(description="The newest Finished collection for the path.")
    pending: Flow | None = Field(description="A newer collection not final yet (refreshing).")
    failed: Flow | None = Field(description="A newer collection that ended in Error or Cancelled.")


class Listing(Runs):
    """The stored listing of a directory (``entries``, paged) and when it was taken."""

    listed: float | None = Field(description="When the listing was taken (its finish time).")
    offset: int
    total: int
    entries: list[dict[str, Any]]


class FileDetails(Runs):
    """A file's newest download: its metadata and hashes, and the stored copy."""

    downloaded: float | None
    details: dict[str, Any] | None = Field(description="stat, md5, sha1, sha256 of the file.")
    upload: Upload | None = Field(description="The copy in the collection's uploads.")


def _path(path: str) -> str:
    try:
        return clean_path(path)
    except PathRefused as exc:
        raise HTTPException(400, f"{exc}; give an absolute path such as /etc") from None


async def _known_client(request: Request, client_id: str) -> None:
    clients = context(request).services.datastore.clients
    if await asyncio.to_thread(clients.get, client_id) is None:
        raise HTTPException(404, f"no client {client_id}")


def _runs(path: str, runs: PathRuns) -> dict[str, Any]:
    return {
        "path": path,
        "finished": runs.finished and flow_out(runs.finished),
        "pending": runs.pending and flow_out(runs.pending),
        "failed": runs.failed and flow_out(runs.failed),
    }


@router.get("/clients/{client_id}/vfs", response_model=Listing, summary="A stored listing")
async def get_listing(
    client_id: ClientId,
    request: Request,
    path: str = PathQuery,
    offset: int = Query(0, ge=0, le=MAX_INT),
    limit: int = Query(1000, ge=1, le=10_000),
    _: Principal = Depends(require(READ_RESULTS)),
) -> Listing:
    """The newest listing of the directory collected from the client (none yet: ``finished``
    is null and ``entries`` empty; ``POST .../vfs/list`` asks the client)."""
    clean = _path(path)
    await _known_client(request, client_id)
    browser = context(request).services.file_browser
    runs = await asyncio.to_thread(browser.runs, client_id, LIST_DIRECTORY, clean)
    entries: list[dict[str, Any]] = []
    total = 0
    if runs.finished is not None:
        entries = await asyncio.to_thread(browser.rows, runs.finished, offset, limit)
        total = await asyncio.to_thread(browser.row_count, runs.finished)
    listed = runs.finished.finished if runs.finished else None
    return Listing(**_runs(clean, runs), listed=listed, offset=offset, total=total, entries=entries)


@router.get("/clients/{client_id}/vfs/file", response_model=FileDetails, summary="A stored file")
async def get_file(
    client_id: ClientId,
    request: Request,
    path: str = PathQuery,
    _: Principal = Depends(require(READ_RESULTS)),
) -> FileDetails:
    """The newest download of the file: metadata, hashes and the uploaded copy."""
    clean = _path(path)
    await _known_client(request, client_id)
    services = context(request).services
    browser = services.file_browser
    runs = await asyncio.to_thread(browser.runs, client_id, DOWNLOAD_FILE, clean)
    details: dict[str, Any] | None = None
    upload: Upload | None = None
    if runs.finished is not None:
        rows = await asyncio.to_thread(browser.rows, runs.finished, 0, 1)
        details = rows[0] if rows else None
        stored = await asyncio.to_thread(
            services.filestore.uploads, client_id, runs.finished.flow_id
        )
        upload = next((Upload.model_validate(u) for u in stored if u.path == clean), None)
    downloaded = runs.finished.finished if runs.finished else None
    return FileDetails(**_runs(clean, runs), downloaded=downloaded, details=details, upload=upload)


async def _launch(
    request: Request, principal: Principal, client_id: str, artifact: str, path: str, action: str
) -> Flow:
    clean = _path(path)
    audit = Audit(request, principal)
    try:
        record = await context(request).services.collect(
            client_id,
            [(artifact, {"Path": clean})],
            creator=principal.name,
            permissions=principal.query_permissions,
        )
    except CollectionError as exc:
        await audit.record(
            action, target=client_id, parameters={"path": clean}, result="refused",
            reason=str(exc),
        )  # fmt: skip
        raise HTTPException(400, str(exc)) from None
    await audit.record(action, target=f"{client_id}/{record.flow_id}", parameters={"path": clean})
    return flow_out(record)


@router.post(
    "/clients/{client_id}/vfs/list", response_model=Flow, status_code=201, summary="List again"
)
async def list_directory(
    client_id: ClientId,
    body: PathIn,
    request: Request,
    principal: Principal = Depends(require(COLLECT_CLIENT)),
) -> Flow:
    """Ask the client for a fresh listing of the directory (a collection)."""
    return await _launch(request, principal, client_id, LIST_DIRECTORY, body.path, "vfs.list")


@router.post(
    "/clients/{client_id}/vfs/download",
    response_model=Flow,
    status_code=201,
    summary="Download a file",
)
async def download_file(
    client_id: ClientId,
    body: PathIn,
    request: Request,
    principal: Principal = Depends(require(COLLECT_CLIENT)),
) -> Flow:
    """Collect the file into a collection's uploads, with its metadata and hashes."""
    return await _launch(request, principal, client_id, DOWNLOAD_FILE, body.path, "vfs.download")
