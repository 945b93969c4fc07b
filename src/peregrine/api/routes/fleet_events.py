"""The fleet overview, live: server-sent events of the server's status, the running hunts and
the collections in flight, sent whenever they change (the GUI's overview page listens)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from peregrine.api.deps import context, require
from peregrine.api.routes.admin import status
from peregrine.api.routes.collections import flow_out
from peregrine.api.routes.events import HEARTBEAT_SECONDS
from peregrine.api.routes.hunts import hunt_out
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import READ_RESULTS

router = APIRouter(tags=["events"])
#: At most one snapshot this often per listener: each reads the collections in flight.
MIN_INTERVAL = 2.0
#: Hunts and collections a snapshot lists (the newest).
SHOWN = 10


async def _snapshot(request: Request, principal: Principal) -> dict[str, Any]:
    services = context(request).services
    server = await status(request, principal)
    running = await asyncio.to_thread(services.datastore.hunts.running, time.time())
    in_flight = await asyncio.to_thread(services.datastore.collections.in_flight)
    newest = sorted(in_flight, key=lambda f: f.created, reverse=True)[:SHOWN]
    return {
        "status": server.model_dump(),
        "hunts": [hunt_out(h).model_dump() for h in running[:SHOWN]],
        "collections": [flow_out(f).model_dump() for f in newest],
    }


@router.get("/fleet/events", summary="Live fleet overview (SSE)")
async def fleet_events(
    request: Request,
    limit: int | None = Query(None, ge=1, le=1_000_000, description="End after this many."),
    principal: Principal = Depends(require(READ_RESULTS)),
) -> StreamingResponse:
    """A snapshot now and each time it changes (at most every 2 s), with keep-alives."""
    events = context(request).services.events

    async def changes() -> AsyncIterator[bytes]:
        last: dict[str, Any] | None = None
        sent_at = time.monotonic()
        count = 0
        while not await request.is_disconnected():
            current = await _snapshot(request, principal)
            if current != last:
                yield f"data: {json.dumps(current)}\n\n".encode()
                last, sent_at, count = current, time.monotonic(), count + 1
                if limit is not None and count >= limit:
                    return
            await asyncio.sleep(MIN_INTERVAL)
            await events.wait_changed(MIN_INTERVAL)
            if time.monotonic() - sent_at >= HEARTBEAT_SECONDS:
                yield b": keep-alive\n\n"
                sent_at = time.monotonic()

    return StreamingResponse(changes(), media_type="text/event-stream")
