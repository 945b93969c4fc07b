"""What the resources answer: collection results, logs and upload downloads, artifacts added
through the API, users and tokens managed through it, server status."""

from __future__ import annotations

import hashlib
import time

from peregrine.protocol.messages import MAX_MESSAGE_BYTES
from tests.api.conftest import Live, Objects


def test_a_collection_and_its_results_logs_and_upload(live: Live, objects: Objects) -> None:
    with live.http(live.tokens["reader"]) as http:
        flow = http.get(f"/collections/{objects.flow_id}").json()
        assert flow["state"] == "Finished" and flow["client_id"] == live.client_id
        listed = http.get(f"/clients/{live.client_id}/collections").json()
        assert objects.flow_id in {f["flow_id"] for f in listed}
        page = http.get(
            f"/collections/{objects.flow_id}/results", params={"artifact": "Test.Upload"}
        ).json()
        assert page["total"] == 1 and len(page["rows"]) == 1
        logs = http.get(f"/collections/{objects.flow_id}/logs").json()
        assert logs["total"] == len(logs["rows"])
        [upload] = http.get(f"/collections/{objects.flow_id}/uploads").json()
        download = http.get(f"/collections/{objects.flow_id}/uploads/{upload['upload_id']}")
    assert download.status_code == 200
    assert download.content == b"evidence " * 1000
    assert hashlib.sha256(download.content).hexdigest() == upload["sha256"]
    assert download.headers["x-content-sha256"] == upload["sha256"]
    assert "attachment" in download.headers["content-disposition"]


def test_missing_objects_are_404(live: Live, objects: Objects) -> None:
    with live.http(live.tokens["administrator"]) as http:
        for path in (
            "/clients/C.0000000000000000",
            "/collections/F.0000000000000000",
            f"/collections/{objects.flow_id}/uploads/nope",
            "/hunts/H.0000000000000000",
            "/hunts/H.0000000000000000/stats",
            "/artifacts/No.Such.Artifact",
        ):
            response = http.get(path)
            assert response.status_code == 404, path
            assert response.json()["detail"], path
        assert http.post("/users/nobody-here/grant", json={"grant": "reader"}).status_code == 404


def test_a_custom_artifact_is_checked_then_usable(live: Live) -> None:
    good = "name: Custom.Answer\ndescription: The answer.\nsources:\n  - query: SELECT 42 AS n\n"
    bad = "name: Custom.Broken\ndescription: x\nsources:\n  - query: SELEC 1\n"
    with live.http(live.tokens["investigator"]) as http:
        assert http.post("/artifacts/check", json={"yaml": good}).json() == []
        problems = http.post("/artifacts/check", json={"yaml": bad}).json()
        assert problems and problems[0]["severity"] == "error"
        refused = http.put("/artifacts", json={"yaml": bad})
        assert refused.status_code == 400
        assert http.get("/artifacts/Custom.Broken").status_code == 404
        [added] = http.put("/artifacts", json={"yaml": good}).json()
        assert added["name"] == "Custom.Answer"
        assert http.get("/artifacts/Custom.Answer").json()["name"] == "Custom.Answer"
        assert "Custom.Answer" in {a["name"] for a in http.get("/artifacts").json()}
        flow = http.post(
            "/collections",
            json={"client_id": live.client_id, "artifacts": [{"name": "Custom.Answer"}]},
        ).json()
    done = live.run(live.server.wait_for_flow(flow["flow_id"], ["Finished", "Error"], 60))
    assert done.state == "Finished"
    rows = live.server.filestore.read_rows(live.client_id, done.flow_id, "Custom.Answer", "", 0, 10)
    assert rows == [{"n": 42}]


