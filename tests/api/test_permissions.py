"""The permission matrix: every operation of the API, for every role and for no credentials.

``MATRIX`` names, for each operation of the OpenAPI document, the permission it needs and how
to build a valid request. An operation added to the API without an entry here fails
``test_every_operation_is_in_the_matrix``: every endpoint is covered by a permission test.
A role holding the permission must get through (a 2xx answer); one lacking it gets 403, and
that refusal is audited; without credentials the answer is 401.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from peregrine.api.app import create_app
from peregrine.auth.roles import (
    ACKNOWLEDGE_ALERTS,
    ANALYZE,
    ARTIFACT_WRITER,
    COLLECT_CLIENT,
    LABEL_CLIENT,
    READ_RESULTS,
    ROLES,
    SERVER_ADMIN,
    START_HUNT,
)
from tests.api.conftest import API, PASSWORD, Live, Objects

#: Needs no credentials at all.
PUBLIC = "PUBLIC"
#: Needs credentials, no particular permission.
ANYONE = "ANYONE"

_serial = itertools.count()


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None


Builder = Callable[[Objects, str | None], Call]


def _get(path: str, **params: Any) -> Builder:
    return lambda o, caller: Call("GET", path.format(o=o), params)


_NOTEBOOK_RIGHTS = frozenset({ANALYZE, READ_RESULTS})


def _a_notebook(o: Objects, owner: str) -> tuple[str, str]:
    """A shared notebook with one SQL cell, owned by ``owner``: (notebook id, cell id)."""
    made = o.live.server.services.notebooks.create(
        owner, _NOTEBOOK_RIGHTS, "matrix", shared=True,
        cells=[{"kind": "sql", "text": "SELECT 1 AS one"}],
    )  # fmt: skip
    return made.notebook_id, made.cells[0].cell_id


def _on_notebook(method: str, tail: str, body: Any = None, fresh: bool = False) -> Builder:
    """A request on the shared notebook, or on a fresh one of the caller's (deletions)."""
    shared: dict[str, tuple[str, str]] = {}

    def build(o: Objects, caller: str | None) -> Call:
        if fresh:
            notebook, cell = _a_notebook(o, caller or "matrix")
        else:
            if "ids" not in shared:
                shared["ids"] = _a_notebook(o, "matrix")
            notebook, cell = shared["ids"]
        return Call(method, f"/notebooks/{notebook}{tail.format(cell=cell)}", json=body)

    return build


def _notebook_export(o: Objects) -> dict[str, Any]:
    notebook, _cell = _a_notebook(o, "matrix")
    return o.live.server.services.notebooks.export_json(notebook, "matrix", _NOTEBOOK_RIGHTS)


def _assigned_then_unassign(o: Objects, caller: str | None) -> Call:
    """An event artifact assigned (to nobody: a label no client has) for this call to stop."""
    name = "Test.Ticks"
    o.live.server.datastore.events.assign(name, {}, ["none"], [], time.time(), "matrix")
    return Call("DELETE", f"/events/assignments/{name}")


def _timeline(o: Objects) -> list[dict[str, Any]]:
    """One source: the finished collection's rows (its text column holds no time: no rows)."""
    return [{"kind": "flow", "id": o.flow_id, "artifact": "Test.Upload", "time": "stored"}]


def _a_timeline(o: Objects, owner: str) -> str:
    made = o.live.server.services.timelines.create(
        owner, _NOTEBOOK_RIGHTS, "matrix", _timeline(o), shared=True
    )
    return made.timeline_id


def _on_timeline(method: str, tail: str, body: Any = None, fresh: bool = False) -> Builder:
    """A request on the shared timeline, or on a fresh one of the caller's (deletions)."""
    shared: dict[str, str] = {}

    def build(o: Objects, caller: str | None) -> Call:
        if fresh:
            timeline = _a_timeline(o, caller or "matrix")
        else:
            if "id" not in shared:
                shared["id"] = _a_timeline(o, "matrix")
            timeline = shared["id"]
        return Call(method, f"/timelines/{timeline}{tail}", json=body)

    return build


def _login(o: Objects, caller: str | None) -> Call:
    return Call("POST", "/auth/login", json={"username": "matrix-login", "password": PASSWORD})


