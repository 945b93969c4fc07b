"""The file browser in the browser, with a real agent: browse into a directory (each listing a
collection, kept with its time), see a file's details and download it, its SHA-256 checked
against the file on disk; a reader browses what is stored and has nothing to launch."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Live
from tests.gui.conftest import screenshot, sign_in


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "browse"
    case = root / "case [42]"
    (case / "logs").mkdir(parents=True)
    (case / "logs" / "auth.log").write_text("Accepted publickey for root\n" * 40)
    (case / "evidence.bin").write_bytes(bytes(range(256)) * 400)
    return root


def list_here(page: Any, name: str = "List this directory") -> None:
    page.get_by_role("button", name=name).click()
    page.locator(".vfs-listing .sub", has_text=re.compile("^Listed")).wait_for()


def test_browse_into_a_directory_and_download_a_file(page: Any, gui_live: Live, tree: Path) -> None:
    sign_in(page, "administrator", f"/ui/clients/{gui_live.client_id}")
    page.get_by_role("link", name="Browse files").click()
    page.get_by_label("Go to path").fill(str(tree))
    page.get_by_label("Go to path").press("Enter")
    page.get_by_role("heading", name=str(tree), exact=True).wait_for()
    list_here(page)
    page.get_by_role("link", name="case [42]/").click()
    case = tree / "case [42]"
    page.get_by_role("heading", name=str(case), exact=True).wait_for()
    list_here(page)
    # The tree shows the way down: the listed parent holds the directory, marked current.
    current = page.locator(".vfs-tree a[aria-current=page]")
    assert current.inner_text() == "case [42]"
    assert page.locator(".vfs-listing tbody tr").count() == 2
    assert "2 entries" in page.locator(".vfs-listing .sub").inner_text()

    page.get_by_role("button", name="evidence.bin").click()
    details = page.locator(".vfs-details")
    details.get_by_text("Not downloaded yet").wait_for()
    assert "100.0 KiB" in details.inner_text()  # the listing's stat, before any download
    details.get_by_role("button", name="Download from client").click()
    data = (case / "evidence.bin").read_bytes()
    expected = hashlib.sha256(data).hexdigest()
    details.locator("[data-hash=sha256]").wait_for()
    assert details.locator("[data-hash=sha256]").inner_text() == expected
    assert hashlib.md5(data).hexdigest() in details.inner_text()
    screenshot(page, "files")
    with page.expect_download() as download:
        details.get_by_role("link", name="Save the copy").click()
    saved = tree / "saved"
    download.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == expected

    # The listing and the download are ordinary collections, audited with the path.
    audit = gui_live.server.audit
    [download_entry] = audit.query(actor="gui-admin", action="vfs.download")
    assert download_entry.parameters == {"path": str(case / "evidence.bin")}
    listed = [e.parameters["path"] for e in audit.query(actor="gui-admin", action="vfs.list")]
    assert sorted(listed) == [str(tree), str(case)]

    # A deep link to a directory shows its stored listing with the time it was taken.
    page.goto(f"/ui/clients/{gui_live.client_id}/files?path={case}/logs/..")
    page.get_by_role("heading", name=str(case), exact=True).wait_for()
    assert page.get_by_role("button", name="Refresh listing").is_enabled()


def test_a_reader_browses_stored_listings_without_launching(
    page: Any, gui_live: Live, tree: Path
) -> None:
    gui_live.collect("System.VFS.ListDirectory", {"Path": str(tree)})
    sign_in(page, "reader", f"/ui/clients/{gui_live.client_id}/files?path={tree}")
    page.get_by_role("link", name="case [42]/").wait_for()
    assert page.get_by_role("button", name="Refresh listing").count() == 0
    page.get_by_role("link", name="case [42]/").click()
    page.get_by_text("Not listed yet. Someone who may collect").wait_for()
    assert page.get_by_role("button", name="List this directory").count() == 0
    screenshot(page, "files-reader")
