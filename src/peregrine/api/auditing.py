"""Every state-changing request leaves an audit record with its real outcome, whatever it was.

Routes record what they did (``deps.Audit``), with their own action names and parameters. What
no route can record — a request refused before any route code ran (no credentials, a missing
CSRF token, a body that does not validate, an unknown path or method), or one that failed after
its route recorded success — is recorded here, in one place, so no refusal can be forgotten:

* a POST, PUT, PATCH or DELETE that nothing recorded gets ``request.<method>`` on its path,
  written when its status is known and before the client sees it: ``refused`` for 4xx (with
  the error's detail as the reason), ``error`` for 5xx, ``ok`` otherwise;
* a route may declare its record up front (``Audit.on_outcome``): it is written the same way,
  so a download that fails is recorded as failed, not as done;
* a response that breaks off after its record said ``ok`` (an exception while streaming, a
  body shorter than announced) gets a second record, ``error``.

A request is recorded once: ``Audit.record`` marks it recorded.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peregrine.datastore import AUDIT_ERROR, AUDIT_OK, AUDIT_REFUSED

if TYPE_CHECKING:
    from peregrine.api.deps import ApiContext
    from peregrine.auth.accounts import Principal

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ANONYMOUS = "anonymous"
_STATE_KEY = "peregrine.audit"
_NOT_A_WORD = re.compile(r"[^a-z0-9_]")
#: The most of an error body read for its detail, and the longest reason kept.
_DETAIL_BYTES = 8192
_REASON_CHARS = 500


@dataclass
class Pending:
    """A record a route declared, written when the outcome is known."""

    action: str
    target: str | None
    parameters: dict[str, Any] | None


@dataclass
class RequestAudit:
    """What one request's audit needs: who, whether recorded, and how it is going."""

    method: str
    path: str
    address: str | None
    principal: Principal | None = None
    pending: Pending | None = None
    #: The result of the last record written for this request ("" while none is).
    recorded: str = ""
    status: int | None = None
    complete: bool = False
    sent: int = 0
    reason: str | None = None

    @property
    def actor(self) -> Principal | str:
        return self.principal if self.principal is not None else ANONYMOUS


def request_audit(scope: Scope) -> RequestAudit | None:
    """The request's audit state (None outside the middleware, e.g. a bare router in tests)."""
    state = scope.get("state")
    found = state.get(_STATE_KEY) if isinstance(state, dict) else None
    return found if isinstance(found, RequestAudit) else None


def result_of(status: int) -> str:
    if status >= 500:
        return AUDIT_ERROR
    return AUDIT_REFUSED if status >= 400 else AUDIT_OK


def detail_of(body: bytes) -> str | None:
    """The ``detail`` of an error body, as one line of text."""
    try:
        detail = json.loads(body)["detail"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(detail, list):  # request validation: [{"loc": [...], "msg": ...}, ...]
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            if isinstance(e, dict)
            else str(e)
            for e in detail
        )
    return str(detail)[:_REASON_CHARS]


class AuditEveryChange:
    """ASGI middleware: writes the records described in the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        audit = RequestAudit(
            method=str(scope["method"]).upper(),
            path=str(scope.get("path", ""))[:_REASON_CHARS],
            address=client[0] if client else None,
        )
        scope.setdefault("state", {})[_STATE_KEY] = audit
        held: Message | None = None

        async def send_noting_outcome(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                audit.status = int(message["status"])
                if self._owes_record(audit):
                    if audit.status >= 400:
                        held = message  # the body says why: record it with the reason
                        return
                    await self._write(scope, audit)
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if held is not None:
                    audit.reason = detail_of(body[:_DETAIL_BYTES]) or f"HTTP {audit.status}"
                    await self._write(scope, audit)
                    await send(held)
                    held = None
                audit.sent += len(body)
                audit.complete = not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, receive, send_noting_outcome)
        except Exception as exc:
            await self._failed(scope, audit, f"{type(exc).__name__}: {exc}")
            raise
        if audit.status is not None and not audit.complete:
            await self._failed(scope, audit, f"the response broke off after {audit.sent} bytes")

    @staticmethod
    def _owes_record(audit: RequestAudit) -> bool:
        if audit.recorded:
            return False
        return audit.pending is not None or audit.method not in SAFE_METHODS

    async def _failed(self, scope: Scope, audit: RequestAudit, why: str) -> None:
        """Record a failure, unless what was recorded already says so (or nothing is owed:
        a read that failed before it claimed anything)."""
        if audit.recorded == AUDIT_ERROR or not (audit.recorded or self._owes_record(audit)):
            return
        audit.status = 500 if audit.status is None or audit.status < 500 else audit.status
        audit.reason = why[:_REASON_CHARS]
        await self._write(scope, audit)

    async def _write(self, scope: Scope, audit: RequestAudit) -> None:
        ctx: ApiContext = scope["app"].state.ctx
        status = audit.status or 500
        pending = audit.pending
        if pending is not None:
            action, target, parameters = pending.action, pending.target, pending.parameters
        else:
            verb = _NOT_A_WORD.sub("_", audit.method.lower())[:40] or "other"
            action, target, parameters = f"request.{verb}", audit.path, None
        details = {"status": status, **(parameters or {})}
        result = result_of(status)
        try:
            await ctx.record(
                audit.actor,
                action,
                target=target,
                address=audit.address,
                parameters=details,
                result=result,
                reason=audit.reason,
            )
        except Exception:
            log.exception("cannot audit %s %s (%s)", audit.method, audit.path, result)
        audit.recorded = result
