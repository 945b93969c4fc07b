"""Browser sessions: a secure cookie, CSRF protection for changes, logout, wrong passwords."""

from __future__ import annotations

import time
from http.cookies import SimpleCookie

import pytest

from peregrine.api.deps import CSRF_HEADER, SESSION_COOKIE
from tests.api.conftest import PASSWORD, Live


@pytest.fixture(scope="module")
def user(live: Live) -> str:
    live.make_user("sally", ["investigator"], password=PASSWORD)
    return "sally"


def login(live: Live, name: str, password: str = PASSWORD) -> tuple[str, str, SimpleCookie]:
    """(session id, CSRF token, the parsed Set-Cookie)."""
    with live.http() as http:
        response = http.post("/auth/login", json={"username": name, "password": password})
    assert response.status_code == 200, response.text
    jar = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    body = response.json()
    assert body["name"] == name and body["credential"] == "session"
    return jar[SESSION_COOKIE].value, body["csrf_token"], jar


def cookie(session: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={session}"}


def test_login_sets_a_secure_http_only_strict_cookie(live: Live, user: str) -> None:
    session, csrf, jar = login(live, user)
    morsel = jar[SESSION_COOKIE]
    assert morsel["httponly"] is True
    assert morsel["secure"] is True
    assert morsel["samesite"].lower() == "strict"
    assert morsel["path"] == "/api"
    assert int(morsel["max-age"]) > 0
    assert len(session) >= 32 and len(csrf) >= 16 and session != csrf


def test_the_cookie_alone_authenticates_reads(live: Live, user: str) -> None:
    session, _, _ = login(live, user)
    with live.http() as http:
        me = http.get("/me", headers=cookie(session))
        assert me.status_code == 200
        assert me.json()["name"] == user and me.json()["credential"] == "session"
        # The CSRF token is given at login only, not to anything that merely holds the cookie.
        assert me.json()["csrf_token"] is None
        assert http.get("/clients", headers=cookie(session)).status_code == 200


def test_changes_need_the_csrf_token(live: Live, user: str) -> None:
    session, csrf, _ = login(live, user)
    body = {"add": ["csrf-test"]}
    path = f"/clients/{live.client_id}/labels"
    with live.http() as http:
        missing = http.post(path, json=body, headers=cookie(session))
        assert missing.status_code == 403
        assert CSRF_HEADER in missing.json()["detail"]
        wrong = http.post(path, json=body, headers={**cookie(session), CSRF_HEADER: csrf + "x"})
        assert wrong.status_code == 403
        labels = live.server.datastore.clients.get(live.client_id).labels  # type: ignore[union-attr]
        assert "csrf-test" not in labels
        right = http.post(path, json=body, headers={**cookie(session), CSRF_HEADER: csrf})
        assert right.status_code == 200, right.text
        assert "csrf-test" in right.json()
        # DELETE is a change too.
        token_id = live.server.accounts.create_token(user, "x").record.token_id
        assert http.delete(f"/tokens/{token_id}", headers=cookie(session)).status_code == 403
        revoked = http.delete(f"/tokens/{token_id}", headers={**cookie(session), CSRF_HEADER: csrf})
        assert revoked.status_code == 204


def test_a_csrf_token_belongs_to_its_session(live: Live, user: str) -> None:
    session_a, _, _ = login(live, user)
    _, csrf_b, _ = login(live, user)
    with live.http() as http:
        crossed = http.post(
            "/me/tokens", json={"name": "x"}, headers={**cookie(session_a), CSRF_HEADER: csrf_b}
        )
    assert crossed.status_code == 403


def test_logout_ends_the_session(live: Live, user: str) -> None:
    session, csrf, _ = login(live, user)
    other, _, _ = login(live, user)
    with live.http() as http:
        # Logging out is a change: without the CSRF token a foreign page cannot do it either.
        assert http.post("/auth/logout", headers=cookie(session)).status_code == 403
        out = http.post("/auth/logout", headers={**cookie(session), CSRF_HEADER: csrf})
        assert out.status_code == 204
        cleared = SimpleCookie()
        cleared.load(out.headers["set-cookie"])
        assert cleared[SESSION_COOKIE].value == "" or cleared[SESSION_COOKIE]["max-age"] == "0"
        after = http.get("/me", headers=cookie(session))
        assert after.status_code == 401
        # Only that session ended.
        assert http.get("/me", headers=cookie(other)).status_code == 200


def test_wrong_password_is_refused_and_audited(live: Live, user: str) -> None:
    started = time.time()
    with live.http() as http:
        wrong = http.post("/auth/login", json={"username": user, "password": "not-it-at-all"})
        unknown = http.post("/auth/login", json={"username": "nobody-here", "password": "x1y2z3"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]  # which names exist stays secret
    [entry] = live.server.audit.query(
        actor=user, action="auth.login", result="refused", since=started - 1
    )
    assert entry.address == "127.0.0.1" and entry.reason
    assert "not-it-at-all" not in str(entry.parameters)
    lines = live.server.audit.path.read_text()  # type: ignore[union-attr]
    assert "not-it-at-all" not in lines and "x1y2z3" not in lines
    assert '"actor":"nobody-here"' in lines


def test_a_disabled_users_session_stops_working(live: Live) -> None:
    live.make_user("doomed", ["reader"], password=PASSWORD)
    session, _, _ = login(live, "doomed")
    with live.http() as http:
        assert http.get("/me", headers=cookie(session)).status_code == 200
        with live.http(live.tokens["administrator"]) as admin:
            assert admin.post("/users/doomed/disable").status_code == 200
        assert http.get("/me", headers=cookie(session)).status_code == 401
        again = http.post("/auth/login", json={"username": "doomed", "password": PASSWORD})
        assert again.status_code == 401


def test_a_bearer_token_needs_no_csrf_token(live: Live) -> None:
    """Tokens travel in a header a foreign page cannot set: no CSRF token is needed."""
    with live.http(live.tokens["analyst"]) as http:
        made = http.post("/me/tokens", json={"name": "script", "expires_in": 60})
    assert made.status_code == 201
    assert made.json()["token"].startswith("prg_")


def test_bad_credentials_are_401(live: Live) -> None:
    with live.http("prg_0123456789abcdef_" + "A" * 43) as http:
        assert http.get("/me").status_code == 401
    with live.http() as http:
        assert http.get("/me", headers=cookie("not-a-session")).status_code == 401
        revoked = live.server.accounts.create_token("reader-user", "short")
        live.server.accounts.revoke_token(revoked.record.token_id)
        refused = http.get("/me", headers={"Authorization": f"Bearer {revoked.token}"})
        assert refused.status_code == 401
