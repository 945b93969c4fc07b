"""Alerts in the browser: an event from the real agent matches a rule, the alert appears on an
open Alerts page without a reload, and an investigator acknowledges it with a comment; a reader
sees it and the rules with no control to acknowledge, and the API refuses the reader anyway."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Live
from tests.gui.conftest import screenshot, sign_in
from tests.gui.test_roles import POST_FROM_PAGE

RULE = {
    "rule_id": "Test.GuiFirstTick",
    "artifacts": ["Test.Ticks"],
    "condition": "tick = 1",
    "severity": "high",
    "description": "the first tick of a clock",
    "summary_columns": ["tick"],
}
#: The agent starts an event worker under a CPU limit: on a loaded machine that takes seconds.
ARRIVAL_MS = 90_000


@pytest.mark.timeout(180)  # the agent's first event may take up to 90 s under load
def test_an_alert_appears_live_and_an_investigator_acknowledges_it(
    page: Any, gui_live: Live
) -> None:
    sign_in(page, "investigator", "/ui/alerts")
    page.get_by_role("heading", name="Alerts").wait_for()
    with gui_live.http(gui_live.tokens["administrator"]) as http:
        assert http.post("/rules", json=RULE).status_code == 200
        # A fresh assignment starts the agent's worker, whose first tick comes at once (an
        # earlier test may have left one running: stopped first, so it starts again).
        assert http.delete("/events/assignments/Test.Ticks").status_code in (200, 404)
        assigned = http.post("/events/assignments", json={"artifact": "Test.Ticks"})
        assert assigned.status_code == 201
    row = page.locator("tbody tr", has_text=RULE["rule_id"]).first
    row.wait_for(timeout=ARRIVAL_MS)
    alert = gui_live.server.datastore.alerts.query(rule_id=RULE["rule_id"], state="open")[0]
    hostname = gui_live.server.datastore.clients.get(gui_live.client_id).hostname
    assert hostname in row.inner_text() and "high" in row.inner_text()
    screenshot(page, "alerts-open")

    page.get_by_label(f"Comment on alert {alert.alert_id}").fill("seen: a test clock")
    page.get_by_role("button", name=f"Acknowledge alert {alert.alert_id}").click()
    page.get_by_text(f"Alert {alert.alert_id} acknowledged.").wait_for()
    stored = gui_live.server.datastore.alerts.get(alert.alert_id)
    assert stored is not None
    assert (stored.acked_by, stored.ack_comment) == ("gui-investigator", "seen: a test clock")
    page.get_by_label("State").select_option("")
    page.locator("tbody tr", has_text="seen: a test clock").wait_for()
    screenshot(page, "alerts-acknowledged")


def test_a_reader_sees_alerts_but_cannot_acknowledge_them(page: Any, gui_live: Live) -> None:
    [alert] = gui_live.server.datastore.alerts.raise_many(
        [
            {
                "alert_key": "gui-reader|1",
                "rule_id": "Test.GuiReader",
                "rule_version": 1,
                "severity": "medium",
                "time": 1.0,
                "summary": "for the reader's eyes",
                "client_id": gui_live.client_id,
                "rows": [{"n": 1}],
            }
        ]
    )
    with gui_live.http(gui_live.tokens["administrator"]) as http:
        rule = {**RULE, "rule_id": "Test.GuiReaderRule", "enabled": False}
        assert http.post("/rules", json=rule).status_code == 200
    sign_in(page, "reader", "/ui/alerts")
    page.locator("tbody tr", has_text="for the reader's eyes").wait_for()
    assert page.get_by_role("button", name="Acknowledge", exact=False).count() == 0
    assert page.get_by_role("columnheader", name="Action").count() == 0
    rules = page.locator("section", has_text="Rules").locator("tbody")
    rules.get_by_role("cell", name="Test.GuiReaderRule", exact=True).wait_for()
    path = f"/api/v1/alerts/{alert.alert_id}/acknowledge"
    status, body = page.evaluate(POST_FROM_PAGE, [path, {"comment": "no"}])
    assert status == 403 and "ACKNOWLEDGE_ALERTS" in body
    stored = gui_live.server.datastore.alerts.get(alert.alert_id)
    assert stored is not None and stored.state == "open"
    screenshot(page, "alerts-reader")
