"""``/api/docs`` works with no Internet access: the page and everything it loads come from the
server itself."""

from __future__ import annotations

import re
import ssl

import httpx

from tests.client.conftest import Live


def test_the_docs_page_loads_only_from_the_server(live: Live) -> None:
    with httpx.Client(
        base_url=live.url, verify=ssl.create_default_context(cafile=live.ca_cert), timeout=30
    ) as http:
        page = http.get("/api/docs")
        assert page.status_code == 200 and "swagger-ui" in page.text
        # Every URL the page names (scripts, styles, icon, the OpenAPI document) is a path on
        # this server: nothing absolute, nothing protocol-relative.
        assert not re.search(r"(https?:)?//[a-z0-9]", page.text, re.IGNORECASE), page.text
        loaded = re.findall(r"""(?:src|href)="([^"]+)\"""", page.text)
        loaded += re.findall(r"""url: '([^']+)'""", page.text)
        assert len(loaded) >= 4, page.text  # script, stylesheet, icon, document
        for path in loaded:
            assert path.startswith("/") and not path.startswith("//"), path
            answer = http.get(path)
            assert answer.status_code == 200, path
        assert '"validatorUrl": null' in page.text  # no badge that sends the document elsewhere
        bundle = http.get("/api/docs/assets/swagger-ui-bundle.js")
        assert bundle.headers["content-type"].startswith(("text/javascript", "application/js"))
        assert http.get("/api/docs/assets/%2e%2e/%2e%2e/v1/status").status_code == 404
