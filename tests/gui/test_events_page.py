"""The Events page: an event artifact assigned with its parameters and labels from the page is
stored (and audited) as the API stores it, and unassigned again; a client's rows of a running
event artifact are read by time range, and its status shows."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api.conftest import Live
from tests.gui.conftest import screenshot, sign_in

WATCHER = "Generic.Events.FileChanges"
#: The agent starts an event worker under a CPU limit: on a loaded machine that takes seconds.
ARRIVAL_SECONDS = 90


def stored(gui_live: Live) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        _, assigned = await gui_live.server.services.event_monitoring.assignments(fresh=True)
        return {a.artifact: a for a in assigned}

    return gui_live.run(read())


def test_assign_an_event_artifact_with_parameters_then_unassign_it(
    page: Any, gui_live: Live
) -> None:
    sign_in(page, "investigator", "/ui/events")
    page.get_by_role("heading", name="Event monitoring").wait_for()
    page.get_by_label("Search artifacts").fill("FileChanges")
    page.get_by_role("button", name=WATCHER).click()
    page.locator(f'fieldset[data-artifact="{WATCHER}"]').get_by_label("Paths").fill(
        "/tmp/gui-watched"
    )
    page.get_by_label("Labels (comma-separated)").fill("gui-nobody")
    page.get_by_role("button", name="Assign", exact=True).click()
    page.get_by_text(f"Assigned {WATCHER} to clients labelled gui-nobody.").wait_for()
    assignment = stored(gui_live)[WATCHER]
    assert assignment.labels == ["gui-nobody"]
    assert assignment.modified_by == "gui-investigator"
    assert "/tmp/gui-watched" in str(assignment.parameters["Paths"])
    assert page.locator("tbody tr", has_text=WATCHER).get_by_text("gui-nobody").count() == 1
    [entry] = gui_live.server.audit.query(action="events.assign", target=WATCHER)
    assert entry.actor == "gui-investigator"
    screenshot(page, "events-assigned")

    page.get_by_role("button", name=f"Unassign {WATCHER}").click()
    page.get_by_text(f"{WATCHER} stopped on every client.").wait_for()
    assert WATCHER not in stored(gui_live)


@pytest.mark.timeout(180)  # the agent's first event may take up to 90 s under load
def test_a_clients_recent_events_and_status(page: Any, gui_live: Live) -> None:
    with gui_live.http(gui_live.tokens["administrator"]) as http:
        assert http.post("/events/assignments", json={"artifact": "Test.Ticks"}).status_code == 201
    try:
        shows_rows_and_status(page, gui_live)
    finally:
        with gui_live.http(gui_live.tokens["administrator"]) as http:
            http.delete("/events/assignments/Test.Ticks")


def shows_rows_and_status(page: Any, gui_live: Live) -> None:
    sign_in(page, "reader", f"/ui/clients/{gui_live.client_id}")
    page.get_by_role("link", name="Its events").click()
    page.get_by_role("heading", name="Event monitoring").wait_for()
    assert page.get_by_role("button", name="Assign", exact=True).count() == 0  # a reader
    assert page.get_by_label("Client id").input_value() == gui_live.client_id
    page.get_by_label("Event artifact").select_option("Test.Ticks")
    deadline = time.monotonic() + ARRIVAL_SECONDS
    rows = page.locator("table.rows tbody tr")
    while True:
        page.get_by_role("button", name="Show events").click()
        page.wait_for_timeout(500)
        if rows.count() or time.monotonic() > deadline:
            break
        page.wait_for_timeout(1500)
    assert rows.count() >= 1, f"no Test.Ticks event shown in {ARRIVAL_SECONDS} s"
    assert page.get_by_role("columnheader", name="tick").count() == 1
    screenshot(page, "events-rows")
    page.reload()  # the status table is read when the page opens
    status = page.locator("section", has_text="Status on each client").locator("tbody tr")
    status.filter(has_text="Test.Ticks").first.get_by_text("running").wait_for()
    # From a client's status, its events in one press.
    page.get_by_role("button", name=f"Events of Test.Ticks on {gui_live.client_id}").click()
    rows.first.wait_for()
    assert page.get_by_label("Client id").input_value() == gui_live.client_id
