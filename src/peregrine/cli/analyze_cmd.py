"""``peregrine analyze "SQL"``: SQL over collected results, run on the server (DuckDB), printed
as ``peregrine query`` prints rows, or saved to a file (``--output``, Parquet too)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Annotated

import typer

from peregrine.cli.output import OutputFormat, write_rows
from peregrine.cli.remote_cmd import CaOption, TokenOption, UrlOption, connected, console, err


def analyze(
    sql: Annotated[
        str,
        typer.Argument(
            help="One SELECT, e.g. \"SELECT name, count(*) FROM hunt('H.…', "
            "'Generic.System.Pslist') GROUP BY name\"."
        ),
    ],
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="How to print the rows.")
    ] = OutputFormat.table,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Save to this file instead (.csv, .jsonl or .parquet)."
        ),
    ] = None,
    max_rows: Annotated[
        int | None, typer.Option(help="Fewer rows than the server's limit.", min=1)
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="A shorter time-out than the server's (seconds).", min=0)
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Run SQL on the server over every collection, hunt and the datastore's tables.

    Tables: `flow('F.…', 'Artifact/Source')`, `hunt('H.…', 'Artifact/Source')` (with
    `client_id` and `hostname`), `clients()`, `collections()`, `hunts()`. Read-only, with the
    server's time-out, memory and row limits; needs the ANALYZE permission.
    """
    with connected(url, token, ca_cert) as client:
        if output is not None:
            saved = client.analysis.export(sql, output)
            err.print(f"saved to {saved}")
            return
        rows = client.analysis.iter_rows(sql, max_rows=max_rows, timeout=timeout)
        first = next(rows, None)
        if first is None:
            err.print("0 rows")
            return
        columns = list(first)
        values = ([row.get(c) for c in columns] for row in itertools.chain([first], rows))
        count = write_rows(values, columns, fmt, sys.stdout, console)
    if max_rows is not None and count >= max_rows:
        err.print(f"stopped at --max-rows {max_rows}: there may be more")


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
