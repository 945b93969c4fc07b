"""What every API route stands on: who is calling, what they may do, and the audit trail.

A request authenticates with an API token (``Authorization: Bearer prg_...``) or a browser
session cookie; a session's state-changing requests must also carry its CSRF token in the
``X-CSRF-Token`` header. ``require(PERMISSION)`` is the only way a route gets a principal, so no
route can forget to authorise, and ``Audit.record`` writes every state change with who, when,
from where, what, on which target and with which parameters. What a route does not record
(a refusal before it ran, a failure after) ``auditing.AuditEveryChange`` records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Depends, HTTPException, Request

from peregrine.api.auditing import SAFE_METHODS, Pending, request_audit
from peregrine.auth.accounts import Accounts, Principal
from peregrine.auth.audit import AuditLog
from peregrine.auth.login_limits import FailedLogins
from peregrine.auth.password_pool import PasswordPool

if TYPE_CHECKING:
    from peregrine.services.app import Services

SESSION_COOKIE = "peregrine_session"
CSRF_HEADER = "X-CSRF-Token"


class ReadinessReport(Protocol):
    @property
    def ready(self) -> bool:
        """Whether this process should get traffic."""

    def body(self) -> dict[str, Any]:
        """The answer's JSON body: the state and each check's outcome."""


class ReadinessCheck(Protocol):
    """Whether the process serving the API should get traffic (``server/readiness.py``)."""

    async def report(self) -> ReadinessReport: ...


@dataclass
class ApiContext:
    """Everything routes need, attached to the app at creation (``app.state.ctx``). Routes
    reach collections, hunts and clients through ``services``, never the frontend process."""

    services: Services
    #: The serving process's readiness for ``/readyz``, given by the composition root.
    readiness: ReadinessCheck | None
    accounts: Accounts
    audit: AuditLog
    #: The only threads that run argon2 for the API (logins, new passwords).
    passwords: PasswordPool
    failed_logins: FailedLogins

    async def record(
        self,
        actor: Principal | str,
        action: str,
        *,
        target: str | None = None,
        address: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        result: str = "ok",
        reason: str | None = None,
    ) -> None:
        """Write one audit entry (in the datastore's group commit)."""
        await self.audit.record_grouped(
            self.services.datastore.group, actor, action, target=target, address=address,
            parameters=parameters, result=result, reason=reason,
        )  # fmt: skip

    def close(self) -> None:
        self.passwords.close()


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


async def authenticate(request: Request) -> Principal:
    """The caller, or 401. Sessions must echo their CSRF token on state-changing requests."""
    ctx = context(request)
    header = request.headers.get("authorization", "")
    principal: Principal | None = None
    if header.lower().startswith("bearer "):
        principal = await asyncio.to_thread(ctx.accounts.authenticate_token, header[7:].strip())
    elif cookie := request.cookies.get(SESSION_COOKIE):
        principal = await asyncio.to_thread(ctx.accounts.authenticate_session, cookie)
    if (audit := request_audit(request.scope)) is not None:
        audit.principal = principal  # a refusal after this point names who was refused
    if (
        principal is not None
        and request.method not in SAFE_METHODS
        and not principal.csrf_ok(request.headers.get(CSRF_HEADER))
    ):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header for this session")
    if principal is None:
        raise HTTPException(
            401,
            "authenticate with 'Authorization: Bearer <token>' (peregrine users token NAME) "
            "or log in at /api/v1/auth/login",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def require(*permissions: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the authenticated caller, refused (403, audited) without ``permissions``."""

    async def dependency(
        request: Request, principal: Principal = Depends(authenticate)
    ) -> Principal:
        missing = [p for p in permissions if not principal.has(p)]
        if missing:
            await Audit(request, principal).record(
                f"permission.denied.{request.method.lower()}",
                target=request.url.path,
                result="refused",
                reason=f"lacks {', '.join(missing)}",
            )
            raise HTTPException(403, f"{principal.name} lacks the {', '.join(missing)} permission")
        return principal

    return dependency


class Audit:
    """Records actions of one request (its caller and address filled in)."""

    def __init__(self, request: Request, actor: Principal | str) -> None:
        self.ctx = context(request)
        self.actor = actor
        self.address = request.client.host if request.client else None
        self._request = request

    async def record(
        self,
        action: str,
        *,
        target: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        result: str = "ok",
        reason: str | None = None,
    ) -> None:
        await self.ctx.record(
            self.actor, action, target=target, address=self.address, parameters=parameters,
            result=result, reason=reason,
        )  # fmt: skip
        if (audit := request_audit(self._request.scope)) is not None:
            audit.recorded = result

    def on_outcome(
        self, action: str, *, target: str | None = None, parameters: dict[str, Any] | None = None
    ) -> None:
        """Record ``action`` once the response's status is known (before the client sees it),
        as ok, refused or error by that status, and again as error if the body breaks off."""
        audit = request_audit(self._request.scope)
        if audit is None:
            raise RuntimeError("on_outcome needs the AuditEveryChange middleware")
        audit.pending = Pending(action, target, parameters)
