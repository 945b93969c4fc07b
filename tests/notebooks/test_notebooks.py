"""Notebooks: ready-made cells for a hunt, results kept so opening reruns nothing, who may
read, edit and run, and the HTML and JSON exports."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from peregrine.auth.roles import ANALYZE, READ_RESULTS, SERVER_ADMIN
from peregrine.datastore.notebooks import NotebookRecord
from peregrine.notebooks import NotebookError, NotebookNotFound, NotebookService
from peregrine.notebooks.model import RESULT_ROWS, NotebookForbidden
from tests.analysis.conftest import Fleet

INVESTIGATOR = frozenset({READ_RESULTS, ANALYZE})
READER = frozenset({READ_RESULTS})
ADMIN = frozenset({READ_RESULTS, ANALYZE, SERVER_ADMIN})
PSLIST = "Generic.System.Pslist"


def a_hunt(fleet: Fleet) -> tuple[str, list[str]]:
    """Three hosts ran the hunt: two alike, one with a rare process; a fourth sent nothing."""
    hunt = fleet.hunt(1, PSLIST)
    clients = []
    processes = (["sshd", "cron"], ["sshd", "miner"], ["sshd", "cron"], [])
    for number, names in enumerate(processes, 1):
        client = fleet.client(number, f"web-{number}")
        flow = fleet.flow(client, number, PSLIST, hunt_id=hunt)
        if names:
            fleet.rows(client, flow, PSLIST, ["pid", "name"], [[i, n] for i, n in enumerate(names)])
        fleet.finish(flow)
        clients.append(client)
    return hunt, clients


def result_of(notebook: NotebookRecord, marker: str) -> list[dict[str, object]]:
    """The stored rows of the first SQL cell whose text holds ``marker``."""
    cell = next(c for c in notebook.cells if c.kind == "sql" and marker in c.text)
    assert cell.result is not None and cell.result["error"] is None, cell.result
    columns = cell.result["columns"]
    return [dict(zip(columns, row, strict=True)) for row in cell.result["rows"]]


def test_a_hunt_notebook_starts_with_stack_counts_outliers_and_silent_hosts(
    fleet: Fleet, notebooks: NotebookService
) -> None:
    hunt, clients = a_hunt(fleet)
    made = notebooks.create("alice", INVESTIGATOR, "Hunt triage", hunt_id=hunt)
    kinds = [c.kind for c in made.cells]
    assert kinds[0] == "markdown" and kinds.count("sql") >= 5
    charts = [c.chart for c in made.cells if c.chart]
    assert {"type": "bar", "x": "name", "y": "n", "title": "name: stack count"} in charts
    ran = notebooks.run(made.notebook_id, "alice", INVESTIGATOR)
    assert len(ran) == kinds.count("sql")
    opened = notebooks.get(made.notebook_id, "alice", INVESTIGATOR)
    stack = result_of(opened, 'SELECT "name", count(*) AS n')
    assert stack[0] == {"name": "sshd", "n": 3, "hosts": 3}
    rare = result_of(opened, 'SELECT "name", count(DISTINCT client_id) AS hosts')
    assert {"name": "miner", "hosts": 1, "on_hosts": ["web-2"]} in rare
    silent = result_of(opened, "NOT IN")
    assert [row["client_id"] for row in silent] == [clients[3]]


def test_opening_a_notebook_reruns_nothing(fleet: Fleet, notebooks: NotebookService) -> None:
    client = fleet.client(1, "web-1")
    flow = fleet.flow(client, 1, PSLIST)
    fleet.rows(client, flow, PSLIST, ["pid", "name"], [[1, "init"], [2, "sshd"]])
    fleet.finish(flow)
    made = notebooks.create(
        "alice", INVESTIGATOR, "One host",
        cells=[{"kind": "sql", "text": f"SELECT count(*) AS n FROM flow('{flow}', '{PSLIST}')"}],
    )  # fmt: skip
    notebooks.run(made.notebook_id, "alice", INVESTIGATOR)
    # The collection's files are gone: only a stored result can answer now.
    shutil.rmtree(fleet.filestore.flow_dir(client, flow))
    opened = notebooks.get(made.notebook_id, "alice", INVESTIGATOR)
    cell = opened.cells[0]
    assert cell.result is not None and cell.result["rows"] == [[2]]
    assert cell.ran_by == "alice" and cell.ran is not None and cell.duration is not None
    # Running again now fails, and the failure is what the cell keeps.
    notebooks.run(made.notebook_id, "alice", INVESTIGATOR, [cell.cell_id])
    again = notebooks.get(made.notebook_id, "alice", INVESTIGATOR).cells[0]
    assert again.result is not None and again.result["error"]["kind"] == "refused"


def test_a_cell_keeps_the_first_rows_and_says_there_are_more(
    notebooks: NotebookService,
) -> None:
    made = notebooks.create(
        "alice", INVESTIGATOR, "Big",
        cells=[{"kind": "sql", "text": "SELECT range AS n FROM range(5000)"}],
    )  # fmt: skip
    [cell] = notebooks.run(made.notebook_id, "alice", INVESTIGATOR)
    assert cell.result is not None
    assert len(cell.result["rows"]) == RESULT_ROWS and cell.result["more"] is True


def test_editing_text_drops_the_result_and_a_chart_change_keeps_it(
    notebooks: NotebookService,
) -> None:
    made = notebooks.create(
        "alice", INVESTIGATOR, "Edits",
        cells=[{"kind": "sql", "text": "SELECT 1 AS x, 2 AS y"}, {"kind": "markdown", "text": "a"}],
    )  # fmt: skip
    first = made.cells[0].cell_id
    notebooks.run(made.notebook_id, "alice", INVESTIGATOR)
    notebooks.edit_cell(
        made.notebook_id, first, "alice", INVESTIGATOR, chart={"type": "bar", "x": "x", "y": "y"}
    )
    kept = notebooks.get(made.notebook_id, "alice", INVESTIGATOR).cells[0]
    assert kept.result is not None and kept.chart == {"type": "bar", "x": "x", "y": "y"}
    notebooks.edit_cell(made.notebook_id, first, "alice", INVESTIGATOR, text="SELECT 3 AS x")
    notebooks.edit_cell(made.notebook_id, first, "alice", INVESTIGATOR, position=1)
    cells = notebooks.get(made.notebook_id, "alice", INVESTIGATOR).cells
    assert [c.kind for c in cells] == ["markdown", "sql"]
    assert cells[1].text == "SELECT 3 AS x" and cells[1].result is None
    with pytest.raises(NotebookError, match="chart type 'pie'"):
        notebooks.edit_cell(made.notebook_id, first, "alice", INVESTIGATOR, chart={"type": "pie"})


def test_readers_read_shared_notebooks_and_only_owners_share_or_delete(
    notebooks: NotebookService,
) -> None:
    private = notebooks.create("alice", INVESTIGATOR, "Private", cells=[])
    shared = notebooks.create(
        "alice", INVESTIGATOR, "Shared", shared=True,
        cells=[{"kind": "sql", "text": "SELECT 1 AS one"}],
    )  # fmt: skip
    with pytest.raises(NotebookNotFound):
        notebooks.get(private.notebook_id, "bob", INVESTIGATOR)
    assert notebooks.get(shared.notebook_id, "rita", READER).title == "Shared"
    with pytest.raises(NotebookForbidden, match="ANALYZE"):
        notebooks.run(shared.notebook_id, "rita", READER)
    with pytest.raises(NotebookForbidden, match="ANALYZE"):
        notebooks.create("rita", READER, "Mine")
    # Another investigator edits and runs the shared one, but neither unshares nor deletes it.
    notebooks.add_cell(shared.notebook_id, "bob", INVESTIGATOR, {"kind": "markdown", "text": "b"})
    assert notebooks.run(shared.notebook_id, "bob", INVESTIGATOR)[0].ran_by == "bob"
    with pytest.raises(NotebookForbidden, match="owner"):
        notebooks.update(shared.notebook_id, "bob", INVESTIGATOR, shared=False)
    with pytest.raises(NotebookForbidden, match="owner"):
        notebooks.delete(shared.notebook_id, "bob", INVESTIGATOR)
    mine, total = notebooks.visible("bob", INVESTIGATOR, 10, 0)
    assert total == 1 and [n.notebook_id for n in mine] == [shared.notebook_id]
    assert notebooks.visible("root", ADMIN, 10, 0)[1] == 2
    notebooks.delete(shared.notebook_id, "alice", INVESTIGATOR)
    with pytest.raises(NotebookNotFound):
        notebooks.get(shared.notebook_id, "alice", INVESTIGATOR)


def parse_html(page: str) -> tuple[set[str], list[tuple[str, str | None]], str]:
    """The element names, attributes and text of an HTML page, as a browser's parser reads
    them."""
    from html.parser import HTMLParser

    tags: set[str] = set()
    attributes: list[tuple[str, str | None]] = []
    text: list[str] = []

    class Reader(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.add(tag)
            attributes.extend(attrs)

        def handle_data(self, data: str) -> None:
            text.append(data)

    Reader(convert_charrefs=True).feed(page)
    return tags, attributes, "".join(text)


HOSTILE = '<script>alert("x")</script><img src=https://evil.example/p.png>'


def test_the_html_report_is_self_contained_and_escapes_everything(
    notebooks: NotebookService,
) -> None:
    made = notebooks.create(
        "alice", INVESTIGATOR, f"Report {HOSTILE}",
        cells=[
            {"kind": "markdown", "text": f"# Findings {HOSTILE}\n\nSee {HOSTILE}"},
            {
                "kind": "sql",
                "text": "SELECT * FROM (VALUES ('sshd', 3), "
                f"('{HOSTILE.replace(chr(39), chr(39) * 2)}', 1)) t(name, n)",
                "chart": {"type": "bar", "x": "name", "y": "n"},
            },
        ],
    )  # fmt: skip
    notebooks.run(made.notebook_id, "alice", INVESTIGATOR)
    page = notebooks.export_html(made.notebook_id, "alice", INVESTIGATOR)
    tags, attributes, text = parse_html(page)
    # Only the report's own elements; the hostile markup is text, escaped.
    assert tags <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "p", "pre",
        "div", "table", "thead", "tbody", "tr", "th", "td", "svg", "rect", "text", "polyline",
    }  # fmt: skip
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert HOSTILE in text
    # Nothing to load: no src/href, no URL in any attribute or in the CSS.
    assert not {"src", "href", "xmlns", "srcset", "action"} & {name for name, _ in attributes}
    assert not [v for _, v in attributes if re.search(r"(?i)https?:|//|url\(", v or "")]
    style = page[page.index("<style>") : page.index("</style>")]
    assert re.search(r"(?i)url\(|@import|https?:", style) is None
    assert "<svg" in page and "<rect" in page  # the bar chart, drawn on the server


def test_json_export_imports_elsewhere_and_bad_imports_say_what_is_wrong(
    notebooks: NotebookService,
) -> None:
    made = notebooks.create(
        "alice", INVESTIGATOR, "Portable",
        cells=[{"kind": "sql", "text": "SELECT 42 AS answer", "chart": {"type": "table"}}],
    )  # fmt: skip
    notebooks.run(made.notebook_id, "alice", INVESTIGATOR)
    document = json.dumps(notebooks.export_json(made.notebook_id, "alice", INVESTIGATOR))
    copy = notebooks.import_json(document, "bob", INVESTIGATOR)
    assert copy.notebook_id != made.notebook_id and copy.owner == "bob"
    opened = notebooks.get(copy.notebook_id, "bob", INVESTIGATOR)
    assert opened.cells[0].result is not None and opened.cells[0].result["rows"] == [[42]]
    bad = json.loads(document)
    bad["cells"][0]["result"]["rows"] = [[1, 2]]
    with pytest.raises(NotebookError, match="cell 1: each row of a result has one value"):
        notebooks.import_json(bad, "bob", INVESTIGATOR)
    bad["cells"][0] = {"kind": "python", "text": "import os"}
    with pytest.raises(NotebookError, match="cell 1: cell kind 'python'"):
        notebooks.import_json(bad, "bob", INVESTIGATOR)
    with pytest.raises(NotebookError, match="not a notebook export"):
        notebooks.import_json({"cells": []}, "bob", INVESTIGATOR)
    with pytest.raises(NotebookError, match="not JSON"):
        notebooks.import_json("{", "bob", INVESTIGATOR)
    assert notebooks.visible("bob", INVESTIGATOR, 10, 0)[1] == 1  # nothing half-imported


def test_a_client_notebook_starts_with_its_collections_and_their_rows(
    fleet: Fleet, notebooks: NotebookService
) -> None:
    client = fleet.client(1, "laptop-7")
    flow = fleet.flow(client, 1, PSLIST)
    fleet.rows(client, flow, PSLIST, ["pid", "name"], [[1, "init"], [666, "backdoor"]])
    fleet.finish(flow)
    made = notebooks.create("alice", INVESTIGATOR, "Laptop 7", client_id=client)
    assert made.cells[0].kind == "markdown" and "laptop-7" in made.cells[0].text
    notebooks.run(made.notebook_id, "alice", INVESTIGATOR)
    opened = notebooks.get(made.notebook_id, "alice", INVESTIGATOR)
    assert [r["flow_id"] for r in result_of(opened, "FROM collections()")] == [flow]
    assert {"pid": 666, "name": "backdoor"} in result_of(opened, f"FROM flow('{flow}'")
    with pytest.raises(NotebookNotFound, match="no hunt or client"):
        notebooks.create("alice", INVESTIGATOR, "Nobody", client_id="C.00000000000000ff")
