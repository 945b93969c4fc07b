"""The audit trail of the API: every state change (and every read of bulk data) is recorded
with who, from where, what, on which target and with which parameters; secrets never are.
The entries are queryable through ``GET /audit`` and written to ``<data_dir>/audit.jsonl``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from peregrine.auth.audit import default_audit_path
from tests.api.conftest import PASSWORD, Live, Objects
from tests.api.test_permissions import MATRIX

#: The action each state-changing operation records; GETs that hand out bulk data are audited
#: too. ``POST /artifacts/check`` changes nothing and is deliberately absent.
AUDITED: dict[tuple[str, str], str] = {
    ("POST", "/clients/{client_id}/labels"): "client.label",
    ("DELETE", "/clients/{client_id}"): "client.delete",
    ("POST", "/collections"): "collection.create",
    ("POST", "/collections/{flow_id}/cancel"): "collection.cancel",
    ("POST", "/clients/{client_id}/vfs/list"): "vfs.list",
    ("POST", "/clients/{client_id}/vfs/download"): "vfs.download",
    ("GET", "/collections/{flow_id}/uploads/{upload_id}"): "upload.download",
    ("POST", "/hunts"): "hunt.create",
    ("POST", "/hunts/{hunt_id}/start"): "hunt.start",
    ("POST", "/hunts/{hunt_id}/pause"): "hunt.pause",
    ("POST", "/hunts/{hunt_id}/stop"): "hunt.stop",
    ("POST", "/hunts/{hunt_id}/archive"): "hunt.archive",
    ("POST", "/hunts/{hunt_id}/clients/{client_id}"): "hunt.add_client",
    ("GET", "/hunts/{hunt_id}/export"): "hunt.export",
    ("GET", "/collections/{flow_id}/export"): "collection.export",
    ("PUT", "/artifacts"): "artifact.put",
    ("POST", "/auth/login"): "auth.login",
    ("POST", "/auth/logout"): "auth.logout",
    ("POST", "/users"): "user.create",
    ("POST", "/users/{name}/grant"): "user.grant",
    ("POST", "/users/{name}/revoke"): "user.revoke",
    ("POST", "/users/{name}/disable"): "user.disable",
    ("POST", "/me/tokens"): "token.create",
    ("DELETE", "/tokens/{token_id}"): "token.revoke",
    ("POST", "/analysis"): "analysis.query",
    ("POST", "/events/assignments"): "events.assign",
    ("DELETE", "/events/assignments/{artifact}"): "events.unassign",
    ("POST", "/alerts/{alert_id}/acknowledge"): "alert.acknowledge",
    ("POST", "/rules"): "rule.save",
    ("POST", "/rules/test"): "rule.test",
    ("POST", "/rules/{rule_id}/enable"): "rule.enable",
    ("POST", "/rules/{rule_id}/disable"): "rule.disable",
    ("POST", "/notebooks"): "notebook.create",
    ("POST", "/notebooks/import"): "notebook.import",
    ("PATCH", "/notebooks/{notebook_id}"): "notebook.update",
    ("DELETE", "/notebooks/{notebook_id}"): "notebook.delete",
    ("POST", "/notebooks/{notebook_id}/cells"): "notebook.cell.add",
    ("PATCH", "/notebooks/{notebook_id}/cells/{cell_id}"): "notebook.cell.edit",
    ("DELETE", "/notebooks/{notebook_id}/cells/{cell_id}"): "notebook.cell.delete",
    ("POST", "/notebooks/{notebook_id}/run"): "notebook.run",
    ("POST", "/timelines"): "timeline.create",
    ("PATCH", "/timelines/{timeline_id}"): "timeline.update",
    ("DELETE", "/timelines/{timeline_id}"): "timeline.delete",
}
NOT_STATE_CHANGING = {("POST", "/artifacts/check")}


def test_every_state_changing_operation_is_listed() -> None:
    changing = {op for op in MATRIX if op[0] != "GET"}
    assert changing - NOT_STATE_CHANGING <= AUDITED.keys(), sorted(
        changing - NOT_STATE_CHANGING - AUDITED.keys()
    )
    assert AUDITED.keys() <= MATRIX.keys()


def file_entries(live: Live) -> list[dict[str, Any]]:
    path = default_audit_path(live.server.config.data_dir)
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("method", "path"), sorted(AUDITED), ids=lambda v: str(v))
def test_each_change_is_audited(live: Live, objects: Objects, method: str, path: str) -> None:
    _, build = MATRIX[(method, path)]
    call = build(objects, "administrator-user")
    started = time.time()
    with live.http(live.tokens["administrator"]) as http:
        response = http.request(method, call.path, params=call.params, json=call.json)
    assert 200 <= response.status_code < 300, response.text
    action = AUDITED[(method, path)]
    actor = "matrix-login" if action == "auth.login" else "administrator-user"
    entries = live.server.audit.query(actor=actor, action=action, since=started - 1)
    assert entries, f"{method} {path} left no {action} entry"
    entry = entries[0]
    assert entry.address == "127.0.0.1"
    assert entry.credential
    if not action.startswith("auth."):  # logging in and out acts on the actor itself
        assert entry.target, f"{action} names no target"
    # The same entry through the API (SERVER_ADMIN) and in the JSON-lines file.
    with live.http(live.tokens["administrator"]) as http:
        listed = http.get("/audit", params={"actor": actor, "action": action, "since": started - 1})
    assert listed.status_code == 200
    assert any(
        e["target"] == entry.target and e["time"] == entry.time and e["address"] == "127.0.0.1"
        for e in listed.json()
    )
    [line] = [e for e in file_entries(live) if e["audit_id"] == entry.audit_id]
    assert (line["actor"], line["action"], line["target"]) == (actor, action, entry.target)
    assert line["parameters"] == entry.parameters


def test_parameters_are_recorded(live: Live) -> None:
    body = {
        "client_id": live.client_id,
        "artifacts": [{"name": "Test.Numbers", "parameters": {"N": 7}}],
        "limits": {"max_rows": 5},
    }
    started = time.time()
    with live.http(live.tokens["investigator"]) as http:
        flow = http.post("/collections", json=body).json()
    [entry] = live.server.audit.query(
        actor="investigator-user", action="collection.create", since=started - 1
    )
    assert entry.target == f"{live.client_id}/{flow['flow_id']}"
    assert entry.parameters is not None
    assert entry.parameters["artifacts"] == [{"name": "Test.Numbers", "parameters": {"N": 7}}]
    assert entry.parameters["limits"]["max_rows"] == 5


def test_secrets_are_never_stored(live: Live) -> None:
    secret_password = "Tr0ub4dor&3-very-secret"
    with live.http(live.tokens["administrator"]) as http:
        made = http.post(
            "/users", json={"name": "pat", "roles": ["reader"], "password": secret_password}
        )
        assert made.status_code == 201, made.text
        token = http.post("/me/tokens", json={"name": "ci"}).json()["token"]
    with live.http() as http:
        logged = http.post("/auth/login", json={"username": "pat", "password": secret_password})
        assert logged.status_code == 200
        csrf = logged.json()["csrf_token"]
    session = logged.cookies.get("peregrine_session") or ""
    [created] = live.server.audit.query(action="user.create", target="pat")
    assert created.parameters == {"roles": ["reader"]}
    everything = repr(live.server.audit.query(limit=1000))
    text = default_audit_path(live.server.config.data_dir).read_text()
    for secret in (secret_password, token, token.rsplit("_", 1)[-1], csrf, session):
        assert secret and secret not in text
        assert secret not in everything


def test_the_audit_log_is_filtered_and_paged(live: Live) -> None:
    with live.http(live.tokens["administrator"]) as http:
        for label in ("p1", "p2", "p3"):
            http.post(f"/clients/{live.client_id}/labels", json={"add": [label]})
        page = http.get("/audit", params={"action": "client.label", "limit": 2}).json()
        rest = http.get("/audit", params={"action": "client.label", "limit": 2, "offset": 2})
        assert len(page) == 2 and rest.status_code == 200
        assert {e["action"] for e in page} == {"client.label"}
        # Newest first.
        assert page[0]["time"] >= page[1]["time"]
        assert page[0]["parameters"]["add"] == ["p3"]
        assert http.get("/audit", params={"limit": 1001}).status_code == 422
    with live.http(live.tokens["reader"]) as http:
        assert http.get("/audit").status_code == 403


def test_the_audit_file_is_owner_only(live: Live) -> None:
    path = Path(default_audit_path(live.server.config.data_dir))
    assert path.stat().st_mode & 0o077 == 0
    assert PASSWORD not in path.read_text()
