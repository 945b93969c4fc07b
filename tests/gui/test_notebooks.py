"""Notebooks in the browser: a cell's stored result is shown as a table and an SVG bar chart
when the notebook opens, without running anything; an administrator reruns a cell and adds a
Markdown and a SQL cell (run at once); a reader has none of those controls."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Live
from tests.gui.conftest import screenshot, showing, sign_in

STACK = (
    "SELECT * FROM (VALUES ('sshd', 7), ('bash', 3), ('<b>cron</b>', 1)) AS t(name, n) "
    "ORDER BY n DESC"
)
OVER_TIME = (
    "SELECT * FROM (VALUES ('2026-01-01T00:00:00Z', 2), ('2026-01-02T00:00:00Z', 5), "
    "('2026-01-03T00:00:00Z', 3)) AS t(day, logins)"
)
LINE = {"type": "line", "x": "day", "y": "logins"}
ADMIN = frozenset({"SERVER_ADMIN"})


def read_back(gui_live: Live, notebook_id: str) -> Any:
    """The notebook as stored (read by the service: nothing is run)."""
    return gui_live.server.services.notebooks.get(notebook_id, "gui-admin", ADMIN)


def made_and_run(gui_live: Live) -> tuple[str, dict[str, Any]]:
    notebook = {
        "title": "GUI stack counts",
        "shared": True,
        "cells": [
            {"kind": "markdown", "text": "# Process names\n\nHow many hosts run each."},
            {"kind": "sql", "text": STACK, "chart": {"type": "bar", "x": "name", "y": "n"}},
            {"kind": "sql", "text": OVER_TIME, "chart": LINE},
        ],
    }
    with gui_live.http(gui_live.tokens["administrator"]) as http:
        made = http.post("/notebooks", json=notebook)
        assert made.status_code == 201, made.text
        notebook_id = made.json()["notebook_id"]
        ran = http.post(f"/notebooks/{notebook_id}/run", json={}).json()
    [cell, _] = ran["cells"]
    return notebook_id, cell


def test_a_stored_result_shows_without_rerunning(page: Any, gui_live: Live) -> None:
    notebook_id, cell = made_and_run(gui_live)
    sign_in(page, "reader", "/ui/notebooks")
    page.get_by_role("link", name="GUI stack counts").first.click()
    page.get_by_role("heading", name="GUI stack counts").wait_for()
    page.get_by_role("heading", name="Process names").wait_for()
    section = page.locator(f'section[data-cell="{cell["cell_id"]}"]')
    assert section.locator("tbody tr").count() == 3
    assert section.locator("tbody tr").first.inner_text().split("\t")[1:] == ["sshd", "7"]
    chart = section.locator("svg.chart")
    assert chart.locator("rect").count() == 3
    assert chart.get_by_text("<b>cron</b>", exact=True).count() == 1  # text, not markup
    widths = [float(r.get_attribute("width")) for r in chart.locator("rect").all()]
    assert widths[0] > widths[1] > widths[2]
    line = page.get_by_role("img", name="Line chart of logins over day").locator("polyline")
    assert len(line.get_attribute("points").split()) == 3
    assert page.get_by_role("button", name="Rerun").count() == 0  # a reader
    assert page.get_by_role("button", name="Add cell").count() == 0
    screenshot(page, "notebook-stored")
    stored = read_back(gui_live, notebook_id)
    assert stored.cells[1].ran == cell["ran"]  # opening it ran nothing


def test_an_administrator_reruns_a_cell_and_adds_cells(page: Any, gui_live: Live) -> None:
    notebook_id, cell = made_and_run(gui_live)
    sign_in(page, "administrator", f"/ui/notebooks/{notebook_id}")
    rerun = page.locator(f'section[data-cell="{cell["cell_id"]}"]')
    rerun.get_by_role("button", name="Rerun").click()
    rerun.get_by_text("by gui-admin").wait_for()
    page.get_by_label("Cell kind").select_option("markdown")
    page.get_by_label("Cell text").fill("## Findings\n\nsshd everywhere.")
    page.get_by_role("button", name="Add cell").click()
    page.get_by_role("heading", name="Findings").wait_for()
    page.get_by_label("Cell kind").select_option("sql")
    page.get_by_label("Cell text").fill("SELECT 41 + 1 AS answer")
    page.get_by_role("button", name="Add cell").click()
    page.get_by_role("cell", name="42", exact=True).wait_for()
    screenshot(page, "notebook-edited")
    stored = read_back(gui_live, notebook_id)
    assert [c.kind for c in stored.cells] == ["markdown", "sql", "sql", "markdown", "sql"]
    assert stored.cells[1].ran > cell["ran"] and stored.cells[4].result["rows"] == [[42]]


def test_a_long_stored_result_is_read_a_page_at_a_time(page: Any, gui_live: Live) -> None:
    """The notebook's answer carries 100 rows of a cell; the rest come from its stored result."""
    cells = [{"kind": "sql", "text": "SELECT i, i * i AS square FROM range(150) AS t(i)"}]
    with gui_live.http(gui_live.tokens["administrator"]) as http:
        made = http.post("/notebooks", json={"title": "GUI long", "shared": True, "cells": cells})
        notebook_id = made.json()["notebook_id"]
        [ran] = http.post(f"/notebooks/{notebook_id}/run", json={}).json()["cells"]
    assert ran["result"]["stored_rows"] == 150, ran["result"]
    sign_in(page, "reader", f"/ui/notebooks/{notebook_id}")
    page.get_by_text(showing(1, 100, 150)).wait_for()
    page.get_by_role("button", name="Next →").click()
    page.get_by_text(showing(101, 150, 150)).wait_for()
    assert page.get_by_role("cell", name="22201", exact=True).count() == 1  # 149 squared
    assert read_back(gui_live, notebook_id).cells[0].ran == ran["ran"]