def _new_user(o: Objects, caller: str | None) -> Call:
    return Call("POST", "/users", json={"name": f"new-{next(_serial)}", "roles": ["reader"]})


def _user_change(action: str, body: dict[str, str] | None) -> Builder:
    return lambda o, caller: Call("POST", f"/users/{o.fresh_user()}/{action}", json=body)


def _hunt_change(action: str, start: bool = False) -> Builder:
    return lambda o, caller: Call("POST", f"/hunts/{o.fresh_hunt(start)}/{action}")


def _delete_fresh_client(o: Objects, caller: str | None) -> Call:
    """An offline client enrolled for this call only (deleting it is the point)."""
    client_id = f"C.{next(_serial) + 0xD000_0000_0000_0000:016x}"
    o.live.server.datastore.clients.enroll(client_id, client_id.encode(), time.time())
    return Call("DELETE", f"/clients/{client_id}")


MATRIX_RULE = {
    "rule_id": "Test.MatrixRule",
    "artifacts": ["Test.Ticks"],
    "condition": "tick > 1000",
    "severity": "low",
}


def _stored_rule(o: Objects) -> str:
    """A rule in the datastore (saved again: a new version each time)."""
    o.live.server.services.alerting.rules.save(dict(MATRIX_RULE), "matrix")
    return str(MATRIX_RULE["rule_id"])


def _rule_call(action: str) -> Builder:
    return lambda o, c: Call("POST", f"/rules/{_stored_rule(o)}/{action}")


def _new_rule(o: Objects, caller: str | None) -> Call:
    return Call("POST", "/rules", json={**MATRIX_RULE, "rule_id": f"Test.M{next(_serial)}"})


def _revoke_own_token(o: Objects, caller: str | None) -> Call:
    owner = caller or "administrator-user"
    token_id = o.live.server.accounts.create_token(owner, "doomed").record.token_id
    return Call("DELETE", f"/tokens/{token_id}")


