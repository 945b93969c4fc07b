"""What a user sees follows their role: a reader finds no control to launch, label or hunt,
and the API refuses the reader's browser session anyway (and records the refusal)."""

from __future__ import annotations

import time
from typing import Any

from tests.api.conftest import Live
from tests.gui.conftest import screenshot, sign_in

#: A state change from the page's own session, with its CSRF token, as the GUI would send it.
POST_FROM_PAGE = """async ([path, body]) => {
  const response = await fetch(path, {
    method: "POST",
    headers: {"Content-Type": "application/json",
              "X-CSRF-Token": localStorage.getItem("peregrine.csrf")},
    body: JSON.stringify(body),
  });
  return [response.status, await response.text()];
}"""


def test_a_reader_has_no_control_to_launch_anything(page: Any, gui_live: Live) -> None:
    flows_before = len(gui_live.server.datastore.collections.list_for_client(gui_live.client_id))
    sign_in(page, "reader", f"/ui/clients/{gui_live.client_id}")
    page.get_by_role("heading", name="Host").wait_for()
    assert page.get_by_role("link", name="New collection").count() == 0
    assert page.get_by_label("New label").count() == 0
    assert page.get_by_role("link", name="Admin").count() == 0
    screenshot(page, "client-reader")
    page.get_by_role("link", name="Hunts", exact=True).click()
    page.get_by_role("heading", name="Hunts").wait_for()
    assert page.get_by_role("link", name="New hunt").count() == 0
    page.goto(f"/ui/clients/{gui_live.client_id}/launch")
    page.get_by_text("may not start collections").wait_for()
    assert page.get_by_role("button", name="Launch").count() == 0

    started = time.time()
    numbers = [{"name": "Test.Numbers"}]
    collection = {"client_id": gui_live.client_id, "artifacts": numbers}
    status, body = page.evaluate(POST_FROM_PAGE, ["/api/v1/collections", collection])
    assert status == 403 and "COLLECT_CLIENT" in body
    status, _ = page.evaluate(POST_FROM_PAGE, ["/api/v1/hunts", {"artifacts": numbers}])
    assert status == 403
    assert len(gui_live.server.datastore.collections.list_for_client(gui_live.client_id)) == (
        flows_before
    )
    refusals = gui_live.server.audit.query(actor="gui-reader", since=started - 1)
    assert {e.action for e in refusals} >= {"permission.denied.post"}


def test_a_readers_hunt_page_has_no_controls(page: Any, gui_live: Live) -> None:
    with gui_live.http(gui_live.tokens["administrator"]) as http:
        made = http.post(
            "/hunts",
            json={"artifacts": [{"name": "Test.Numbers"}], "include_labels": ["nobody"]},
        )
    hunt_id = made.json()["hunt_id"]
    sign_in(page, "reader", f"/ui/hunts/{hunt_id}")
    page.get_by_role("heading", name=f"Hunt {hunt_id}").wait_for()
    for control in ("Start", "Pause", "Stop", "Archive"):
        assert page.get_by_role("button", name=control).count() == 0


def test_a_page_cannot_be_framed_or_run_injected_script(browser: Any, gui_live: Live) -> None:
    """Its own context: the violation this provokes would fail the ``page`` fixture."""
    context = browser.new_context(base_url=gui_live.base, ignore_https_errors=True)
    page = context.new_page()
    response = page.goto("/ui/")
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    # An inline script (what an injection would add) is refused by the browser itself.
    ran = page.evaluate(
        """() => new Promise((resolve) => {
          document.addEventListener("securitypolicyviolation", () => resolve("blocked"));
          const s = document.createElement("script");
          s.textContent = "window.__injected = true";
          document.body.append(s);
          setTimeout(() => resolve(window.__injected ? "ran" : "blocked"), 500);
        })"""
    )
    context.close()
    assert ran == "blocked"
