"""``peregrine timeline``: timelines on the server (list, create, rows, export, delete).

A timeline is defined by its sources, given as JSON (a file or the text itself); ``rows``
prints a page in time order, ``export`` writes Timesketch's JSONL or CSV."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from peregrine.cli.export_file import save_export
from peregrine.cli.output import OutputFormat, write_rows
from peregrine.cli.remote_cmd import CaOption, TokenOption, UrlOption, connected, console, err, fail

app = typer.Typer(
    help="Timelines: rows of collections, hunts and event logs on one time axis.",
    no_args_is_help=True,
)

TimelineArg = Annotated[str, typer.Argument(help="The timeline's id (T.…).")]
StartOption = Annotated[
    str | None, typer.Option("--start", help="From this time (ISO 8601 or epoch seconds).")
]
EndOption = Annotated[
    str | None, typer.Option("--end", help="Before this time (ISO 8601 or epoch seconds).")
]
TextOption = Annotated[str | None, typer.Option("--text", "-q", help="Rows holding this text.")]
SourceOption = Annotated[
    list[str] | None, typer.Option("--source", help="Only this source (repeat for several).")
]


@app.command("list")
def list_timelines(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """The timelines you may read (yours and shared ones), newest first."""
    with connected(url, token, ca_cert) as client:
        page = client.timelines.list(limit=limit)
    rows = [
        [t["timeline_id"], t["title"], t["owner"], "yes" if t["shared"] else "",
         ", ".join(s.get("label") or s["artifact"] for s in t["sources"])]
        for t in page["items"]
    ]  # fmt: skip
    write_rows(rows, ["timeline", "title", "owner", "shared", "sources"], OutputFormat.table,
               sys.stdout, console)  # fmt: skip
    err.print(f"{len(rows)} of {page['total']}")


@app.command("create")
def create(
    title: Annotated[str, typer.Argument(help="The timeline's title.")],
    sources: Annotated[
        str,
        typer.Argument(
            help='Its sources as JSON, or @FILE: [{"kind": "flow", "id": "F.…", "artifact": '
            '"…", "time": ["mtime", "atime", "ctime", "btime"], "message": "{path}"}, …]'
        ),
    ],
    shared: Annotated[bool, typer.Option(help="Others may read and edit it.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Define a timeline (needs ANALYZE); print its id."""
    text = sources
    if sources.startswith("@"):
        try:
            text = Path(sources[1:]).read_text()
        except OSError as exc:
            fail(f"cannot read {sources[1:]}: {exc.strerror or exc}")
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        fail(f"the sources are not JSON: {exc}")
    if isinstance(parsed, dict):
        parsed = [parsed]
    with connected(url, token, ca_cert) as client:
        made = client.timelines.create(title, parsed, shared=shared)
    console.print(f"{made['timeline_id']} (peregrine timeline rows {made['timeline_id']})")


@app.command("rows")
def rows(
    timeline_id: TimelineArg,
    start: StartOption = None,
    end: EndOption = None,
    text: TextOption = None,
    source: SourceOption = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=5000)] = 100,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="How to print the rows.")
    ] = OutputFormat.table,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """A page of the timeline in time order (needs ANALYZE)."""
    with connected(url, token, ca_cert) as client:
        page = client.timelines.rows(
            timeline_id, offset=offset, limit=limit, start=start, end=end, q=text,
            sources=source,
        )  # fmt: skip
    columns = ["datetime", "timestamp_desc", "source", "message"]
    values: list[list[Any]] = [[row[c] for c in columns] for row in page["rows"]]
    write_rows(values, columns, fmt, sys.stdout, console)
    if page["next_offset"] is not None:
        err.print(f"more: --offset {page['next_offset']}")


@app.command("export")
def export(
    timeline_id: TimelineArg,
    output: Annotated[Path, typer.Argument(help="The file: .jsonl or .csv (Timesketch's).")],
    start: StartOption = None,
    end: EndOption = None,
    text: TextOption = None,
    source: SourceOption = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="jsonl or csv (default: the suffix).")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Save the timeline in Timesketch's import format (needs ANALYZE)."""
    save_export(
        url, token, ca_cert,
        lambda c: c.timelines.export(
            timeline_id, output, fmt, start=start, end=end, q=text, sources=source
        ),
    )  # fmt: skip


@app.command("delete")
def delete(
    timeline_id: TimelineArg,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Delete a timeline (its owner, or an administrator)."""
    with connected(url, token, ca_cert) as client:
        client.timelines.delete(timeline_id)
    err.print(f"deleted {timeline_id}")