#: (method, path as in the OpenAPI document) -> (permission needed, request builder).
MATRIX: dict[tuple[str, str], tuple[str, Builder]] = {
    # clients
    ("GET", "/clients"): (READ_RESULTS, _get("/clients", q="os:linux")),
    ("GET", "/clients/{client_id}"): (READ_RESULTS, _get("/clients/{o.client_id}")),
    ("POST", "/clients/{client_id}/labels"): (
        LABEL_CLIENT,
        lambda o, c: Call("POST", f"/clients/{o.client_id}/labels", json={"add": ["matrix"]}),
    ),
    ("DELETE", "/clients/{client_id}"): (SERVER_ADMIN, _delete_fresh_client),
    # collections
    ("POST", "/collections"): (
        COLLECT_CLIENT,
        lambda o, c: Call(
            "POST",
            "/collections",
            json={"client_id": o.client_id, "artifacts": [{"name": "Test.Numbers"}]},
        ),
    ),
    ("GET", "/clients/{client_id}/collections"): (
        READ_RESULTS,
        _get("/clients/{o.client_id}/collections"),
    ),
    ("GET", "/collections/{flow_id}"): (READ_RESULTS, _get("/collections/{o.flow_id}")),
    ("POST", "/collections/{flow_id}/cancel"): (
        COLLECT_CLIENT,
        lambda o, c: Call("POST", f"/collections/{o.flow_id}/cancel"),
    ),
    ("GET", "/collections/{flow_id}/logs"): (READ_RESULTS, _get("/collections/{o.flow_id}/logs")),
    ("GET", "/collections/{flow_id}/results"): (
        READ_RESULTS,
        _get("/collections/{o.flow_id}/results", artifact="Test.Upload"),
    ),
    ("GET", "/collections/{flow_id}/export"): (
        READ_RESULTS,
        _get("/collections/{o.flow_id}/export", artifact="Test.Upload", format="jsonl"),
    ),
    ("GET", "/collections/{flow_id}/uploads"): (
        READ_RESULTS,
        _get("/collections/{o.flow_id}/uploads"),
    ),
    ("GET", "/collections/{flow_id}/uploads/{upload_id}"): (
        READ_RESULTS,
        _get("/collections/{o.flow_id}/uploads/{o.upload_id}"),
    ),
    ("GET", "/fleet/events"): (READ_RESULTS, _get("/fleet/events", limit=1)),
    ("GET", "/collections/{flow_id}/events"): (
        READ_RESULTS,
        _get("/collections/{o.flow_id}/events"),
    ),
    # the file browser
    ("GET", "/clients/{client_id}/vfs"): (
        READ_RESULTS,
        lambda o, c: Call("GET", f"/clients/{o.client_id}/vfs", {"path": "/"}),
    ),
    ("GET", "/clients/{client_id}/vfs/file"): (
        READ_RESULTS,
        lambda o, c: Call("GET", f"/clients/{o.client_id}/vfs/file", {"path": "/etc/hostname"}),
    ),
    ("POST", "/clients/{client_id}/vfs/list"): (
        COLLECT_CLIENT,
        lambda o, c: Call("POST", f"/clients/{o.client_id}/vfs/list", json={"path": "/etc"}),
    ),
    ("POST", "/clients/{client_id}/vfs/download"): (
        COLLECT_CLIENT,
        lambda o, c: Call(
            "POST", f"/clients/{o.client_id}/vfs/download", json={"path": "/etc/hostname"}
        ),
    ),
    # hunts
    ("POST", "/hunts"): (
        START_HUNT,
        lambda o, c: Call(
            "POST",
            "/hunts",
            json={"artifacts": [{"name": "Test.Numbers"}], "include_labels": ["nobody"]},
        ),
    ),
    ("GET", "/hunts"): (READ_RESULTS, _get("/hunts")),
    ("GET", "/hunts/{hunt_id}"): (READ_RESULTS, _get("/hunts/{o.hunt_id}")),
    ("POST", "/hunts/{hunt_id}/start"): (START_HUNT, _hunt_change("start")),
    ("POST", "/hunts/{hunt_id}/pause"): (START_HUNT, _hunt_change("pause", start=True)),
    ("POST", "/hunts/{hunt_id}/stop"): (START_HUNT, _hunt_change("stop", start=True)),
    ("POST", "/hunts/{hunt_id}/archive"): (START_HUNT, _hunt_change("archive")),
    ("POST", "/hunts/{hunt_id}/clients/{client_id}"): (
        START_HUNT,
        lambda o, c: Call("POST", f"/hunts/{o.fresh_hunt()}/clients/{o.client_id}"),
    ),
    ("GET", "/hunts/{hunt_id}/stats"): (READ_RESULTS, _get("/hunts/{o.hunt_id}/stats")),
    ("GET", "/hunts/{hunt_id}/clients"): (READ_RESULTS, _get("/hunts/{o.hunt_id}/clients")),
    ("GET", "/hunts/{hunt_id}/results"): (
        READ_RESULTS,
        _get("/hunts/{o.hunt_id}/results", artifact="Test.Numbers"),
    ),
    ("GET", "/hunts/{hunt_id}/export"): (
        READ_RESULTS,
        _get("/hunts/{o.hunt_id}/export", artifact="Test.Numbers", format="csv"),
    ),
    ("GET", "/hunts/{hunt_id}/events"): (READ_RESULTS, _get("/hunts/{o.hunt_id}/events")),
    # artifacts
    ("GET", "/artifacts"): (READ_RESULTS, _get("/artifacts", search="users")),
    ("GET", "/artifacts/{name}"): (READ_RESULTS, _get("/artifacts/Test.Numbers")),
    ("GET", "/artifacts/{name}/yaml"): (READ_RESULTS, _get("/artifacts/Test.Numbers/yaml")),
    ("POST", "/artifacts/check"): (
        READ_RESULTS,
        lambda o, c: Call("POST", "/artifacts/check", json={"yaml": _custom_artifact()}),
    ),
    ("PUT", "/artifacts"): (
        ARTIFACT_WRITER,
        lambda o, c: Call("PUT", "/artifacts", json={"yaml": _custom_artifact()}),
    ),
    # sessions, users, tokens
    ("POST", "/auth/login"): (PUBLIC, _login),
    ("POST", "/auth/logout"): (ANYONE, lambda o, c: Call("POST", "/auth/logout")),
    ("GET", "/me"): (ANYONE, _get("/me")),
    ("GET", "/users"): (SERVER_ADMIN, _get("/users")),
    ("POST", "/users"): (SERVER_ADMIN, _new_user),
    ("POST", "/users/{name}/grant"): (SERVER_ADMIN, _user_change("grant", {"grant": "analyst"})),
    ("POST", "/users/{name}/revoke"): (SERVER_ADMIN, _user_change("revoke", {"grant": "reader"})),
    ("POST", "/users/{name}/disable"): (SERVER_ADMIN, _user_change("disable", None)),
    ("GET", "/me/tokens"): (ANYONE, _get("/me/tokens")),
    ("POST", "/me/tokens"): (
        ANYONE,
        lambda o, c: Call("POST", "/me/tokens", json={"name": "matrix", "expires_in": 60}),
    ),
    ("DELETE", "/tokens/{token_id}"): (ANYONE, _revoke_own_token),
    # analysis
    ("POST", "/analysis"): (
        ANALYZE,
        lambda o, c: Call(
            "POST", "/analysis", json={"sql": f"SELECT * FROM flow('{o.flow_id}', 'Test.Upload')"}
        ),
    ),
    # notebooks (the shared one: every role that reads or edits may; deletions: the caller's)
    ("GET", "/notebooks"): (READ_RESULTS, _get("/notebooks")),
    ("POST", "/notebooks"): (ANALYZE, lambda o, c: Call("POST", "/notebooks", json={"title": "m"})),
    ("POST", "/notebooks/import"): (
        ANALYZE,
        lambda o, c: Call("POST", "/notebooks/import", json=_notebook_export(o)),
    ),
    ("GET", "/notebooks/{notebook_id}"): (READ_RESULTS, _on_notebook("GET", "")),
    ("PATCH", "/notebooks/{notebook_id}"): (ANALYZE, _on_notebook("PATCH", "", {"title": "t"})),
    ("DELETE", "/notebooks/{notebook_id}"): (ANALYZE, _on_notebook("DELETE", "", fresh=True)),
    ("POST", "/notebooks/{notebook_id}/cells"): (
        ANALYZE,
        _on_notebook("POST", "/cells", {"kind": "markdown", "text": "m"}),
    ),
    ("PATCH", "/notebooks/{notebook_id}/cells/{cell_id}"): (
        ANALYZE,
        _on_notebook("PATCH", "/cells/{cell}", {"chart": {"type": "table"}}),
    ),
    ("DELETE", "/notebooks/{notebook_id}/cells/{cell_id}"): (
        ANALYZE,
        _on_notebook("DELETE", "/cells/{cell}", fresh=True),
    ),
    ("POST", "/notebooks/{notebook_id}/run"): (ANALYZE, _on_notebook("POST", "/run", {})),
    ("GET", "/notebooks/{notebook_id}/cells/{cell_id}/result"): (
        READ_RESULTS,
        _on_notebook("GET", "/cells/{cell}/result"),
    ),
    ("GET", "/notebooks/{notebook_id}/export"): (READ_RESULTS, _on_notebook("GET", "/export")),
    # timelines (the shared one; deletions: the caller's)
    ("GET", "/timelines"): (READ_RESULTS, _get("/timelines")),
    ("POST", "/timelines"): (
        ANALYZE,
        lambda o, c: Call("POST", "/timelines", json={"title": "m", "sources": _timeline(o)}),
    ),
    ("GET", "/timelines/{timeline_id}"): (READ_RESULTS, _on_timeline("GET", "")),
    ("PATCH", "/timelines/{timeline_id}"): (ANALYZE, _on_timeline("PATCH", "", {"title": "t"})),
    ("DELETE", "/timelines/{timeline_id}"): (ANALYZE, _on_timeline("DELETE", "", fresh=True)),
    ("GET", "/timelines/{timeline_id}/rows"): (ANALYZE, _on_timeline("GET", "/rows")),
    ("GET", "/timelines/{timeline_id}/export"): (ANALYZE, _on_timeline("GET", "/export")),
    # audit and status
    ("GET", "/audit"): (SERVER_ADMIN, _get("/audit", limit=5)),
    ("GET", "/status"): (READ_RESULTS, _get("/status")),
    # alerts and rules
    ("GET", "/alerts"): (READ_RESULTS, _get("/alerts", limit=5)),
    ("GET", "/alerts/{alert_id}"): (
        READ_RESULTS,
        lambda o, c: Call("GET", f"/alerts/{o.fresh_alert()}"),
    ),
    ("POST", "/alerts/{alert_id}/acknowledge"): (
        ACKNOWLEDGE_ALERTS,
        lambda o, c: Call("POST", f"/alerts/{o.fresh_alert()}/acknowledge", json={}),
    ),
    ("GET", "/rules"): (READ_RESULTS, _get("/rules")),
    ("GET", "/rules/{rule_id}"): (
        READ_RESULTS,
        lambda o, c: Call("GET", f"/rules/{_stored_rule(o)}"),
    ),
    ("POST", "/rules"): (SERVER_ADMIN, _new_rule),
    ("POST", "/rules/{rule_id}/enable"): (SERVER_ADMIN, _rule_call("enable")),
    ("POST", "/rules/{rule_id}/disable"): (SERVER_ADMIN, _rule_call("disable")),
    ("POST", "/rules/test"): (
        ANALYZE,
        lambda o, c: Call("POST", "/rules/test", json={"rule_id": _stored_rule(o), "since": 0}),
    ),
    # event monitoring
    ("GET", "/events/assignments"): (READ_RESULTS, _get("/events/assignments")),
    ("POST", "/events/assignments"): (
        START_HUNT,
        lambda o, c: Call(
            "POST", "/events/assignments", json={"artifact": "Test.Ticks", "labels": ["none"]}
        ),
    ),
    ("DELETE", "/events/assignments/{artifact}"): (START_HUNT, _assigned_then_unassign),
    ("GET", "/events/status"): (READ_RESULTS, _get("/events/status")),
    ("GET", "/events/clients/{client_id}/{artifact}"): (
        READ_RESULTS,
        _get("/events/clients/{o.client_id}/Test.Ticks"),
    ),
    ("GET", "/events/clients/{client_id}/{artifact}/export"): (
        READ_RESULTS,
        _get("/events/clients/{o.client_id}/Test.Ticks/export", format="jsonl"),
    ),
    ("GET", "/events/follow"): (READ_RESULTS, _get("/events/follow", seconds=0.2)),
}


