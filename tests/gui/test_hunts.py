"""Hunts in the browser: create one with a parameter and labels, start it, watch it finish
(live statistics), read its results across clients and export them."""

from __future__ import annotations

import csv
import io
from typing import Any

from tests.api.conftest import Live
from tests.gui.conftest import screenshot, showing, sign_in
from tests.gui.test_collect import choose_artifact


def test_create_start_and_watch_a_hunt_finish(page: Any, gui_live: Live) -> None:
    gui_live.run(gui_live.server.label(gui_live.client_id, add=["gui-hunt"], remove=[]))
    hunts_before = gui_live.server.datastore.hunts.list(None, 1000, 0)
    sign_in(page, "administrator", "/ui/hunts")
    page.get_by_role("link", name="New hunt").click()
    choose_artifact(page, "Test.Numbers")
    page.locator("#p-Test_Numbers-N").fill("3")
    page.get_by_label("Description").fill("GUI hunt for three numbers")
    page.get_by_label("Include labels").fill("gui-hunt")
    expiry = page.get_by_label("Expires after (hours)")
    expiry.fill("")
    page.get_by_role("button", name="Create hunt").click()
    assert page.locator(f"#{expiry.get_attribute('id')}-error").inner_text() == "Required."
    assert gui_live.server.datastore.hunts.list(None, 1000, 0) == hunts_before
    assert page.get_by_text("Required.").count() == 1
    expiry.fill("1")
    assert page.get_by_text("Required.").count() == 0  # the message goes as the value is edited
    # A refusal of the API about one field is shown by that field (a cron it cannot parse).
    schedule = page.get_by_label("Or on a schedule (cron)")
    schedule.fill("61 * * * *")
    page.get_by_role("button", name="Create hunt").click()
    page.locator(f"#{schedule.get_attribute('id')}-error").filter(has_text="61").wait_for()
    assert gui_live.server.datastore.hunts.list(None, 1000, 0) == hunts_before
    schedule.fill("")
    screenshot(page, "hunt-new")
    page.get_by_role("button", name="Create hunt").click()
    page.get_by_role("heading", name="GUI hunt for three numbers").wait_for()
    hunt_id = page.url.rsplit("/", 1)[-1]
    hunt = gui_live.server.datastore.hunts.get(hunt_id)
    assert hunt.state == "Paused" and hunt.include_labels == ["gui-hunt"]
    assert hunt.artifacts[0]["parameters"] == {"N": 3}
    page.get_by_role("button", name="Start").click()
    # Live: the statistics arrive by server-sent events, nobody reloads the page.
    page.get_by_text("1 of 1 clients done").wait_for(timeout=60_000)
    page.get_by_role("button", name="Pause").wait_for()
    page.get_by_text(showing(1, 3, 3)).wait_for()
    results = page.locator("section.results")
    assert results.get_by_role("columnheader", name="client_id").count() == 1
    assert results.get_by_role("cell", name=gui_live.client_id).count() == 3
    screenshot(page, "hunt")
    with page.expect_download() as download:
        results.get_by_role("link", name="CSV").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [r["label"] for r in rows] == ["row 00000001", "row 00000002", "row 00000003"]
    assert {r["client_id"] for r in rows} == {gui_live.client_id}
    page.get_by_role("button", name="Stop").click()
    page.locator(".page-head .badge", has_text="Stopped").wait_for()
    assert gui_live.server.datastore.hunts.get(hunt_id).state == "Stopped"
    actions = [e.action for e in gui_live.server.audit.query(actor="gui-admin", target=hunt_id)]
    assert {"hunt.create", "hunt.start", "hunt.export", "hunt.stop"} <= set(actions)
