"""Alerts and rules through the API of a real server: rules checked before they are saved (a
bad condition refused with its position), versioned, switched; alerts listed with filters and
acknowledged once (by whom, when, why); every change audited."""

from __future__ import annotations

import time
from typing import Any

from tests.api.conftest import Live, Objects

RULE: dict[str, Any] = {
    "rule_id": "Test.ApiRule",
    "artifacts": ["Test.Ticks"],
    "condition": "tick > 5",
    "severity": "high",
    "description": "late ticks",
}


def test_a_rule_with_bad_sql_is_refused_with_its_position(live: Live) -> None:
    with live.http(live.tokens["administrator"]) as http:
        response = http.post("/rules", json={**RULE, "condition": "tick > > 5"})
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert detail.startswith("condition: bad SQL in the condition at position 7")
        assert "syntax error" in detail

        response = http.post("/rules", json={**RULE, "condition": "tock > 5"})
        assert response.status_code == 400
        assert "no such column: tock" in response.json()["detail"]
        assert "tick, time, utc" in response.json()["detail"]  # what the columns are

        response = http.post("/rules", json={**RULE, "condition": "1); DROP TABLE events; --"})
        assert response.status_code == 400

        response = http.post("/rules", json={**RULE, "artifacts": ["Test.Numbers"]})
        assert response.status_code == 400
        assert "Test.Numbers is not an event artifact" in response.json()["detail"]
    assert live.server.datastore.rules.get("Test.ApiRule") is None
    refusals = live.server.audit.query(action="rule.save", target="Test.ApiRule")
    assert len(refusals) >= 4 and {e.result for e in refusals} == {"refused"}


def test_forwarding_targets_cannot_be_set_through_a_rule(live: Live) -> None:
    """Where alerts go (a webhook URL) is configuration only: no API field reaches it."""
    with live.http(live.tokens["administrator"]) as http:
        response = http.post("/rules", json={**RULE, "webhook": "http://169.254.169.254/"})
    assert response.status_code == 422


def test_rules_are_versioned_and_switched_by_admins_only(live: Live) -> None:
    rule = {**RULE, "rule_id": "Test.Versioned"}
    with live.http(live.tokens["administrator"]) as admin:
        first = admin.post("/rules", json=rule).json()
        assert (first["version"], first["enabled"], first["modified_by"]) == (
            1, True, "administrator-user"
        )  # fmt: skip
        second = admin.post("/rules", json={**rule, "condition": "tick > 6"}).json()
        assert second["version"] == 2 and second["condition"] == "tick > 6"
        stale = admin.post("/rules", json={**rule, "expected_version": 1})
        assert stale.status_code == 409
        disabled = admin.post("/rules/Test.Versioned/disable").json()
        assert (disabled["version"], disabled["enabled"]) == (3, False)
        assert admin.get("/rules/Test.Versioned").json()["enabled"] is False
        assert admin.post("/rules/Test.Nope/enable").status_code == 404
    versions = live.server.datastore.rules.versions("Test.Versioned")
    assert [(v.version, v.enabled) for v in versions] == [(1, True), (2, True), (3, False)]
    with live.http(live.tokens["investigator"]) as investigator:
        assert investigator.post("/rules/Test.Versioned/enable").status_code == 403
        assert investigator.get("/rules/Test.Versioned").status_code == 200
    assert live.server.audit.query(action="rule.disable", target="Test.Versioned")