def _custom_artifact() -> str:
    return (
        "name: Custom.Matrix\n"
        "description: An artifact added by the permission tests.\n"
        "sources:\n"
        "  - query: SELECT 1 AS one\n"
    )


def allowed(permission: str, role: str | None) -> bool:
    if permission == PUBLIC:
        return True
    if role is None:
        return False
    return permission == ANYONE or permission in ROLES[role]


def operations() -> set[tuple[str, str]]:
    """Every operation of the OpenAPI document, paths relative to /api/v1."""
    document = create_app(None, None, None).openapi()  # type: ignore[arg-type]
    found = set()
    for path, item in document["paths"].items():
        assert path.startswith(API), path
        for method in item:
            found.add((method.upper(), path[len(API) :]))
    return found


#: Routes outside /api/v1, public by design: the balancer's health checks (read-only).
UNVERSIONED = {("GET", "/healthz"), ("GET", "/readyz")}
#: Routes outside /api/v1 that need a permission, each checked for every role by its own test
#: (``tests/api/test_metrics_api.py::test_only_roles_with_read_metrics_may_scrape``).
GUARDED_UNVERSIONED = {("GET", "/metrics")}


def routes() -> set[tuple[str, str]]:
    """Every API route the app serves, documented or not (a route hidden from the OpenAPI
    document must not escape the matrix either)."""
    app = create_app(None, None, None)  # type: ignore[arg-type]
    found = set()
    for context in iter_route_contexts(app.routes):
        if isinstance(context.route, APIRoute):
            methods = {(m, context.path) for m in context.methods or ()}
            if methods <= UNVERSIONED | GUARDED_UNVERSIONED:
                continue
            assert context.path.startswith(API), context.path
            found |= {(m, context.path[len(API) :]) for m in context.methods or ()}
    return found


