"""hunt_add in the browser: one client, found by its host name, gets a paused hunt that
matched nobody; a second time it is told the client has it; a wrong name says what to do."""

from __future__ import annotations

from typing import Any

from peregrine.services.hunts import HuntSpec
from tests.api.conftest import Live
from tests.gui.conftest import screenshot, sign_in


def test_add_one_client_to_a_hunt_by_host_name(page: Any, gui_live: Live) -> None:
    async def make() -> str:
        spec = HuntSpec(artifacts=[("Test.Numbers", {"N": 2})], include_labels=["nobody"])
        hunt = await gui_live.server.hunts.create(spec, creator="gui-admin")
        return str(hunt.hunt_id)

    hunt_id = gui_live.run(make())
    hostname = gui_live.server.datastore.clients.get(gui_live.client_id).hostname
    sign_in(page, "administrator", f"/ui/hunts/{hunt_id}")
    page.get_by_text("No client has this hunt yet.").wait_for()
    box = page.get_by_label("Add a client to this hunt")
    box.fill("no-such-host-anywhere")
    page.get_by_role("button", name="Add client").click()
    page.get_by_text("No client has the host name no-such-host-anywhere").wait_for()
    assert box.get_attribute("aria-invalid") == "true"

    box.fill(hostname)
    page.get_by_role("button", name="Add client").click()
    page.get_by_text(f"Added {hostname}: it gets the hunt now.").wait_for()
    clients = page.locator("section", has_text="Add a client").locator("tbody")
    clients.get_by_role("link", name=hostname).wait_for()
    screenshot(page, "hunt-add")
    assert gui_live.server.datastore.hunts.get(hunt_id).state == "Paused"
    [entry] = gui_live.server.audit.query(action="hunt.add_client", actor="gui-admin")
    assert entry.target == f"{hunt_id}/{gui_live.client_id}"

    box.fill(gui_live.client_id)
    page.get_by_role("button", name="Add client").click()
    page.get_by_text("already has this hunt").wait_for()
