"""Every state-changing call, allowed or refused, leaves exactly one audit record.

Refusals used to escape the trail when no route code ran: no credentials (401), a session
cookie without its CSRF token (403), a body that does not validate (422), and some refusals
inside routes (a reader revoking another user's token, an unknown token). For every
state-changing operation of the app, each kind of refusal is sent and its record looked for.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from peregrine.api.deps import SESSION_COOKIE
from peregrine.auth.roles import ROLES
from tests.api.conftest import API, PASSWORD, Live, Objects
from tests.api.test_permissions import ANYONE, MATRIX, PUBLIC, Call, routes

CHANGING = sorted(op for op in routes() if op[0] not in {"GET", "HEAD", "OPTIONS"})
ADMIN = "refusal-admin"


def test_the_operations_are_enumerated_from_the_app() -> None:
    assert len(CHANGING) >= 15
    assert set(CHANGING) <= MATRIX.keys()


@pytest.fixture(scope="module")
def session(live: Live) -> str:
    """A browser session of an administrator (its cookie value)."""
    live.make_user(ADMIN, ["administrator"], password=PASSWORD)
    with live.http() as http:
        response = http.post("/auth/login", json={"username": ADMIN, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.cookies[SESSION_COOKIE])


def send(live: Live, call: Call, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    """Send ``call``; (status, the one audit entry it left). Fails unless there is one."""
    started = time.time()
    with live.http(token) as http:
        response = http.request(call.method, call.path, params=call.params, **kwargs)
    entries = [
        e for e in live.server.audit.query(since=started, limit=50) if e.address == "127.0.0.1"
    ]
    assert len(entries) == 1, (call.method, call.path, response.status_code, entries)
    return response.status_code, entries[0]


def body(call: Call) -> dict[str, Any]:
    return {} if call.json is None else {"json": call.json}


@pytest.mark.parametrize(("method", "path"), CHANGING, ids=lambda v: str(v))
def test_an_unauthenticated_call_is_recorded(
    live: Live, objects: Objects, method: str, path: str
) -> None:
    permission, build = MATRIX[(method, path)]
    call = build(objects, None)
    status, entry = send(live, call, **body(call))
    if permission == PUBLIC:  # logging in: recorded as the user it logged in
        assert status == 200 and entry.action == "auth.login" and entry.result == "ok"
        return
    assert status == 401
    assert (entry.actor, entry.action) == ("anonymous", f"request.{method.lower()}")
    assert entry.target == API + call.path
    assert entry.result == "refused" and entry.parameters["status"] == 401
    assert "authenticate with" in (entry.reason or "")


@pytest.mark.parametrize(("method", "path"), CHANGING, ids=lambda v: str(v))
def test_a_cookie_call_without_the_csrf_token_is_recorded(
    live: Live, objects: Objects, session: str, method: str, path: str
) -> None:
    permission, build = MATRIX[(method, path)]
    call = build(objects, ADMIN)
    cookie = {"Cookie": f"{SESSION_COOKIE}={session}"}
    status, entry = send(live, call, headers=cookie, **body(call))
    if permission == PUBLIC:  # logging in needs no session, so no CSRF token either
        assert status == 200 and entry.action == "auth.login"
        return
    assert status == 403
    assert entry.actor == ADMIN and entry.credential == "session"
    assert entry.target == API + call.path and entry.result == "refused"
    assert "X-CSRF-Token" in (entry.reason or "")


def refused_call(objects: Objects, method: str, path: str) -> tuple[Call, str | None, int]:
    """A call of this operation that is refused: by a role lacking its permission when there
    is one, else by what only that operation can refuse. (call, role, status expected)"""
    permission, build = MATRIX[(method, path)]
    lacking = [role for role, granted in ROLES.items() if permission not in granted]
    if permission not in (PUBLIC, ANYONE) and lacking:
        return build(objects, f"{lacking[0]}-user"), lacking[0], 403
    live = objects.live
    if (method, path) == ("DELETE", "/tokens/{token_id}"):  # another user's token
        token_id = live.server.accounts.create_token("analyst-user", "victim").record.token_id
        return Call("DELETE", f"/tokens/{token_id}"), "reader", 403
    if (method, path) == ("POST", "/auth/logout"):  # a revoked token
        issued = live.server.accounts.create_token("reader-user", "revoked")
        live.server.accounts.revoke_token(issued.record.token_id)
        live.tokens["revoked"] = issued.token
        return Call("POST", "/auth/logout"), "revoked", 401
    # The rest take a body: one that does not validate.
    assert build(objects, None).json is not None, (method, path)
    return Call(method, build(objects, "reader-user").path, json=["not", "an", "object"]), None, 422


@pytest.mark.parametrize(("method", "path"), CHANGING, ids=lambda v: str(v))
def test_a_refused_call_is_recorded(live: Live, objects: Objects, method: str, path: str) -> None:
    call, role, expected = refused_call(objects, method, path)
    token = live.tokens[role or "reader"]
    status, entry = send(live, call, token=token, **body(call))
    assert status == expected
    assert entry.result == "refused", entry
    assert entry.parameters.get("status", expected) == expected


def test_a_body_that_does_not_validate_is_recorded_with_why(live: Live) -> None:
    call = Call("POST", "/collections", json={"client_id": "nope", "artifacts": []})
    status, entry = send(live, call, token=live.tokens["administrator"], json=call.json)
    assert status == 422
    assert entry.actor == "administrator-user"
    assert (entry.action, entry.target) == ("request.post", f"{API}/collections")
    assert "client_id" in (entry.reason or "")


def test_an_unknown_path_or_method_is_recorded(live: Live) -> None:
    for call in (Call("POST", "/no-such-thing"), Call("DELETE", "/clients")):
        status, entry = send(live, call, token=live.tokens["reader"])
        assert status in (404, 405)
        assert entry.result == "refused" and entry.target == API + call.path


def test_token_revocations_refused_in_the_route_are_recorded(live: Live) -> None:
    accounts = live.server.accounts
    victim = accounts.create_token("analyst-user", "victim").record.token_id
    status, entry = send(live, Call("DELETE", f"/tokens/{victim}"), token=live.tokens["reader"])
    assert status == 403
    assert (entry.actor, entry.action, entry.target) == ("reader-user", "token.revoke", victim)
    assert entry.result == "refused" and "administrators" in (entry.reason or "")
    assert accounts.get_token(victim).revoked is None  # type: ignore[union-attr]
    unknown = "0123456789abcdef"
    status, entry = send(live, Call("DELETE", f"/tokens/{unknown}"), token=live.tokens["reader"])
    assert status == 404
    assert (entry.action, entry.target, entry.result) == ("token.revoke", unknown, "refused")


def test_a_token_name_of_white_space_only_is_refused_and_recorded(live: Live) -> None:
    """It passes the body's validation (one character or more) and the accounts refuse it:
    a 400 that says why, recorded as refused (it was a 500, found by the API fuzz test)."""
    for name in ("\t", " \x1c "):  # \x1c: white space to str.strip, not to a regex's \s
        call = Call("POST", "/me/tokens", json={"name": name})
        status, entry = send(live, call, token=live.tokens["reader"], **body(call))
        assert status == 400, name
        assert (entry.actor, entry.action, entry.result) == (
            "reader-user",
            "token.create",
            "refused",
        )
        assert "token name" in (entry.reason or "")
    assert all(t.name.strip() for t in live.server.accounts.list_tokens("reader-user"))


def test_allowed_calls_are_recorded_once(live: Live, objects: Objects) -> None:
    """The middleware adds no record to a call its route recorded; a call no route records
    (checking an artifact, which changes nothing) is recorded by the middleware."""
    for method, path in CHANGING:
        _, build = MATRIX[(method, path)]
        call = build(objects, "administrator-user")
        status, entry = send(live, call, token=live.tokens["administrator"], **body(call))
        assert 200 <= status < 300, (method, path, status)
        if (method, path) == ("POST", "/artifacts/check"):
            assert (entry.action, entry.result) == ("request.post", "ok")
        else:
            assert not entry.action.startswith("request."), entry