def test_users_and_tokens_through_the_api(live: Live) -> None:
    with live.http(live.tokens["administrator"]) as admin:
        made = admin.post("/users", json={"name": "Quinn", "roles": ["reader"]})
        assert made.status_code == 201
        assert made.json()["name"] == "quinn"  # stored lower case
        assert admin.post("/users", json={"name": "quinn"}).status_code == 400  # exists
        assert admin.post("/users", json={"name": "x", "roles": ["boss"]}).status_code == 400
        granted = admin.post("/users/quinn/grant", json={"grant": "EXECVE"}).json()
        assert "EXECVE" in granted["effective_permissions"]
        # A permission held through a role cannot be revoked alone: the answer says why.
        refused = admin.post("/users/quinn/revoke", json={"grant": "READ_RESULTS"})
        assert refused.status_code == 400 and "reader" in refused.json()["detail"]
        revoked = admin.post("/users/quinn/revoke", json={"grant": "EXECVE"}).json()
        assert "EXECVE" not in revoked["effective_permissions"]
        assert "quinn" in {u["name"] for u in admin.get("/users").json()}
    token = live.server.accounts.create_token("quinn", "first").token
    with live.http(token) as quinn:
        me = quinn.get("/me").json()
        assert me["name"] == "quinn" and me["permissions"] == ["READ_RESULTS"]
        issued = quinn.post("/me/tokens", json={"name": "second", "expires_in": 3600}).json()
        assert issued["token"].startswith("prg_")
        listed = quinn.get("/me/tokens").json()
        assert {t["name"] for t in listed} == {"first", "second"}
        assert all("token" not in t for t in listed)  # shown once, never listed
        assert quinn.delete(f"/tokens/{issued['token_id']}").status_code == 204
    with live.http(issued["token"]) as revoked_client:
        assert revoked_client.get("/me").status_code == 401


def test_status(live: Live) -> None:
    with live.http(live.tokens["reader"]) as http:
        status = http.get("/status").json()
    assert status["clients"] >= 1 and status["connected"] >= 1
    assert status["datastore"] == "sqlite"
    assert status["leader"] is True and status["degraded"] == []  # one process: it leads


def test_requests_too_large_for_an_agent_are_refused_at_creation(live: Live) -> None:
    """A collection or hunt whose request could never be sent to an agent is a 400 naming the
    limit and the size, not a 201 that would cut the agent off."""
    oversized = [{"name": "Linux.Sys.Users", "parameters": {"UserRegex": "a" * MAX_MESSAGE_BYTES}}]
    limit = f"over the {MAX_MESSAGE_BYTES:,}-byte limit"
    with live.http(live.tokens["investigator"]) as http:
        before = http.get(f"/clients/{live.client_id}/collections").json()
        collection = http.post(
            "/collections", json={"client_id": live.client_id, "artifacts": oversized}
        )
        assert collection.status_code == 400, collection.text
        assert limit in collection.json()["detail"]
        assert "bytes" in collection.json()["detail"]
        hunt = http.post("/hunts", json={"artifacts": oversized})
        assert hunt.status_code == 400, hunt.text
        assert limit in hunt.json()["detail"]
        assert http.get(f"/clients/{live.client_id}/collections").json() == before


def test_a_collection_shows_when_it_expires(live: Live) -> None:
    body = {
        "client_id": live.client_id,
        "artifacts": [{"name": "Test.Numbers", "parameters": {"N": 1}}],
        "limits": {"expires_in": 3600},
    }
    with live.http(live.tokens["investigator"]) as http:
        made = http.post("/collections", json=body).json()
        assert made["expires"] == made["created"] + 3600
        assert http.get(f"/collections/{made['flow_id']}").json()["expires"] == made["expires"]
        body["limits"] = {"expires_in": 0}
        assert http.post("/collections", json=body).status_code == 422


def test_an_administrator_deletes_a_client(live: Live) -> None:
    """Offline: deleted with its collections (200, audited). Connected: 409 unless forced.
    Unknown: 404. The audit trail keeps every attempt."""
    server = live.server
    offline = "C.00000000000de1e7"
    server.datastore.clients.enroll(offline, b"retired key", time.time())
    waiting = live.run(server.collect(offline, [("Test.Numbers", {"N": 1})], "t"))
    started = time.time()
    with live.http(live.tokens["administrator"]) as http:
        deleted = http.delete(f"/clients/{offline}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {
            "client_id": offline,
            "flows": 1,
            "bytes_freed": 0,
            "was_connected": False,
        }
        assert http.get(f"/clients/{offline}").status_code == 404
        assert http.get(f"/collections/{waiting.flow_id}").status_code == 404
        assert http.delete(f"/clients/{offline}").status_code == 404
        connected = http.delete(f"/clients/{live.client_id}")
        assert connected.status_code == 409
        assert "force" in connected.json()["detail"]
        assert http.get(f"/clients/{live.client_id}").status_code == 200
    results = [
        (e.target, e.result)
        for e in server.audit.query(action="client.delete", since=started - 1)
        if e.actor == "administrator-user"
    ]
    assert sorted(results) == sorted(
        [(offline, "ok"), (offline, "refused"), (live.client_id, "refused")]
    )
