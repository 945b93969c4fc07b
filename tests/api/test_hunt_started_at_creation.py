"""A hunt created with ``start: true`` is Running from its first write: its client gets it
without a second request, and the audit log says both what was created and that it started."""

from __future__ import annotations

import time

from tests.api.conftest import Live


def test_a_hunt_created_started_runs_on_its_client_and_both_steps_are_audited(live: Live) -> None:
    body = {
        "artifacts": [{"name": "Test.Numbers", "parameters": {"N": 3}}],
        "client_limit": 1,
        "start": True,
    }
    began = time.time()
    with live.http(live.tokens["investigator"]) as http:
        created = http.post("/hunts", json=body)
        assert created.status_code == 201, created.text
        hunt = created.json()
        assert hunt["state"] == "Running" and hunt["started"] is not None
        deadline = time.monotonic() + 60
        while (stats := http.get(f"/hunts/{hunt['hunt_id']}/stats").json())["finished"] < 1:
            assert time.monotonic() < deadline, stats
            time.sleep(0.1)
        assert stats["rows"] == 3
        assert http.post(f"/hunts/{hunt['hunt_id']}/start").status_code == 409  # running
    for action in ("hunt.create", "hunt.start"):
        assert live.server.audit.query(
            actor="investigator-user", action=action, target=hunt["hunt_id"], result="ok",
            since=began - 1,
        ), action  # fmt: skip


def test_a_hunt_created_without_start_waits_paused(live: Live) -> None:
    body = {"artifacts": [{"name": "Test.Numbers", "parameters": {"N": 1}}]}
    with live.http(live.tokens["investigator"]) as http:
        hunt = http.post("/hunts", json=body).json()
    assert hunt["state"] == "Paused" and hunt["started"] is None
    assert live.server.audit.query(action="hunt.start", target=hunt["hunt_id"]) == []
