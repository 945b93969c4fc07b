"""What every API route stands on: who is calling, what they may do, and the audit trail.

A request authenticates with an API token (``Authorization: Bearer prg_...``) or a browser
session cookie; a session's state-changing requests must also carry its CSRF token in the
``X-CSRF-Token`` header. ``require(PERMISSION)`` is the only way a route gets a principal, so no
route can forget to authorise, and ``Audit.record`` writes every state change with who, when,
from where, what, on which target and with which parameters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, Request

from peregrine.auth.accounts import Accounts, Principal
from peregrine.auth.audit import AuditLog

if TYPE_CHECKING:
    from peregrine.server.app import Server

SESSION_COOKIE = "peregrine_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class ApiContext:
    """Everything routes need, attached to the app at creation (``app.state.ctx``)."""

    server: Server
    accounts: Accounts
    audit: AuditLog


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
        unsafe = request.method not in _SAFE_METHODS
        if (
            principal is not None
            and unsafe
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

    def __init__(self, request: Request, principal: Principal) -> None:
        self.ctx = context(request)
        self.principal = principal
        self.address = request.client.host if request.client else None

    async def record(
        self,
        action: str,
        *,
        target: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        result: str = "ok",
        reason: str | None = None,
    ) -> None:
        await asyncio.to_thread(
            self.ctx.audit.record,
            self.principal,
            action,
            target=target,
            address=self.address,
            parameters=parameters,
            result=result,
            reason=reason,
        )
