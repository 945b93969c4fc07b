"""``peregrine query``: run SQL on this machine and stream the rows."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from peregrine.cli.output import OutputFormat, write_rows
from peregrine.engine import Engine, QueryError, QueryLimits
from peregrine.engine.denylist import Denylist

err = Console(stderr=True)


def parse_params(values: list[str]) -> dict[str, str]:
    """``name=value`` pairs, bound as ``:name`` in the SQL."""
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise typer.BadParameter(
                f"{item!r} is not name=value (bind it in the SQL as :name)", param_hint="--param"
            )
        params[name.strip()] = value
    return params


def query(
    sql: Annotated[str, typer.Argument(help='The SQL to run, e.g. "SELECT * FROM pslist()".')],
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="How to print the rows.")
    ] = OutputFormat.table,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Bind a value: -p name=value, used as :name in SQL."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop the query after this many seconds.", min=0)
    ] = None,
    max_rows: Annotated[
        int | None, typer.Option(help="Stop after this many rows (says so on stderr).", min=0)
    ] = None,
    hard_timeout: Annotated[
        float | None,
        typer.Option(help="Kill the worker after this many seconds (default: 1.5 * timeout + 5)."),
    ] = None,
    max_memory: Annotated[
        int | None, typer.Option(help="Kill the worker when it uses more than this many MB.")
    ] = None,
    in_process: Annotated[
        bool, typer.Option(help="Run in this process, without a worker or watchdog (debugging).")
    ] = False,
    ignore_denylist: Annotated[
        bool, typer.Option(help="Run even if this query killed its worker recently.")
    ] = False,
    show_warnings: Annotated[
        bool, typer.Option(help="Print every warning (skipped files, vanished processes).")
    ] = False,
    denylist_path: Annotated[
        Path | None, typer.Option(help="Denylist file (default: the state directory).")
    ] = None,
) -> None:
    """Run SQL over this machine's plugins and print the rows as they arrive.

    Plugins are tables (`SELECT * FROM glob('/etc/*.conf')`) and functions (`sha256(path)`);
    `peregrine plugins` lists them. Only read-only statements run.
    """
    params = parse_params(param or [])
    limits = QueryLimits(
        timeout=timeout, max_rows=max_rows, hard_timeout=hard_timeout, max_memory_mb=max_memory
    )
    out = sys.stdout
    result: Any = None
    try:
        if in_process:
            result = Engine().execute(sql, params or None, limits=limits)
        else:
            from peregrine.engine.worker import IsolatedQuery

            denylist = None if ignore_denylist else Denylist(denylist_path)
            result = IsolatedQuery(sql, params or None, limits=limits, denylist=denylist)
        # Inside the Ctrl-C handler: the columns come with the first row, which a GROUP BY
        # or an ORDER BY may take minutes to produce.
        columns = [c.name for c in result.columns]
        count = write_rows(result, columns, fmt, out, Console(file=out))
    except KeyboardInterrupt:
        _stop(result)
        err.print("[yellow]cancelled[/yellow]")
        raise typer.Exit(130) from None
    except QueryError as exc:
        err.print(f"[bold red]Error:[/bold red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except BrokenPipeError:
        raise typer.Exit(0) from None
    _report(result.warnings, show_warnings, count, result.truncated, max_rows, fmt)


def _stop(result: Any) -> None:
    """Stop the query; a worker is waited for (killed if need be), since this process exits
    next and the worker must not run on. A second Ctrl-C does not cut this short."""
    if result is None:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(result, "stop"):
        result.stop()
    else:
        result.cancel()


def _report(
    warnings: list[str],
    show_all: bool,
    count: int,
    truncated: bool,
    max_rows: int | None,
    fmt: OutputFormat,
) -> None:
    if truncated:
        err.print(f"[yellow]stopped at --max-rows {max_rows}; there were more rows[/yellow]")
    if warnings:
        shown = warnings if show_all else warnings[:5]
        for warning in shown:
            err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, markup=False)
        if len(warnings) > len(shown):
            err.print(f"[yellow]… and {len(warnings) - len(shown)} more (--show-warnings)[/yellow]")
    if fmt is OutputFormat.table and sys.stderr.isatty():
        err.print(f"[dim]{count} row{'s' if count != 1 else ''}[/dim]")
