"""The fleet overview is live: a hunt started and a collection scheduled elsewhere appear on
the open page without a reload (server-sent events)."""

from __future__ import annotations

import time
from typing import Any

from peregrine.services.hunts import HuntSpec
from tests.api.conftest import Live
from tests.gui.conftest import screenshot, sign_in


def test_the_overview_follows_the_fleet_without_a_reload(page: Any, gui_live: Live) -> None:
    sign_in(page, "reader", "/ui/")
    page.get_by_text("live · updated").wait_for()
    page.evaluate("window.__notReloaded = true")
    offline = "C.00000000feedf00d"
    gui_live.server.datastore.clients.enroll(offline, offline.encode(), time.time())

    async def change() -> tuple[str, str]:
        server = gui_live.server
        spec = HuntSpec(artifacts=[("Test.Numbers", {"N": 1})], include_labels=["nobody"])
        hunt = await server.hunts.create(spec, creator="gui-admin")
        await server.hunts.start(hunt.hunt_id)
        flow = await server.collect(offline, [("Test.Numbers", {"N": 1})], "gui-admin")
        return hunt.hunt_id, flow.flow_id

    hunt_id, flow_id = gui_live.run(change())
    page.get_by_role("link", name=flow_id).wait_for(timeout=15_000)
    page.locator("section", has_text="Running hunts").get_by_role("link", name=hunt_id).wait_for(
        timeout=15_000
    )
    assert page.evaluate("window.__notReloaded") is True
    screenshot(page, "fleet-live")