def test_alerts_are_listed_by_filter_and_acknowledged_once(live: Live, objects: Objects) -> None:
    store = live.server.datastore.alerts
    now = time.time()
    raised = store.raise_many(
        [
            {
                "alert_key": f"api-test|{now}|{n}",
                "rule_id": "Test.Listing",
                "rule_version": 1,
                "severity": severity,
                "time": now + n,
                "summary": f"alert {n}",
                "client_id": client,
                "rows": [{"n": n}],
            }
            for n, (severity, client) in enumerate(
                [("high", "C.00000000000000aa"), ("low", "C.00000000000000aa"), ("high", None)]
            )
        ]
    )
    ids = [alert.alert_id for alert in raised]
    with live.http(live.tokens["reader"]) as reader:
        page = reader.get("/alerts", params={"rule_id": "Test.Listing"}).json()
        assert [a["alert_id"] for a in page] == ids[::-1]  # newest first
        high = reader.get("/alerts", params={"rule_id": "Test.Listing", "severity": "high"})
        assert [a["alert_id"] for a in high.json()] == [ids[2], ids[0]]
        by_client = reader.get("/alerts", params={"client_id": "C.00000000000000aa"}).json()
        assert [a["alert_id"] for a in by_client] == [ids[1], ids[0]]
        window = reader.get(
            "/alerts", params={"rule_id": "Test.Listing", "since": now + 1, "until": now + 2}
        ).json()
        assert [a["alert_id"] for a in window] == [ids[1]]
        follow = reader.get("/alerts", params={"rule_id": "Test.Listing", "after": ids[0]})
        assert [a["alert_id"] for a in follow.json()] == ids[1:]  # oldest first
        assert reader.post(f"/alerts/{ids[0]}/acknowledge", json={}).status_code == 403

    with live.http(live.tokens["investigator"]) as investigator:
        done = investigator.post(
            f"/alerts/{ids[0]}/acknowledge", json={"comment": "our scanner"}
        ).json()
        assert (done["state"], done["acked_by"], done["ack_comment"]) == (
            "acknowledged", "investigator-user", "our scanner"
        )  # fmt: skip
        assert abs(done["acked_at"] - time.time()) < 60
        again = investigator.post(f"/alerts/{ids[0]}/acknowledge", json={"comment": "x"})
        assert again.status_code == 409 and "investigator-user" in again.json()["detail"]
        assert investigator.post("/alerts/999999999/acknowledge", json={}).status_code == 404
        still_open = investigator.get(
            "/alerts", params={"rule_id": "Test.Listing", "state": "open"}
        ).json()
        assert [a["alert_id"] for a in still_open] == [ids[2], ids[1]]
    entries = live.server.audit.query(action="alert.acknowledge", target=str(ids[0]))
    assert [e.result for e in entries] == ["refused", "ok"]  # newest first
    assert entries[1].parameters == {"comment": "our scanner"}


def test_a_rule_is_tried_over_stored_events_without_raising_anything(live: Live) -> None:
    files = live.server.services.event_monitoring.files
    client = "C.00000000000000bb"
    now = time.time()
    files.append(client, "Test.Ticks", "", 1, now - 30, ["tick", "time", "utc"],
                 [[n, now - 30, ""] for n in range(1, 11)])  # fmt: skip
    files.append(client, "Test.Ticks", "", 11, now - 7200, ["tick", "time", "utc"],
                 [[99, now - 7200, ""]])  # fmt: skip
    body = {"rule": {**RULE, "rule_id": "Test.Trial"}, "since": now - 60, "client_id": client}
    with live.http(live.tokens["analyst"]) as analyst:
        response = analyst.post("/rules/test", json=body)
        assert response.status_code == 200, response.text
        result = response.json()
        assert (result["scanned"], result["matched"]) == (10, 5)  # ticks 6-10, not the old 99
        assert [m["tick"] for m in result["matches"]] == [6, 7, 8, 9, 10]
        assert [m["event_seq"] for m in result["matches"]] == [6, 7, 8, 9, 10]

        windowed = {
            **body,
            "rule": {**body["rule"], "window": {"seconds": 3600, "threshold": 1}},
        }
        windows = analyst.post("/rules/test", json=windowed).json()["windows"]
        assert [(w["count"], w["fires"]) for w in windows] == [(1, True)]  # one client

        bad = analyst.post("/rules/test", json={**body, "rule": {**RULE, "condition": "tick >"}})
        assert bad.status_code == 400 and "position" in bad.json()["detail"]
        assert (
            analyst.post("/rules/test", json={"rule_id": "Test.Nope", "since": 0}).status_code
            == 404
        )
    with live.http(live.tokens["reader"]) as reader:
        assert reader.post("/rules/test", json=body).status_code == 403
    assert not live.server.datastore.alerts.query(rule_id="Test.Trial")
    assert live.server.audit.query(action="rule.test", target="Test.Trial")
