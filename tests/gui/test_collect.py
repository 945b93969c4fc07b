"""An analyst in the browser: find the client, launch a collection with a parameter (its
validation by the field), read the rows, download an upload and check its SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.api.conftest import Live
from tests.gui.conftest import screenshot, showing, sign_in


def choose_artifact(page: Any, name: str) -> None:
    page.get_by_label("Search artifacts").fill(name)
    page.locator(".suggestion", has_text=name).first.click()
    page.locator(f"fieldset[data-artifact='{name}']").wait_for()


def test_find_the_client_by_its_host_name(page: Any, gui_live: Live) -> None:
    client = gui_live.server.datastore.clients.get(gui_live.client_id)
    hostname = client.hostname
    sign_in(page, "analyst")
    page.get_by_label("Find clients").fill(f"host:{hostname}")
    page.get_by_label("Find clients").press("Enter")
    page.get_by_text(showing(1, 1, 1, "clients")).wait_for()
    screenshot(page, "clients")
    page.get_by_role("link", name=hostname, exact=True).click()
    page.get_by_role("heading", name="Host").wait_for()
    assert gui_live.client_id in page.locator(".page-head").inner_text()
    interrogation = page.locator("section", has_text="Host").locator(".facts").inner_text()
    assert client.arch in interrogation and client.users[0] in interrogation
    screenshot(page, "client")


def test_a_search_the_api_refuses_says_why(page: Any) -> None:
    sign_in(page, "analyst", "/ui/clients?q=recent:soon")
    page.get_by_role("alert").wait_for()
    assert "recent" in page.get_by_role("alert").inner_text()


def test_launch_a_collection_with_a_parameter_and_read_its_rows(page: Any, gui_live: Live) -> None:
    flows_before = len(gui_live.server.datastore.collections.list_for_client(gui_live.client_id))
    sign_in(page, "analyst", f"/ui/clients/{gui_live.client_id}")
    page.get_by_role("link", name="New collection").click()
    choose_artifact(page, "Test.Numbers")
    n = page.locator("#p-Test_Numbers-N")
    assert n.input_value() == "10"  # the artifact's default
    n.fill("seven")
    page.get_by_role("button", name="Launch").click()
    # Refused by the field, before anything is sent: no collection was made.
    error = page.locator("#p-Test_Numbers-N-error")
    assert error.inner_text() == "Expects a whole number."
    assert n.get_attribute("aria-invalid") == "true"
    screenshot(page, "launch-invalid")
    assert len(gui_live.server.datastore.collections.list_for_client(gui_live.client_id)) == (
        flows_before
    )
    n.fill("7")
    page.get_by_role("button", name="Launch").click()
    page.get_by_role("heading", name="Collection F.").wait_for()
    flow_id = page.url.rsplit("/", 1)[-1]
    page.get_by_text(showing(1, 7, 7)).wait_for()
    assert page.locator("table.rows tbody tr").count() == 7
    assert page.get_by_role("cell", name="row 00000007").count() == 1
    screenshot(page, "collection")
    flow = gui_live.server.datastore.collections.get(flow_id)
    assert flow.creator == "gui-analyst" and flow.state == "Finished"
    assert flow.artifacts[0]["parameters"] == {"N": 7}
    target = f"{flow.client_id}/{flow_id}"
    [entry] = gui_live.server.audit.query(action="collection.create", target=target)
    assert entry.actor == "gui-analyst" and entry.result == "ok"


def test_results_page_through_the_server(page: Any, gui_live: Live) -> None:
    flow_id = gui_live.collect("Test.Numbers", {"N": 250})
    sign_in(page, "reader", f"/ui/collections/{flow_id}")
    page.get_by_text(showing(1, 100, 250)).wait_for()
    page.get_by_role("button", name="Next →").first.click()
    page.get_by_text(showing(101, 200, 250)).wait_for()
    assert page.locator("table.rows tbody tr").first.locator("td").nth(1).inner_text() == "101"
    page.get_by_role("button", name="Last page").first.click()
    page.get_by_text(showing(201, 250, 250)).wait_for()
    assert page.get_by_role("cell", name="row 00000250").count() == 1


def test_download_an_uploaded_file_and_check_its_hash(
    page: Any, gui_live: Live, tmp_path: Path
) -> None:
    evidence = tmp_path / "evidence.bin"
    evidence.write_bytes(b"\x00peregrine evidence\n" * 5000)
    expected = hashlib.sha256(evidence.read_bytes()).hexdigest()
    sign_in(page, "analyst", f"/ui/clients/{gui_live.client_id}/launch")
    choose_artifact(page, "Test.Upload")
    page.locator("#p-Test_Upload-Path").fill(str(evidence))
    page.get_by_role("button", name="Launch").click()
    page.get_by_role("heading", name="Collection F.").wait_for()
    row = page.locator("section", has_text="Uploaded files").locator("tbody tr").first
    row.get_by_text(expected).wait_for()
    with page.expect_download() as download:
        row.get_by_role("link", name="Download").click()
    saved = tmp_path / "downloaded"
    download.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == expected
