"""A real server with a real agent, and Debian's chromium driven by Playwright.

The browser opens the GUI on the server's HTTPS port (the deployment's own CA is not in the
browser, so certificate errors are ignored for this test origin only) and signs in with real
accounts. Without chromium the browser tests skip, or fail under PEREGRINE_REQUIRE_BROWSER=1
(scripts/test sets it). Screenshots go to ``.screenshots/gui/`` (or PEREGRINE_SCREENSHOTS).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import PASSWORD, Live, live_deployment

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE_BROWSER_VARIABLE = "PEREGRINE_REQUIRE_BROWSER"
SCREENSHOTS = Path(
    os.environ.get("PEREGRINE_SCREENSHOTS", Path(__file__).parents[2] / ".screenshots" / "gui")
)
REFUSED_REQUEST = re.compile(r"Failed to load resource: the server responded with a status of 4")
#: Users the browser signs in as, by role.
USERS = {
    "administrator": "gui-admin",
    "reader": "gui-reader",
    "analyst": "gui-analyst",
    "investigator": "gui-investigator",
}


@pytest.fixture(scope="package")
def gui_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_deployment(tmp_path_factory.mktemp("gui-live")) as live:
        for role, name in USERS.items():
            live.make_user(name, [role], password=PASSWORD)
        yield live


# Package scope, not session: Playwright's sync API keeps an event loop running on the main
# thread while it is open, and every later test that calls asyncio.run() would fail.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    reason = None
    if executable is None:
        reason = "Debian's chromium is not installed (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the playwright package is not installed (pip install -e '.[dev]')"
    if reason is not None:
        if os.environ.get(REQUIRE_BROWSER_VARIABLE) == "1":
            pytest.fail(f"{REQUIRE_BROWSER_VARIABLE}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, gui_live: Live) -> Iterator[Any]:
    """A fresh browser profile (no cookies) on the GUI's origin."""
    context = browser.new_context(
        base_url=gui_live.base, ignore_https_errors=True, viewport={"width": 1440, "height": 900}
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        yield page
    finally:
        context.close()
    # An exception in the page's scripts, or a CSP violation, is a failure of the GUI; the
    # browser's own line for each refused request (4xx) is not.
    unexpected = [e for e in errors if not REFUSED_REQUEST.match(e)]
    assert not unexpected, unexpected


def sign_in(page: Any, role: str, path: str = "/ui/") -> None:
    page.goto(path)
    page.get_by_label("User name").fill(USERS[role])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()


def showing(first: int, last: int, total: int, what: str = "rows") -> str:
    """The pager's words for a page: "1\u20137 of 7 rows" (an en dash, as people write it)."""
    return f"{first}\u2013{last} of {total} {what}"


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
