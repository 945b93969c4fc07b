"""Live state without polling: server-sent events for a collection or a hunt."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse

from peregrine.api.deps import context, require
from peregrine.api.routes.collections import FlowId, flow_out
from peregrine.api.routes.hunts import HuntId
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import READ_RESULTS
from peregrine.datastore import FINAL_STATES, HUNT_ARCHIVED, HUNT_STOPPED

router = APIRouter(tags=["events"])
HEARTBEAT_SECONDS = 15.0
#: Re-read the state at least this often: a wake-up can come while the snapshot is being read,
#: and changes made elsewhere (hunt state changes, another frontend, the CLI) wake nobody here.
POLL_SECONDS = 1.0


async def _changes(request: Request, snapshot) -> AsyncIterator[bytes]:  # type: ignore[no-untyped-def]
    """Send a snapshot each time it changes (woken by the server's events), until final."""
    events = context(request).services.events
    last = None
    sent = time.monotonic()
    while not await request.is_disconnected():
        current, done = await snapshot()
        if current != last:
            yield f"data: {json.dumps(current)}\n\n".encode()
            last, sent = current, time.monotonic()
        if done:
            return
        await events.wait_changed(POLL_SECONDS)
        if time.monotonic() - sent >= HEARTBEAT_SECONDS:
            yield b": keep-alive\n\n"
            sent = time.monotonic()


@router.get("/collections/{flow_id}/events", summary="Live state of a collection (SSE)")
async def collection_events(
    flow_id: FlowId, request: Request, _: Principal = Depends(require(READ_RESULTS))
) -> StreamingResponse:
    store = context(request).services.datastore.collections
    if await asyncio.to_thread(store.get, flow_id) is None:
        raise HTTPException(404, f"no collection {flow_id}")

    async def snapshot():  # type: ignore[no-untyped-def]
        record = await asyncio.to_thread(store.get, flow_id)
        if record is None:
            return None, True
        return flow_out(record).model_dump(), record.state in FINAL_STATES

    return StreamingResponse(_changes(request, snapshot), media_type="text/event-stream")


@router.get("/hunts/{hunt_id}/events", summary="Live statistics of a hunt (SSE)")
async def hunt_events(
    hunt_id: HuntId, request: Request, _: Principal = Depends(require(READ_RESULTS))
) -> StreamingResponse:
    store = context(request).services.datastore.hunts
    if await asyncio.to_thread(store.get, hunt_id) is None:
        raise HTTPException(404, f"no hunt {hunt_id}")

    async def snapshot():  # type: ignore[no-untyped-def]
        hunt = await asyncio.to_thread(store.get, hunt_id)
        if hunt is None:
            return None, True
        stats = await asyncio.to_thread(store.stats, hunt_id)
        body = {"state": hunt.state, **dataclasses.asdict(stats)}
        return body, hunt.state in (HUNT_STOPPED, HUNT_ARCHIVED)

    return StreamingResponse(_changes(request, snapshot), media_type="text/event-stream")
