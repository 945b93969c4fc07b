"""A result table in the browser: sorted by a column and filtered on the server over the
whole result set, then exported whole (CSV, JSONL, Parquet)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from tests.api.conftest import Live
from tests.gui.conftest import screenshot, showing, sign_in


def first_cells(page: Any, column: int = 1) -> list[str]:
    rows = page.locator("table.rows tbody tr")
    return [rows.nth(i).locator("td").nth(column).inner_text() for i in range(3)]


def test_sort_and_filter_over_the_whole_result_set(page: Any, gui_live: Live) -> None:
    flow_id = gui_live.collect("Test.Numbers", {"N": 250})
    sign_in(page, "reader", f"/ui/collections/{flow_id}")
    page.get_by_text(showing(1, 100, 250)).wait_for()
    header = page.locator("th", has=page.get_by_role("button", name="n", exact=True))
    page.get_by_role("button", name="n", exact=True).click()
    page.locator("th[aria-sort=ascending]").wait_for()
    page.get_by_role("button", name="n", exact=True).click()
    page.locator("th[aria-sort=descending]").wait_for()
    assert header.get_attribute("aria-sort") == "descending"
    assert first_cells(page, 1)[:3] == ["250", "249", "248"]  # the server's order, all rows

    page.get_by_label("Filter label").fill("ROW 0000024")
    page.get_by_label("Filter label").press("Enter")
    page.get_by_text(showing(1, 10, 10)).wait_for()
    assert page.get_by_role("status").filter(has_text="10 rows match").count() == 1
    assert first_cells(page, 1) == ["249", "248", "247"]
    screenshot(page, "results-sorted-filtered")
    page.get_by_label("Filter n").fill(">247")
    page.get_by_label("Filter n").press("Enter")
    page.get_by_text(showing(1, 2, 2)).wait_for()
    page.get_by_label("Filter n").fill("=nothing")
    page.get_by_label("Filter n").press("Enter")
    page.get_by_text("No row matches the filters.").wait_for()
    # The headers stay, so the filter that kept nothing can be changed back.
    page.get_by_label("Filter n").fill("")
    page.get_by_label("Filter n").press("Enter")
    page.get_by_text(showing(1, 10, 10)).wait_for()


def test_export_the_whole_result_set(page: Any, gui_live: Live, tmp_path: Path) -> None:
    flow_id = gui_live.collect("Test.Numbers", {"N": 120})
    sign_in(page, "reader", f"/ui/collections/{flow_id}")
    page.get_by_text(showing(1, 100, 120)).wait_for()
    for label in ("CSV", "JSONL"):
        with page.expect_download() as download:
            page.get_by_role("link", name=label, exact=True).click()
        saved = tmp_path / label
        download.value.save_as(saved)
        text = saved.read_text()
        if label == "CSV":
            assert len(list(csv.DictReader(io.StringIO(text)))) == 120
        else:
            assert [json.loads(line)["n"] for line in text.splitlines()] == list(range(1, 121))
