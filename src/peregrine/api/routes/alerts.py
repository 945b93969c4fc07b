"""Alerts raised by rules: listed with filters, read, acknowledged (see ``peregrine.alerts``)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from peregrine.alerts.forward import alert_document
from peregrine.alerts.rules import SEVERITIES
from peregrine.api.deps import Audit, context, require
from peregrine.api.routes.rules import Refusal, refused
from peregrine.api.schemas import MAX_INT
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import ACKNOWLEDGE_ALERTS, READ_RESULTS

router = APIRouter(prefix="/alerts", tags=["alerts"])
AlertId = Annotated[int, Path(ge=1, le=MAX_INT)]
Severity = Literal["info", "low", "medium", "high", "critical"]
assert set(SEVERITIES) == set(Severity.__args__)  # type: ignore[attr-defined]


class Alert(BaseModel):
    """One alert: the rule (and its version) that raised it, on which event(s), and its state."""

    alert_id: int
    rule_id: str
    rule_version: int
    severity: str
    time: float
    summary: str
    client_id: str | None
    hostname: str | None
    artifact: str | None
    source: str | None
    event_seq: int | None
    rows: list[dict[str, Any]]
    state: Literal["open", "acknowledged"]
    acked_by: str | None
    acked_at: float | None
    ack_comment: str | None


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=4000, description="Why, what was done.")


@router.get("", summary="List alerts, newest first (or oldest first after an id, to follow)")
async def list_alerts(
    request: Request,
    state: Literal["open", "acknowledged"] | None = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    client_id: str | None = None,
    rule_id: str | None = None,
    since: float | None = Query(default=None, description="Raised at or after (epoch seconds)"),
    until: float | None = Query(default=None, description="Raised before (epoch seconds)"),
    before: int | None = Query(default=None, ge=1, le=MAX_INT, description="Page: ids below"),
    after: int | None = Query(
        default=None, ge=0, le=MAX_INT, description="Only ids above, oldest first (follow)"
    ),
    limit: int = Query(default=100, ge=1, le=1000),
    principal: Principal = Depends(require(READ_RESULTS)),
) -> list[Alert]:
    store = context(request).services.datastore.alerts
    records = await asyncio.to_thread(
        store.query,
        state=state,
        severity=severity,
        client_id=client_id,
        rule_id=rule_id,
        since=since,
        until=until,
        before=before,
        after=after,
        limit=limit,
    )
    return [Alert.model_validate(alert_document(record)) for record in records]


@router.get("/{alert_id}", summary="One alert")
async def get_alert(
    request: Request, alert_id: AlertId, principal: Principal = Depends(require(READ_RESULTS))
) -> Alert:
    record = await asyncio.to_thread(context(request).services.datastore.alerts.get, alert_id)
    if record is None:
        raise HTTPException(404, f"no alert {alert_id}: `peregrine alerts list` shows them")
    return Alert.model_validate(alert_document(record))


@router.post("/{alert_id}/acknowledge", summary="Acknowledge an alert (who, when, why)")
async def acknowledge(
    request: Request,
    alert_id: AlertId,
    body: AcknowledgeIn,
    principal: Principal = Depends(require(ACKNOWLEDGE_ALERTS)),
) -> Alert:
    store = context(request).services.datastore.alerts
    audit = Audit(request, principal)
    parameters = {"comment": body.comment}
    try:
        record = await asyncio.to_thread(
            store.acknowledge, alert_id, principal.name, time.time(), body.comment
        )
    except Refusal as exc:
        await audit.record(
            "alert.acknowledge", target=str(alert_id), parameters=parameters,
            result="refused", reason=str(exc),
        )  # fmt: skip
        raise refused(exc) from None
    await audit.record("alert.acknowledge", target=str(alert_id), parameters=parameters)
    return Alert.model_validate(alert_document(record))
