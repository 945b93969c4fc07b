"""``/notebooks`` over a real server and agent: a hunt's notebook made, run and read back
without rerunning, result pages, the exports, an import, and who may do what (audited)."""

from __future__ import annotations

import json

from tests.api.conftest import Live, Objects


def call(live: Live, role: str, method: str, path: str, **kw: object) -> tuple[int, object]:
    with live.http(live.tokens[role]) as http:
        answer = http.request(method, path, **kw)  # type: ignore[arg-type]
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, answer.text


def test_a_hunt_notebook_runs_and_reopens_with_its_results(live: Live, objects: Objects) -> None:
    status, made = call(
        live, "analyst", "POST", "/notebooks",
        json={"title": "Numbers hunt", "hunt_id": objects.hunt_id, "shared": True},
    )  # fmt: skip
    assert status == 201, made
    assert isinstance(made, dict)
    notebook = made["notebook_id"]
    sql_cells = [c for c in made["cells"] if c["kind"] == "sql"]
    assert sql_cells and all(c["result"] is None for c in sql_cells)
    status, ran = call(live, "analyst", "POST", f"/notebooks/{notebook}/run", json={})
    assert status == 200, ran
    status, opened = call(live, "reader", "GET", f"/notebooks/{notebook}")
    assert status == 200 and isinstance(opened, dict)
    counts = next(c for c in opened["cells"] if "count(*) AS rows" in c["text"])
    assert counts["result"]["columns"] == ["rows", "hosts"]
    assert counts["result"]["rows"] == [[3, 1]] and counts["ran_by"] == "analyst-user"
    stack = next(c for c in opened["cells"] if c["chart"] and c["chart"].get("x") == "label")
    status, page = call(
        live, "reader", "GET", f"/notebooks/{notebook}/cells/{stack['cell_id']}/result",
        params={"offset": 1, "limit": 1},
    )  # fmt: skip
    assert status == 200 and isinstance(page, dict)
    assert page["stored_rows"] == 3 and len(page["rows"]) == 1 and page["offset"] == 1
    # Running needs ANALYZE, and the refusal is audited.
    status, _ = call(live, "reader", "POST", f"/notebooks/{notebook}/run", json={})
    assert status == 403
    [entry] = live.server.audit.query(action="notebook.run", target=notebook, limit=5)[:1]
    assert entry.actor == "analyst-user" and entry.result == "ok"


def test_exports_and_import(live: Live, objects: Objects) -> None:
    status, made = call(
        live, "analyst", "POST", "/notebooks",
        json={"title": "<b>Report</b>", "cells": [
            {"kind": "markdown", "text": "# Summary\\n<script>alert(1)</script>"},
            {"kind": "sql", "text": f"SELECT n FROM flow('{objects.flow_id}', 'Test.Upload')"},
            {"kind": "sql", "text": "SELECT '<script>x</script>' AS v, 1 AS n",
             "chart": {"type": "bar", "x": "v", "y": "n"}},
        ]},
    )  # fmt: skip
    assert status == 201 and isinstance(made, dict)
    notebook = made["notebook_id"]
    call(live, "analyst", "POST", f"/notebooks/{notebook}/run", json={})
    with live.http(live.tokens["analyst"]) as http:
        page = http.get(f"/notebooks/{notebook}/export", params={"format": "html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "<script" not in page.text and "&lt;script&gt;x&lt;/script&gt;" in page.text
    assert "&lt;b&gt;Report&lt;/b&gt;" in page.text and "<svg" in page.text
    status, document = call(
        live, "analyst", "GET", f"/notebooks/{notebook}/export", params={"format": "json"}
    )
    assert status == 200 and isinstance(document, dict)
    status, copy = call(live, "investigator", "POST", "/notebooks/import", json=document)
    assert status == 201 and isinstance(copy, dict)
    assert copy["owner"] == "investigator-user" and copy["notebook_id"] != notebook
    assert copy["cells"][2]["result"]["rows"] == [["<script>x</script>", 1]]
    document["cells"][0]["kind"] = "shell"
    status, refused = call(live, "investigator", "POST", "/notebooks/import", json=document)
    assert status == 400 and "cell 1: cell kind 'shell'" in json.dumps(refused)
    [entry] = live.server.audit.query(action="notebook.import", result="refused", limit=1)
    assert entry.actor == "investigator-user"


def test_a_private_notebook_is_the_owners(live: Live) -> None:
    status, made = call(live, "analyst", "POST", "/notebooks", json={"title": "Mine"})
    assert status == 201 and isinstance(made, dict)
    notebook = made["notebook_id"]
    assert call(live, "investigator", "GET", f"/notebooks/{notebook}")[0] == 404
    assert (
        call(live, "investigator", "PATCH", f"/notebooks/{notebook}", json={"title": "x"})[0] == 404
    )
    status, listed = call(live, "investigator", "GET", "/notebooks")
    assert status == 200 and isinstance(listed, dict)
    assert notebook not in [n["notebook_id"] for n in listed["items"]]
    status, _ = call(
        live, "administrator", "PATCH", f"/notebooks/{notebook}", json={"shared": True}
    )
    assert status == 200
    assert call(live, "investigator", "GET", f"/notebooks/{notebook}")[0] == 200
    assert call(live, "investigator", "DELETE", f"/notebooks/{notebook}")[0] == 403
    assert call(live, "analyst", "DELETE", f"/notebooks/{notebook}")[0] == 204


def test_an_offset_past_any_page_is_refused_not_a_server_error(live: Live) -> None:
    """The OpenAPI fuzz test found ``/notebooks?offset=2**78`` answering 500 (the offset
    overflowed the datastore's integer)."""
    status, body = call(live, "reader", "GET", "/notebooks", params={"offset": 2**78})
    assert status == 422, body
    status, _ = call(live, "reader", "GET", "/notebooks", params={"offset": 2**53})
    assert status == 200
