"""Alert rules: listed, read with their versions, saved (checked first), enabled, disabled.

Reading needs READ_RESULTS, trying a rule over stored events ANALYZE (it runs SQL on the
server); every change needs SERVER_ADMIN and is audited. Where alerts are
forwarded is not a rule's business: it is set in the server configuration only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from peregrine.alerts.rules import MAX_CONDITION, Rule, RuleError, rule_from_dict
from peregrine.alerts.service import Alerting
from peregrine.api.deps import Audit, context, require
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import ANALYZE, READ_RESULTS, SERVER_ADMIN
from peregrine.datastore import Conflict, NotFound

router = APIRouter(prefix="/rules", tags=["rules"])
RuleId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
Column = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]


class WindowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=1, le=86_400)
    threshold: int = Field(ge=1, le=1_000_000)
    distinct: Column = "client_id"
    group_by: list[Column] = Field(default=[], max_length=8)


class RuleIn(BaseModel):
    """A rule: ``condition`` is a SQL expression over one event row (its artifact's columns and
    client_id, hostname, labels, artifact, source, event_seq, received)."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", examples=["Team.FromTmp"])
    artifacts: list[str] = Field(min_length=1, max_length=32)
    condition: str = Field(min_length=1, max_length=MAX_CONDITION, examples=["exe LIKE '/tmp/%'"])
    severity: Literal["info", "low", "medium", "high", "critical"] = "medium"
    description: str = Field(default="", max_length=2000)
    window: WindowIn | None = None
    enabled: bool = True
    summary_columns: list[Column] = Field(default=[], max_length=16)
    expected_version: int | None = Field(
        default=None, ge=1, description="Refuse (409) unless the stored rule is this version."
    )


class RuleOut(BaseModel):
    rule_id: str
    version: int
    severity: str
    enabled: bool
    builtin: bool
    artifacts: list[str]
    condition: str
    description: str
    window: dict[str, Any] | None
    summary_columns: list[str]
    modified: float
    modified_by: str


def rule_out(rule: Rule) -> RuleOut:
    return RuleOut(
        rule_id=rule.rule_id,
        version=rule.version,
        severity=rule.severity,
        enabled=rule.enabled,
        builtin=rule.builtin,
        modified=rule.modified,
        modified_by=rule.modified_by,
        **{k: v for k, v in rule.definition().items() if k != "window"},
        window=rule.definition().get("window"),
    )


#: What the rule and alert routes refuse with, and the status each gets.
Refusal = (RuleError, NotFound, Conflict)


def refused(exc: Exception) -> HTTPException:
    """The HTTP error for a refusal: 400 for a bad rule (its field first), 404, 409."""
    if isinstance(exc, RuleError):
        return HTTPException(400, f"{exc.field}: {exc}")
    return HTTPException(404 if isinstance(exc, NotFound) else 409, str(exc))


def _alerting(request: Request) -> Alerting:
    return context(request).services.alerting


@router.get("", summary="Every rule, built-in and added")
async def list_rules(
    request: Request, principal: Principal = Depends(require(READ_RESULTS))
) -> list[RuleOut]:
    rules = await asyncio.to_thread(_alerting(request).rules.list)
    return [rule_out(rule) for rule in rules]


class RuleTestIn(BaseModel):
    """A stored rule (``rule_id``) or a draft (``rule``), tried over stored events."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    rule: RuleIn | None = None
    since: float = Field(ge=0, description="From (epoch seconds, the agents' time of events)")
    until: float | None = Field(default=None, ge=0, description="To, exclusive; default: now")
    client_id: str | None = Field(default=None, pattern=r"^C\.[0-9a-f]{16}$")
    limit: int = Field(default=100, ge=1, le=1000, description="Matching rows returned at most")


class RuleTestOut(BaseModel):
    scanned: int
    matched: int
    matches: list[dict[str, Any]]
    windows: list[dict[str, Any]]
    truncated: bool


@router.post("/test", summary="Try a rule over stored events (nothing is raised)")
async def test_rule(
    request: Request, body: RuleTestIn, principal: Principal = Depends(require(ANALYZE))
) -> RuleTestOut:
    """What the rule would have matched in ``[since, until)``; windowed rules list each window
    and whether it would have fired. Reads at most 1,000,000 stored events."""
    services = context(request).services
    audit = Audit(request, principal)
    parameters = body.model_dump(exclude_none=True)
    try:
        if (body.rule_id is None) == (body.rule is None):
            raise RuleError("rule", "give either rule_id (a stored rule) or rule (a draft)")
        if body.rule is not None:
            rule = rule_from_dict(body.rule.model_dump(exclude={"expected_version"}))
        else:
            rule = await asyncio.to_thread(services.alerting.rules.get, str(body.rule_id))
        until = body.until if body.until is not None else time.time()
        result = await asyncio.to_thread(
            services.alerting.trial, rule, services.event_monitoring.files,
            body.since, until, body.client_id, body.limit,
        )  # fmt: skip
    except Refusal as exc:
        await audit.record("rule.test", parameters=parameters, result="refused", reason=str(exc))
        raise refused(exc) from None
    await audit.record("rule.test", target=rule.rule_id, parameters=parameters)
    return RuleTestOut(**dataclasses.asdict(result))


@router.get("/{rule_id}", summary="One rule")
async def get_rule(
    request: Request, rule_id: RuleId, principal: Principal = Depends(require(READ_RESULTS))
) -> RuleOut:
    try:
        return rule_out(await asyncio.to_thread(_alerting(request).rules.get, rule_id))
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.post("", summary="Add a rule or save a new version of one (checked first)")
async def save_rule(
    request: Request, body: RuleIn, principal: Principal = Depends(require(SERVER_ADMIN))
) -> RuleOut:
    alerting = _alerting(request)
    audit = Audit(request, principal)
    data = body.model_dump(exclude={"expected_version"})
    try:
        rule = await asyncio.to_thread(
            alerting.rules.save, data, principal.name, expected_version=body.expected_version
        )
    except Refusal as exc:
        await audit.record(
            "rule.save", target=body.rule_id, parameters=data, result="refused", reason=str(exc)
        )
        raise refused(exc) from None
    await audit.record(
        "rule.save", target=rule.rule_id, parameters={**data, "version": rule.version}
    )
    await alerting.rules_changed()
    return rule_out(rule)


async def _switch(request: Request, rule_id: str, principal: Principal, enabled: bool) -> RuleOut:
    alerting = _alerting(request)
    audit = Audit(request, principal)
    action = "rule.enable" if enabled else "rule.disable"
    try:
        rule = await asyncio.to_thread(alerting.rules.set_enabled, rule_id, enabled, principal.name)
    except Refusal as exc:
        await audit.record(action, target=rule_id, result="refused", reason=str(exc))
        raise refused(exc) from None
    await audit.record(action, target=rule_id, parameters={"version": rule.version})
    await alerting.rules_changed()
    return rule_out(rule)


@router.post("/{rule_id}/enable", summary="Enable a rule")
async def enable_rule(
    request: Request, rule_id: RuleId, principal: Principal = Depends(require(SERVER_ADMIN))
) -> RuleOut:
    return await _switch(request, rule_id, principal, True)


@router.post("/{rule_id}/disable", summary="Disable a rule")
async def disable_rule(
    request: Request, rule_id: RuleId, principal: Principal = Depends(require(SERVER_ADMIN))
) -> RuleOut:
    return await _switch(request, rule_id, principal, False)
