"""Serving the GUI (no browser): the page, its versioned assets and the headers that protect it."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from peregrine.api.app import create_app
from peregrine.gui.assets import STATIC_DIR, load_assets
from peregrine.gui.routes import ASSETS_PREFIX, IMMUTABLE

ASSETS = load_assets()


class InProcess:
    """Requests to the app in this process (no port): these routes need no server."""

    def __init__(self) -> None:
        self.app = create_app(None, None, None)  # type: ignore[arg-type]

    def get(self, path: str) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://gui") as client:
                return await client.get(path)

        # A thread of its own: the browser tests' Playwright keeps a loop running in this one.
        with ThreadPoolExecutor(1) as thread:
            return thread.submit(asyncio.run, go()).result()


@pytest.fixture(scope="module")
def http() -> InProcess:
    return InProcess()


def test_root_sends_browsers_to_the_gui(http: InProcess) -> None:
    response = http.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/clients/C.0123456789abcdef", "/ui/x/y"])
def test_every_gui_path_answers_the_page(http: InProcess, path: str) -> None:
    """Deep links work: the browser-side router draws the view from the path."""
    response = http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert f'src="{ASSETS_PREFIX}/{ASSETS.version}/js/main.js"' in response.text


def test_the_page_and_assets_carry_a_strict_policy(http: InProcess) -> None:
    for path in ("/ui/", f"{ASSETS_PREFIX}/{ASSETS.version}/js/main.js"):
        headers = http.get(path).headers
        policy = headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe" not in policy
        assert "frame-ancestors 'none'" in policy
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"


def test_versioned_assets_are_cached_for_good(http: InProcess) -> None:
    response = http.get(f"{ASSETS_PREFIX}/{ASSETS.version}/app.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert response.headers["cache-control"] == IMMUTABLE
    assert response.content == (STATIC_DIR / "app.css").read_bytes()


def test_another_version_is_served_but_not_cached(http: InProcess) -> None:
    """A page from a frontend of another version (rolling upgrade) still gets its files."""
    response = http.get(f"{ASSETS_PREFIX}/0123456789ab/js/main.js")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    ["js/nothing.js", "../routes.py", "..%2Froutes.py", "js/../../assets.py", "/etc/passwd"],
)
def test_only_the_guis_own_files_are_served(http: InProcess, path: str) -> None:
    """Unknown names are 404; a path the client folded ("a/../b") may land on the page, but
    never on a file outside the GUI's own."""
    response = http.get(f"{ASSETS_PREFIX}/{ASSETS.version}/{path}")
    assert response.status_code == 404 or response.content == http.get("/ui/").content
    assert b"from __future__" not in response.content and b"root:" not in response.content


def test_the_version_changes_with_any_file(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("{{ASSETS}}")
    (tmp_path / "app.css").write_text("a {}")
    before = load_assets(tmp_path).version
    (tmp_path / "app.css").write_text("a { color: red }")
    assert load_assets(tmp_path).version != before


def test_every_module_import_resolves() -> None:
    """A missing or misnamed module would break the whole page: caught without a browser."""
    for name, asset in ASSETS.files.items():
        if not name.endswith(".js"):
            continue
        for target in re.findall(rb'from\s+"(\.[^"]+)"', asset.body):
            resolved = (Path(name).parent / target.decode()).as_posix()
            resolved = str(Path(resolved).resolve().relative_to(Path.cwd().resolve()))
            assert resolved in ASSETS.files, f"{name} imports {target.decode()}: no such file"


def test_nothing_loads_from_outside_the_deployment() -> None:
    """No CDN, no web font, no analytics: an incident network is often cut off."""
    for name, asset in ASSETS.files.items():
        # SVG's namespace is a name, not a load (an attribute, or chart.js's createElementNS).
        body = asset.body.replace(b'xmlns="http://www.w3.org/2000/svg"', b"")
        body = body.replace(b'const SVG = "http://www.w3.org/2000/svg";', b"")
        assert not re.search(rb"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", body), name


#: Ways a script turns text into markup or code; the GUI builds every node with h() instead.
MARKUP_SINKS = rb"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
MARKUP_SINKS += rb"javascript:"


def test_no_script_turns_text_into_markup() -> None:
    """Host names, labels, result cells and artifact text come from endpoints and users: they
    are only ever text nodes, so none can become markup or script (and the CSP backs this)."""
    for name, asset in ASSETS.files.items():
        if name.endswith(".js"):
            assert not re.search(MARKUP_SINKS, asset.body), name
