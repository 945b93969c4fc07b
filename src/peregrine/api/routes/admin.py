"""Logging in and out, the caller, users and tokens, the audit log, and server status."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from peregrine import __version__
from peregrine.api.deps import SESSION_COOKIE, Audit, authenticate, context, require
from peregrine.api.schemas import (
    MAX_INT,
    AuditEntry,
    Error,
    GrantIn,
    IssuedToken,
    LoginIn,
    Me,
    Status,
    Token,
    TokenIn,
    User,
    UserIn,
)
from peregrine.auth.accounts import AccountError, Principal, permissions_of
from peregrine.auth.password_pool import PoolBusy
from peregrine.auth.roles import READ_RESULTS, SERVER_ADMIN
from peregrine.datastore import DatastoreError, NotFound

router = APIRouter()
UserName = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
]
TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]


def user_out(record: Any) -> User:
    return User(
        name=record.name,
        roles=record.roles,
        permissions=record.permissions,
        effective_permissions=sorted(permissions_of(record)),
        created=record.created,
        disabled=record.disabled,
        last_login=record.last_login,
    )


def token_out(record: Any) -> Token:
    return Token.model_validate(record)


# -- sessions -------------------------------------------------------------------------------


#: What a refused-for-now login is documented to answer.
TOO_MANY: dict[int | str, dict[str, Any]] = {
    429: {
        "model": Error,
        "description": "Too many failed logins from this address or for this user, or too "
        "many logins at once: try again after the Retry-After header's seconds",
    }
}


@router.post(
    "/auth/login",
    response_model=Me,
    tags=["auth"],
    summary="Log in (browser session)",
    responses=TOO_MANY,
)
async def login(request: Request, body: LoginIn, response: Response) -> Me:
    """Sets a secure, HTTP-only session cookie; send the returned `csrf_token` as the
    `X-CSRF-Token` header on every state-changing request of this session. Failed logins are
    limited per address and per user name (429 with `Retry-After`)."""
    ctx = context(request)
    address = request.client.host if request.client else None
    audit = Audit(request, body.username)  # who they claim to be, until the password says so
    throttled = ctx.failed_logins.check(address, body.username)
    if throttled is not None:
        await audit.record("auth.login", result="refused", reason=throttled.reason)
        raise _too_many(throttled.reason, throttled.retry_after)
    try:
        session = await ctx.passwords.run(ctx.accounts.login, body.username, body.password, address)
    except PoolBusy as busy:
        await audit.record("auth.login", result="refused", reason=str(busy))
        raise _too_many(str(busy), busy.retry_after) from None
    if session is None:
        ctx.failed_logins.failed(address, body.username)
        await audit.record("auth.login", result="refused", reason="wrong user name or password")
        raise HTTPException(401, "wrong user name or password")
    ctx.failed_logins.succeeded(body.username)
    principal = await asyncio.to_thread(ctx.accounts.authenticate_session, session.session_id)
    assert principal is not None
    response.set_cookie(
        SESSION_COOKIE, session.session_id, httponly=True, secure=True, samesite="strict",
        max_age=int(session.record.expires - session.record.created), path="/api",
    )  # fmt: skip
    await Audit(request, principal).record("auth.login")
    return Me(
        name=principal.name,
        permissions=sorted(principal.permissions),
        credential=principal.credential,
        csrf_token=session.csrf_token,
    )


def _too_many(reason: str, retry_after: int) -> HTTPException:
    return HTTPException(429, reason, headers={"Retry-After": str(retry_after)})


@router.post("/auth/logout", status_code=204, tags=["auth"], summary="Log out")
async def logout(
    request: Request, response: Response, principal: Principal = Depends(authenticate)
) -> None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await asyncio.to_thread(context(request).accounts.end_session, cookie)
    response.delete_cookie(SESSION_COOKIE, path="/api")
    await Audit(request, principal).record("auth.logout")


@router.get("/me", response_model=Me, tags=["auth"], summary="Who am I")
async def me(principal: Principal = Depends(authenticate)) -> Me:
    return Me(
        name=principal.name,
        permissions=sorted(principal.permissions),
        credential=principal.credential,
    )


# -- users and tokens -----------------------------------------------------------------------


@router.get("/users", response_model=list[User], tags=["users"], summary="List users")
async def list_users(request: Request, _: Principal = Depends(require(SERVER_ADMIN))) -> list[User]:
    users = await asyncio.to_thread(context(request).accounts.list_users)
    return [user_out(u) for u in users]


@router.post(
    "/users",
    response_model=User,
    status_code=201,
    tags=["users"],
    summary="Add a user",
    responses=TOO_MANY,
)
async def add_user(
    request: Request, body: UserIn, principal: Principal = Depends(require(SERVER_ADMIN))
) -> User:
    ctx = context(request)
    audit = Audit(request, principal)
    try:
        # Hashing the password is argon2: on the password threads, like logins.
        record = await ctx.passwords.run(
            ctx.accounts.create_user, body.name, body.password, body.roles
        )
    except PoolBusy as busy:
        await audit.record("user.create", target=body.name, result="refused", reason=str(busy))
        raise _too_many(str(busy), busy.retry_after) from None
    except (AccountError, DatastoreError) as exc:
        await audit.record("user.create", target=body.name, result="refused", reason=str(exc))
        raise HTTPException(400, str(exc)) from None
    await audit.record("user.create", target=record.name, parameters={"roles": body.roles})
    return user_out(record)


@router.post(
    "/users/{name}/grant", response_model=User, tags=["users"], summary="Grant a role or permission"
)
async def grant(
    name: UserName,
    request: Request,
    body: GrantIn,
    principal: Principal = Depends(require(SERVER_ADMIN)),
) -> User:
    return await _change_user(request, principal, name, "grant", body.grant)


@router.post(
    "/users/{name}/revoke",
    response_model=User,
    tags=["users"],
    summary="Revoke a role or permission",
)
async def revoke(
    name: UserName,
    request: Request,
    body: GrantIn,
    principal: Principal = Depends(require(SERVER_ADMIN)),
) -> User:
    return await _change_user(request, principal, name, "revoke", body.grant)


@router.post("/users/{name}/disable", response_model=User, tags=["users"], summary="Disable a user")
async def disable(
    name: UserName, request: Request, principal: Principal = Depends(require(SERVER_ADMIN))
) -> User:
    return await _change_user(request, principal, name, "disable")


async def _change_user(
    request: Request, principal: Principal, name: str, action: str, *args: str
) -> User:
    accounts = context(request).accounts
    audit = Audit(request, principal)
    try:
        record = await asyncio.to_thread(getattr(accounts, action), name, *args)
    except (AccountError, DatastoreError) as exc:
        status = 404 if isinstance(exc, NotFound) else 400
        await audit.record(f"user.{action}", target=name, result="refused", reason=str(exc))
        raise HTTPException(status, str(exc)) from None
    await audit.record(
        f"user.{action}", target=name, parameters={"item": args[0]} if args else None
    )
    return user_out(record)


@router.get("/me/tokens", response_model=list[Token], tags=["tokens"], summary="My API tokens")
async def my_tokens(request: Request, principal: Principal = Depends(authenticate)) -> list[Token]:
    tokens = await asyncio.to_thread(context(request).accounts.list_tokens, principal.name)
    return [token_out(t) for t in tokens]


@router.post(
    "/me/tokens",
    response_model=IssuedToken,
    status_code=201,
    tags=["tokens"],
    summary="Make an API token",
)
async def make_token(
    request: Request, body: TokenIn, principal: Principal = Depends(authenticate)
) -> IssuedToken:
    """The token text is in this response only; Peregrine stores its hash."""
    if principal.name.startswith("local:"):
        raise HTTPException(400, "local principals cannot hold tokens")
    audit = Audit(request, principal)
    try:
        issued = await asyncio.to_thread(
            context(request).accounts.create_token, principal.name, body.name, body.expires_in
        )
    except AccountError as exc:  # a name of white space only, a user disabled meanwhile
        await audit.record("token.create", result="refused", reason=str(exc))
        raise HTTPException(400, str(exc)) from None
    await audit.record(
        "token.create", target=issued.record.token_id, parameters={"token_name": body.name}
    )
    return IssuedToken(token=issued.token, **token_out(issued.record).model_dump())


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"], summary="Revoke a token")
async def revoke_token(
    token_id: TokenId, request: Request, principal: Principal = Depends(authenticate)
) -> None:
    """Your own tokens; administrators can revoke anyone's."""
    accounts = context(request).accounts
    audit = Audit(request, principal)
    record = await asyncio.to_thread(accounts.get_token, token_id)
    refusal = None
    if record is None:
        refusal = HTTPException(404, f"no token {token_id}")
    elif record.username != principal.name and not principal.has(SERVER_ADMIN):
        refusal = HTTPException(403, "only administrators revoke other users' tokens")
    if refusal is not None:
        await audit.record("token.revoke", target=token_id, result="refused", reason=refusal.detail)
        raise refusal
    await asyncio.to_thread(accounts.revoke_token, token_id)
    await audit.record("token.revoke", target=token_id)


