"""Serve the GUI: ``/`` sends browsers to ``/ui/``; every ``/ui/...`` path answers the one
page (the browser-side router draws the view); ``/ui/assets/<version>/...`` the files.

Each response carries a strict Content-Security-Policy (scripts and styles from this origin
only, no inline script, no framing), so injected markup cannot run code or be framed.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from peregrine.gui.assets import Assets, load_assets

GUI_URL = "/ui/"
ASSETS_PREFIX = "/ui/assets"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
#: Versioned URLs never change content: cached for good. Anything else is revalidated.
IMMUTABLE = "public, max-age=31536000, immutable"


def add_gui(app: FastAPI, assets: Assets | None = None) -> None:
    """Add the GUI's routes to the API app (same origin, so the session cookie reaches the API)."""
    files = assets or load_assets()
    page = _page(files)

    async def root(request: Request) -> Response:
        return RedirectResponse(GUI_URL, status_code=307)

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_headers("no-cache"))

    async def asset(request: Request) -> Response:
        version = request.path_params["version"]
        found = files.get(request.path_params["path"])
        if found is None:
            return Response("no such file\n", 404, headers=_headers("no-store"))
        # A page from another frontend of another version asks for its own version: answer
        # with ours (a rolling upgrade must not break pages), but never cache that for good.
        cache = IMMUTABLE if version == files.version else "no-cache"
        return Response(found.body, media_type=found.media_type, headers=_headers(cache))

    app.add_route("/", root, include_in_schema=False)
    app.add_route(f"{ASSETS_PREFIX}/{{version}}/{{path:path}}", asset, include_in_schema=False)
    app.add_route("/ui", index, include_in_schema=False)
    app.add_route("/ui/{rest:path}", index, include_in_schema=False)


def _page(files: Assets) -> bytes:
    """index.html with its asset URLs pointing at this version."""
    template = files.get("index.html")
    if template is None:
        raise RuntimeError("the GUI's index.html is missing from the package")
    return template.body.replace(b"{{ASSETS}}", f"{ASSETS_PREFIX}/{files.version}".encode())


def _headers(cache: str) -> dict[str, str]:
    return {**SECURITY_HEADERS, "Cache-Control": cache}
