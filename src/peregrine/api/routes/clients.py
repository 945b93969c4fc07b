"""Clients: search, detail, labels, deletion."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from peregrine.api.deps import Audit, context, require
from peregrine.api.schemas import (
    MAX_INT,
    Client,
    ClientDetail,
    ClientPage,
    DeletedClient,
    LabelsIn,
)
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import LABEL_CLIENT, READ_RESULTS, SERVER_ADMIN
from peregrine.services.client_admin import ClientConnected, UnknownClient, delete_client
from peregrine.services.client_index import SearchError, describe

router = APIRouter(prefix="/clients", tags=["clients"])
ClientId = Annotated[str, Path(pattern=r"^C\.[0-9a-f]{16}$", examples=["C.1a2b3c4d5e6f7a8b"])]


@router.get("", response_model=ClientPage, summary="Search clients")
async def search_clients(
    request: Request,
    q: str = Query("", max_length=1000, description="e.g. `label:prod os:linux host:web-*`"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_INT),
    _: Principal = Depends(require(READ_RESULTS)),
) -> ClientPage:
    """Search with `host:`, `label:`, `os:`, `ip:`, `client:`, `recent:15m`, `online:true`,
    free text and `*` wildcards; terms are ANDed. Answered from the in-memory index."""
    services = context(request).services
    online = services.fleet.online()
    try:
        total, found = services.client_index.search(q, online=online, limit=limit, offset=offset)
    except SearchError as exc:
        raise HTTPException(400, str(exc)) from None
    return ClientPage(total=total, items=[Client(**describe(c, online)) for c in found])


@router.get("/{client_id}", response_model=ClientDetail, summary="One client")
async def get_client(
    client_id: ClientId,
    request: Request,
    _: Principal = Depends(require(READ_RESULTS)),
) -> ClientDetail:
    services = context(request).services
    record = await asyncio.to_thread(services.datastore.clients.get, client_id)
    if record is None:
        raise HTTPException(404, f"no client {client_id}")
    return ClientDetail(
        client_id=record.client_id,
        hostname=record.hostname,
        os=record.os,
        labels=record.labels,
        ip_addresses=record.ip_addresses,
        last_seen=record.last_seen,
        online=services.fleet.is_online(client_id),
        fqdn=record.fqdn,
        release=record.release,
        kernel=record.kernel,
        arch=record.arch,
        mac_addresses=record.mac_addresses,
        users=record.users,
        agent_version=record.agent_version,
        boot_time=record.boot_time,
        first_seen=record.first_seen,
        interrogated=record.interrogated,
    )


@router.post("/{client_id}/labels", response_model=list[str], summary="Add or remove labels")
async def change_labels(
    client_id: ClientId,
    request: Request,
    body: LabelsIn,
    principal: Principal = Depends(require(LABEL_CLIENT)),
) -> list[str]:
    """Returns the client's labels afterwards. A running hunt that now matches the client is
    scheduled on it."""
    services = context(request).services
    if await asyncio.to_thread(services.datastore.clients.get, client_id) is None:
        raise HTTPException(404, f"no client {client_id}")
    labels = await services.label(client_id, add=body.add, remove=body.remove)
    await Audit(request, principal).record(
        "client.label", target=client_id, parameters=body.model_dump()
    )
    return labels


@router.delete(
    "/{client_id}",
    response_model=DeletedClient,
    summary="Delete a client with its collections, files and hunt entries",
    responses={404: {"description": "No such client"}, 409: {"description": "Connected"}},
)
async def remove_client(
    client_id: ClientId,
    request: Request,
    force: bool = Query(
        False, description="Delete a connected client too: its connection is closed first."
    ),
    principal: Principal = Depends(require(SERVER_ADMIN)),
) -> DeletedClient:
    """Administrators only. Removes the client's record and labels, its collections (results,
    logs, uploads, tasks) and its entries in hunts (their statistics no longer count it). A
    connected client is refused (409) unless `force=true`. A running agent with the enrollment
    secret enrolls again as a new client: remove the agent first to retire a machine."""
    audit = Audit(request, principal)
    parameters = {"force": force}
    try:
        deleted = await delete_client(context(request).services, client_id, force)
    except UnknownClient as exc:
        await audit.record(
            "client.delete", target=client_id, parameters=parameters, result="refused",
            reason=str(exc),
        )  # fmt: skip
        raise HTTPException(404, str(exc)) from None
    except ClientConnected as exc:
        await audit.record(
            "client.delete", target=client_id, parameters=parameters, result="refused",
            reason=str(exc),
        )  # fmt: skip
        raise HTTPException(409, str(exc)) from None
    await audit.record(
        "client.delete", target=client_id,
        parameters={**parameters, "flows": deleted.flows, "was_connected": deleted.was_connected},
    )  # fmt: skip
    return DeletedClient.model_validate(deleted)