def test_every_operation_is_in_the_matrix() -> None:
    assert routes() == operations()
    documented = operations()
    missing = sorted(documented - MATRIX.keys())
    assert not missing, f"operations without a permission-matrix entry: {missing}"
    stale = sorted(MATRIX.keys() - documented)
    assert not stale, f"matrix entries for operations the API no longer has: {stale}"


CASES = sorted(MATRIX)
CALLERS: list[str | None] = [*ROLES, None]


def _send(live: Live, token: str | None, call: Call) -> Any:
    with live.http(token) as http:
        return http.request(call.method, call.path, params=call.params, json=call.json)


@pytest.mark.parametrize("caller", CALLERS, ids=lambda r: r or "anonymous")
def test_permission_matrix(live: Live, objects: Objects, caller: str | None) -> None:
    """For one caller, every operation: allowed ones succeed, the others are refused."""
    token = live.tokens[caller] if caller else None
    user = f"{caller}-user" if caller else None
    failures = []
    for method, path in CASES:
        permission, build = MATRIX[(method, path)]
        call = build(objects, user)
        started = time.time()
        response = _send(live, token, call)
        status = response.status_code
        if allowed(permission, caller):
            if not 200 <= status < 300:
                failures.append(f"{method} {path}: allowed, got {status} {response.text[:200]}")
        elif caller is None:
            if status != 401 or response.headers.get("www-authenticate") != "Bearer":
                failures.append(f"{method} {path}: anonymous, got {status} (want 401)")
        else:
            if status != 403:
                failures.append(f"{method} {path}: {caller} lacks {permission}, got {status}")
                continue
            entries = live.server.audit.query(
                actor=user, action=f"permission.denied.{method.lower()}", since=started - 1
            )
            if not any(e.target == API + call.path and e.result == "refused" for e in entries):
                failures.append(f"{method} {path}: the refusal of {caller} was not audited")
    assert not failures, "\n".join(failures)


