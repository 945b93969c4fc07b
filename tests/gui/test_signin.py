"""Signing in and out of the GUI with real accounts (the API's session cookie + CSRF token)."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Live
from tests.gui.conftest import USERS, screenshot, sign_in


def test_a_wrong_password_is_refused_and_said_so(page: Any) -> None:
    page.goto("/ui/")
    page.get_by_label("User name").fill(USERS["administrator"])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").filter(has_text="wrong user name or password").wait_for()
    assert page.get_by_role("button", name="Sign out").count() == 0
    screenshot(page, "signin-refused")


def test_sign_in_lands_on_the_fleet_overview(page: Any, gui_live: Live) -> None:
    sign_in(page, "administrator")
    page.get_by_role("heading", name="Fleet").wait_for()
    online = page.locator(".stat", has_text="online").locator(".stat-value")
    assert online.inner_text() == "1"
    page.get_by_role("cell", name=gui_live.client_id).wait_for()  # seen in the last hour
    screenshot(page, "fleet")


def test_a_deep_link_survives_sign_in_reload_and_a_new_tab(page: Any, gui_live: Live) -> None:
    """The session is the browser's: a reload or a second tab needs no new sign-in, and the
    second tab can still change things (it has the CSRF token)."""
    path = f"/ui/clients/{gui_live.client_id}"
    sign_in(page, "administrator", path)
    page.get_by_role("heading", name="Host").wait_for()
    page.reload()
    page.get_by_role("heading", name="Host").wait_for()
    other = page.context.new_page()
    other.goto(path)
    other.get_by_label("New label").fill("second-tab")
    other.get_by_role("button", name="Add label").click()
    other.locator(".chip", has_text="second-tab").wait_for()
    assert "second-tab" in gui_live.server.datastore.clients.get(gui_live.client_id).labels
    other.get_by_role("button", name="Remove second-tab").click()
    other.locator(".chip", has_text="second-tab").wait_for(state="detached")
    assert "second-tab" not in gui_live.server.datastore.clients.get(gui_live.client_id).labels


def test_sign_out_ends_the_session(page: Any, gui_live: Live) -> None:
    sign_in(page, "administrator")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    # The cookie is gone or dead: the API itself refuses this browser now.
    status = page.evaluate("fetch('/api/v1/me').then(r => r.status)")
    assert status == 401
    page.goto("/ui/clients")
    page.get_by_role("button", name="Sign in").wait_for()
