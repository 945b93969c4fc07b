"""``/healthz`` and ``/readyz``: what a balancer (HAProxy) or an orchestrator polls.

Unauthenticated and outside ``/api/v1`` (they are for machines that hold no credentials, and
not part of the versioned API): ``/healthz`` says the process answers, ``/readyz`` whether it
should get traffic (see ``server/readiness.py``). Neither body holds anything secret.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from peregrine.api.deps import context

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> JSONResponse:
    """The process is alive and its event loop answers."""
    return JSONResponse({"status": "alive"}, headers={"Cache-Control": "no-store"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 when this frontend should get traffic, 503 (with what is wrong) when not."""
    readiness = context(request).readiness
    if readiness is None:  # an app with no process behind it never gets traffic
        body: dict[str, object] = {"status": "not ready", "checks": {}}
        return JSONResponse(body, status_code=503, headers={"Cache-Control": "no-store"})
    report = await readiness.report()
    return JSONResponse(
        report.body(),
        status_code=200 if report.ready else 503,
        headers={"Cache-Control": "no-store"},
    )
