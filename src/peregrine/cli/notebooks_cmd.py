"""``peregrine notebooks``: notebooks on the server (list, create, show, run, export, import).

``show`` prints each cell with its stored result (nothing is rerun); ``run`` reruns SQL cells
and prints what they returned. ``export`` writes the HTML report or the JSON export, which
``import`` reads on another server."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from peregrine.cli.export_file import save_export
from peregrine.cli.output import OutputFormat, write_rows
from peregrine.cli.remote_cmd import CaOption, TokenOption, UrlOption, connected, console, err, fail

app = typer.Typer(
    help="Notebooks: Markdown and SQL cells over collected results, kept on the server.",
    no_args_is_help=True,
)

NotebookArg = Annotated[str, typer.Argument(help="The notebook's id (N.…).")]


@app.command("list")
def list_notebooks(
    hunt: Annotated[str | None, typer.Option("--hunt", help="Only a hunt's notebooks.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """The notebooks you may read (yours and shared ones), newest first."""
    with connected(url, token, ca_cert) as client:
        page = client.notebooks.list(limit=limit, hunt_id=hunt)
    rows = [
        [n["notebook_id"], n["title"], n["owner"], "yes" if n["shared"] else "",
         n["hunt_id"] or n["client_id"] or "", _when(n["modified"])]
        for n in page["items"]
    ]  # fmt: skip
    write_rows(rows, ["notebook", "title", "owner", "shared", "about", "modified"],
               OutputFormat.table, sys.stdout, console)  # fmt: skip
    err.print(f"{len(rows)} of {page['total']}")


@app.command("create")
def create(
    title: Annotated[str, typer.Argument(help="The notebook's title.")],
    hunt: Annotated[
        str | None, typer.Option("--hunt", help="About a hunt: ready-made cells for it.")
    ] = None,
    client_id: Annotated[
        str | None, typer.Option("--client", help="About a client: ready-made cells for it.")
    ] = None,
    sql: Annotated[
        list[str] | None, typer.Option("--sql", help="A SQL cell (repeat for more).")
    ] = None,
    shared: Annotated[bool, typer.Option(help="Others may read and edit it.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Create a notebook (needs ANALYZE); print its id."""
    cells = [{"kind": "sql", "text": text} for text in sql or []]
    with connected(url, token, ca_cert) as client:
        made = client.notebooks.create(
            title, hunt_id=hunt, client_id=client_id, shared=shared, cells=cells
        )
    console.print(
        f"{made['notebook_id']}: {len(made['cells'])} cells "
        f"(peregrine notebooks run {made['notebook_id']})"
    )


@app.command("show")
def show(
    notebook_id: NotebookArg,
    rows: Annotated[int, typer.Option(min=0, max=1000, help="Result rows per cell.")] = 20,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Every cell with its stored result (nothing is rerun)."""
    with connected(url, token, ca_cert) as client:
        notebook = client.notebooks.get(notebook_id, rows=rows)
    console.print(f"[bold]{_plain(notebook['title'])}[/bold]  ({notebook['notebook_id']}, "
                  f"{_plain(notebook['owner'])})")  # fmt: skip
    for cell in notebook["cells"]:
        _print_cell(cell)


@app.command("run")
def run(
    notebook_id: NotebookArg,
    cell: Annotated[
        list[str] | None, typer.Option("--cell", help="Only this cell (repeat); all by default.")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Run SQL cells again and keep their results (needs ANALYZE)."""
    with connected(url, token, ca_cert) as client:
        answer = client.notebooks.run(notebook_id, cell)
    failed = 0
    for ran in answer["cells"]:
        _print_cell(ran)
        failed += bool(ran["result"] and ran["result"]["error"])
    if failed:
        fail(f"{failed} cell(s) failed; fix their SQL and run them again")


@app.command("export")
def export(
    notebook_id: NotebookArg,
    output: Annotated[Path, typer.Argument(help="The file: .html (a report) or .json.")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="html or json (default: the suffix).")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Save the notebook as a self-contained HTML report or as JSON to import elsewhere."""
    save_export(url, token, ca_cert, lambda c: c.notebooks.export(notebook_id, output, fmt))


@app.command("import")
def import_(
    document: Annotated[Path, typer.Argument(help="A notebook's JSON export.")],
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """A new notebook of yours from a JSON export (checked by the server; nothing runs)."""
    try:
        data = json.loads(document.read_text())
    except (OSError, ValueError) as exc:
        fail(f"cannot read {document}: {exc}")
    with connected(url, token, ca_cert) as client:
        made = client.notebooks.import_(data)
    console.print(f"{made['notebook_id']}: {len(made['cells'])} cells imported")


def _print_cell(cell: dict[str, Any]) -> None:
    console.rule(f"{cell['cell_id']} {cell['kind']}")
    console.print(cell["text"], markup=False)
    result = cell.get("result")
    if cell["kind"] != "sql":
        return
    if result is None:
        err.print("(not run)")
        return
    if result["error"]:
        err.print(f"Error: {result['error']['message']}", markup=False)
        return
    write_rows(result["rows"], result["columns"], OutputFormat.table, sys.stdout, console)
    more = " (more rows stored: peregrine notebooks show --rows N)" if (
        result["stored_rows"] > len(result["rows"]) or result["more"]
    ) else ""  # fmt: skip
    err.print(f"ran {_when(cell['ran'])} by {cell['ran_by']} in {cell['duration']:.2f} s{more}",
              markup=False)  # fmt: skip


def _when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _plain(text: str) -> str:
    from rich.markup import escape

    return escape(text)