def test_matrix_is_not_trivial() -> None:
    """Each role is refused something and allowed something (so the matrix can fail)."""
    for role in ROLES:
        outcomes = {allowed(permission, role) for permission, _ in MATRIX.values()}
        if role == "administrator":
            assert outcomes == {True}
        else:
            assert outcomes == {True, False}, role


def test_only_owners_and_administrators_revoke_a_token(live: Live) -> None:
    accounts = live.server.accounts
    victim = accounts.create_token("reader-user", "victim").record.token_id
    with live.http(live.tokens["investigator"]) as http:
        refused = http.delete(f"/tokens/{victim}")
    assert refused.status_code == 403
    assert accounts.get_token(victim).revoked is None  # type: ignore[union-attr]
    with live.http(live.tokens["administrator"]) as http:
        assert http.delete(f"/tokens/{victim}").status_code == 204
        assert http.delete("/tokens/0123456789abcdef").status_code == 404
    assert accounts.get_token(victim).revoked is not None  # type: ignore[union-attr]


EXECVE_CALL = {"name": "Linux.Sys.Execve", "parameters": {"Argv": ["/bin/true"]}}


@pytest.mark.parametrize("kind", ["collection", "hunt"])
def test_execve_artifacts_need_the_execve_permission(live: Live, kind: str) -> None:
    """An investigator (no EXECVE) may not schedule an artifact requiring EXECVE; an
    administrator may. The refusal is audited with the reason."""
    if kind == "collection":
        path, body = "/collections", {"client_id": live.client_id, "artifacts": [EXECVE_CALL]}
    else:
        path, body = "/hunts", {"artifacts": [EXECVE_CALL], "include_labels": ["nobody"]}
    started = time.time()
    with live.http(live.tokens["investigator"]) as http:
        refused = http.post(path, json=body)
    assert refused.status_code == 400, refused.text
    assert "EXECVE" in refused.json()["detail"]
    [entry] = live.server.audit.query(
        actor="investigator-user", action=f"{kind}.create", since=started - 1
    )
    assert entry.result == "refused" and "EXECVE" in (entry.reason or "")
    assert entry.parameters is not None
    assert entry.parameters["artifacts"][0]["name"] == "Linux.Sys.Execve"
    with live.http(live.tokens["administrator"]) as http:
        accepted = http.post(path, json=body)
    assert accepted.status_code == 201, accepted.text
    if kind == "collection":
        flow = accepted.json()
        done = live.run(live.server.wait_for_flow(flow["flow_id"], ["Finished", "Error"], 60))
        assert done.state == "Finished", done.error
