"""Writing a server artifact in the browser: saved with an error, the checker's error shown
at its line and nothing stored; fixed, saved, and then in use."""

from __future__ import annotations

from typing import Any

from peregrine.artifacts.loader import ArtifactError
from tests.api.conftest import Live
from tests.gui.conftest import screenshot, sign_in

BROKEN = """name: Server.Gui.Editor
description: |
  Processes and their owners, written in the GUI's editor for its test.
type: CLIENT
parameters:
  - name: Limit
    type: int
    default: 5
    description: How many rows.
sources:
  - query: |
      SELECT pid, nmae FROM pslist() LIMIT :Limit
"""


def stored(live: Live, name: str) -> bool:
    try:
        live.server.repository.get(name)
    except ArtifactError:
        return False
    return True


def test_an_error_is_shown_at_its_line_then_fixed_and_saved(page: Any, gui_live: Live) -> None:
    sign_in(page, "administrator", "/ui/artifacts")
    page.get_by_role("link", name="New server artifact").click()
    editor = page.get_by_label("Artifact YAML")
    editor.fill(BROKEN)
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Not saved: 1 problem(s) to fix first.").wait_for()
    # The checker names the line of the source whose query does not compile.
    line = page.locator(".gutter div[data-line='11']")
    assert line.get_attribute("class") == "bad"
    assert "unknown column 'nmae'" in (line.get_attribute("title") or "")
    problem = page.locator(".problem-list li").first
    assert problem.inner_text().startswith("Line 11")
    assert "unknown column 'nmae'" in problem.inner_text()
    screenshot(page, "artifact-editor-error")
    assert not stored(gui_live, "Server.Gui.Editor")

    problem.get_by_role("button", name="Line 11").click()  # the caret goes to the line
    assert editor.evaluate("e => e.value.slice(0, e.selectionStart).split('\\n').length") == 11
    editor.fill(BROKEN.replace("nmae", "name"))
    page.get_by_text("No problems: the YAML is valid and every query compiles.").wait_for()
    assert page.locator(".gutter div.bad").count() == 0
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="Server.Gui.Editor").wait_for()
    assert stored(gui_live, "Server.Gui.Editor")
    [entry] = gui_live.server.audit.query(action="artifact.put", target="Server.Gui.Editor")
    assert entry.actor == "gui-admin" and entry.result == "ok"

    # Editing again starts from the stored text.
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Artifact YAML").wait_for()
    assert "SELECT pid, name FROM pslist()" in page.get_by_label("Artifact YAML").input_value()


def test_a_reader_has_no_editor(page: Any) -> None:
    sign_in(page, "reader", "/ui/artifacts/Generic.Client.Info")
    page.get_by_role("heading", name="Generic.Client.Info").wait_for()
    assert page.get_by_role("link", name="Edit").count() == 0
    page.goto("/ui/artifacts")
    page.get_by_role("heading", name="Artifacts").wait_for()
    assert page.get_by_role("link", name="New server artifact").count() == 0
