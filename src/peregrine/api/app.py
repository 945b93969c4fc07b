"""The public REST API: ``/api/v1``, documented by its OpenAPI document at
``/api/v1/openapi.json`` and interactive docs at ``/api/docs``.

Versioned by path: ``/api/v1`` only ever gains endpoints and optional fields; anything that
would break a script goes to ``/api/v2``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from peregrine import __version__
from peregrine.api.auditing import AuditEveryChange
from peregrine.api.deps import ApiContext, ReadinessCheck
from peregrine.api.docs import add_docs
from peregrine.api.routes import (
    admin,
    alerts,
    analysis,
    artifacts,
    clients,
    collections,
    event_monitoring,
    events,
    fleet_events,
    health,
    hunts,
    metrics,
    notebooks,
    rules,
    timelines,
    vfs,
)
from peregrine.api.schemas import Error
from peregrine.auth.accounts import Accounts
from peregrine.auth.audit import AuditLog
from peregrine.auth.login_limits import FailedLogins
from peregrine.auth.password_pool import PasswordPool
from peregrine.config.model import LoginSettings
from peregrine.datastore import DatastoreError, DatastoreUnavailable, NotFound
from peregrine.gui.routes import add_gui
from peregrine.metrics.exposition import MetricsPage
from peregrine.metrics.instruments import ERRORS
from peregrine.metrics.state import FleetStateCollector

if TYPE_CHECKING:
    from peregrine.services.app import Services

API_PREFIX = "/api/v1"

#: The errors any operation may answer, declared so the document lists every status it can send
#: (the routes add their own 2xx and FastAPI the 422 of request validation).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "A request the server cannot carry out as asked"},
    401: {"model": Error, "description": "No valid credentials"},
    403: {"model": Error, "description": "A permission (or the session's CSRF token) is missing"},
    404: {"model": Error, "description": "No such object"},
    409: {"model": Error, "description": "The object's state does not allow this"},
}


def create_app(
    services: Services,
    accounts: Accounts,
    audit: AuditLog,
    readiness: ReadinessCheck | None = None,
) -> FastAPI:
    """The API over ``services``; ``readiness`` answers ``/readyz`` for the process serving
    it. The composition root (``server/api_server.py``) makes and serves it."""
    app = FastAPI(
        title="Peregrine API",
        version="1",
        summary="Endpoint visibility and DFIR: clients, collections, hunts, artifacts.",
        description=(
            f"Peregrine {__version__}. Authenticate with `Authorization: Bearer <token>` "
            "(`peregrine users token NAME`) or a session from `POST /api/v1/auth/login` (then "
            "send `X-CSRF-Token` on state-changing requests). Every change is audited."
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # add_docs: Swagger UI served from here, not from a CDN
        redoc_url=None,
    )
    add_docs(app, f"{API_PREFIX}/openapi.json", app.title)
    add_gui(app)  # the web GUI at /ui/: static files; it uses this API from the browser
    login = services.config.login if services is not None else LoginSettings()
    app.state.ctx = ApiContext(
        services=services,
        readiness=readiness,
        accounts=accounts,
        audit=audit,
        passwords=PasswordPool(login.hash_workers, login.max_waiting),
        failed_logins=FailedLogins(
            login.failures_per_address, login.failures_per_user, login.window
        ),
    )
    app.add_middleware(AuditEveryChange)  # a change nothing else recorded is recorded here
    for module in (
        clients,
        collections,
        hunts,
        artifacts,
        admin,
        events,
        event_monitoring,
        analysis,
        notebooks,
        timelines,
        vfs,
        fleet_events,
        alerts,
        rules,
    ):
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(health.router)  # /healthz, /readyz: for balancers, unversioned
    app.state.metrics = MetricsPage(
        FleetStateCollector(services.datastore.counts.fleet) if services is not None else None
    )
    app.include_router(metrics.router)  # /metrics: Prometheus, a monitoring token

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(DatastoreUnavailable)
    async def datastore_unavailable(request: Request, exc: DatastoreUnavailable) -> JSONResponse:
        ERRORS.labels(kind="datastore_unavailable").inc()
        detail = "the datastore does not answer (restarting?); try again in a few seconds"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(DatastoreError)
    async def datastore_error(request: Request, exc: DatastoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    return app
