"""Artifacts and administration pages, read in the browser."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Live
from tests.gui.conftest import screenshot, sign_in


def test_browse_and_read_an_artifact(page: Any) -> None:
    sign_in(page, "reader", "/ui/artifacts")
    page.get_by_label("Search artifacts").fill("numbers")
    page.get_by_label("Search artifacts").press("Enter")
    page.get_by_role("link", name="Test.Numbers").click()
    page.get_by_role("heading", name="Test.Numbers").wait_for()
    assert page.get_by_role("cell", name="How many rows.").count() == 1
    assert "WITH RECURSIVE" in page.locator("pre.sql").inner_text()
    assert page.get_by_role("link", name="Hunt with it").count() == 0  # a reader
    screenshot(page, "artifact")


def test_the_audit_log_shows_who_did_what(page: Any, gui_live: Live) -> None:
    gui_live.run(gui_live.server.label(gui_live.client_id, add=["audited"], remove=[]))
    sign_in(page, "analyst", f"/ui/clients/{gui_live.client_id}")
    page.get_by_role("button", name="Remove audited").click()
    page.locator(".chip", has_text="audited").wait_for(state="detached")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "administrator", "/ui/admin")
    page.get_by_role("heading", name="Audit log").wait_for()
    page.get_by_label("Who").fill("gui-analyst")
    page.get_by_label("Action").fill("client.label")
    page.get_by_role("button", name="Filter").click()
    entry = page.locator("section", has_text="Audit log").locator("tbody tr").first
    entry.get_by_text("client.label").wait_for()
    assert gui_live.client_id in entry.inner_text()
    assert page.get_by_role("cell", name="gui-reader").count() == 1  # the users table
    screenshot(page, "admin")


def test_a_token_is_shown_once(page: Any, gui_live: Live) -> None:
    sign_in(page, "administrator", "/ui/admin")
    page.get_by_label("Token name").fill("from-the-gui")
    page.get_by_role("button", name="Make a token").click()
    token = page.locator("pre.token").inner_text()
    principal = gui_live.server.accounts.authenticate_token(token)
    assert principal is not None and principal.name == "gui-admin"
    page.reload()
    page.get_by_role("heading", name="Audit log").wait_for()
    assert page.locator("pre.token").count() == 0