# -- audit and status -----------------------------------------------------------------------


@router.get("/audit", response_model=list[AuditEntry], tags=["audit"], summary="The audit log")
async def audit_log(
    request: Request,
    since: float | None = Query(None, ge=0),
    until: float | None = Query(None, ge=0),
    actor: str | None = Query(None, max_length=200),
    action: str | None = Query(None, max_length=200),
    target: str | None = Query(None, max_length=500),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_INT),
    _: Principal = Depends(require(SERVER_ADMIN)),
) -> list[AuditEntry]:
    entries = await asyncio.to_thread(
        context(request).audit.query, since=since, until=until, actor=actor, action=action,
        target=target, limit=limit, offset=offset,
    )  # fmt: skip
    return [AuditEntry.model_validate(e) for e in entries]


@router.get("/status", response_model=Status, tags=["status"], summary="Server status")
async def status(request: Request, _: Principal = Depends(require(READ_RESULTS))) -> Status:
    services = context(request).services
    in_flight = await asyncio.to_thread(services.datastore.collections.in_flight)
    running = await asyncio.to_thread(services.datastore.hunts.running, time.time())
    return Status(
        version=__version__,
        clients=len(services.client_index),
        connected=len(services.fleet.online()),
        flows_in_flight=len(in_flight),
        running_hunts=len(running),
        datastore=services.datastore.backend,
        leader=services.leader.is_leader,
        degraded=services.fleet.degraded(),
    )
