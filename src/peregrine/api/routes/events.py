"""Live state without polling: server-sent events for a collection or a hunt."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse

from peregrine.api.deps import context, require
from peregrine.api.routes.collections import FlowId, flow_out
from peregrine.api.routes.hunts import HuntId
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import READ_RESULTS
from peregrine.datastore import FINAL_STATES, HUNT_ARCHIVED, HUNT_STOPPED
from peregrine.services.events import ServerEvents

router = APIRouter(tags=["events"])
HEARTBEAT_SECONDS = 15.0
#: Re-read the state at least this often: changes made elsewhere (another frontend, the CLI)
#: wake nobody here.
POLL_SECONDS = 1.0
#: The state to send, and whether it is final.
Snapshot = Callable[[], Awaitable[tuple[Any, bool]]]


async def changes(
    events: ServerEvents,
    disconnected: Callable[[], Awaitable[bool]],
    snapshot: Snapshot,
    poll: float = POLL_SECONDS,
) -> AsyncIterator[bytes]:
    """The event stream of ``snapshot``: sent when it changes, woken by ``events`` (a change
    made while the snapshot was read included), re-read every ``poll`` seconds."""
    last = None
    sent = time.monotonic()
    while not await disconnected():
        since = events.version
        current, done = await snapshot()
        if current != last:
            yield f"data: {json.dumps(current)}\n\n".encode()
            last, sent = current, time.monotonic()
        if done:
            return
        await events.wait_changed(poll, since)
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

    async def snapshot() -> tuple[Any, bool]:
        record = await asyncio.to_thread(store.get, flow_id)
        if record is None:
            return None, True
        return flow_out(record).model_dump(), record.state in FINAL_STATES

    stream = changes(context(request).services.events, request.is_disconnected, snapshot)
    return StreamingResponse(stream, media_type="text/event-stream")


@router.get("/hunts/{hunt_id}/events", summary="Live statistics of a hunt (SSE)")
async def hunt_events(
    hunt_id: HuntId, request: Request, _: Principal = Depends(require(READ_RESULTS))
) -> StreamingResponse:
    store = context(request).services.datastore.hunts
    if await asyncio.to_thread(store.get, hunt_id) is None:
        raise HTTPException(404, f"no hunt {hunt_id}")

    async def snapshot() -> tuple[Any, bool]:
        hunt = await asyncio.to_thread(store.get, hunt_id)
        if hunt is None:
            return None, True
        stats = await asyncio.to_thread(store.stats, hunt_id)
        body = {"state": hunt.state, **dataclasses.asdict(stats)}
        return body, hunt.state in (HUNT_STOPPED, HUNT_ARCHIVED)

    stream = changes(context(request).services.events, request.is_disconnected, snapshot)
    return StreamingResponse(stream, media_type="text/event-stream")
