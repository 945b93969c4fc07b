"""The interactive API docs at ``/api/docs``, with Swagger UI served by the server itself.

FastAPI's default page loads Swagger UI from a CDN: blank where the deployment has no Internet
access, and a request leaving it each time someone opens the docs. The files are vendored in
``static/swagger-ui`` (see its README) and served under ``/api/docs/assets``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/api/docs"
ASSETS_URL = f"{DOCS_URL}/assets"
ASSETS_DIR = Path(__file__).parent / "static" / "swagger-ui"
#: No validator badge: it would send the document to validator.swagger.io.
SWAGGER_PARAMETERS = {"validatorUrl": None}


def add_docs(app: FastAPI, openapi_url: str, title: str) -> None:
    """Serve the docs page and its assets (the app is made with ``docs_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="swagger-ui")

    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - docs",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    # A plain route, as FastAPI adds its own docs page: a public page, not an API operation.
    app.add_route(DOCS_URL, docs, include_in_schema=False)
