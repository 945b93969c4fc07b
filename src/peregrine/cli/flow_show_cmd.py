"""One collection in detail (``peregrine flows show F.…``): its state, counters and warnings,
and each source's outcome, so a "Finished" that is incomplete says why."""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from peregrine.cli.flow_files_cmd import FlowIdArg
from peregrine.cli.output import print_table
from peregrine.cli.remote_cmd import (
    CaOption,
    JsonOption,
    TokenOption,
    UrlOption,
    ago,
    connected,
    console,
    print_json,
    result_set_name,
)

if TYPE_CHECKING:
    from peregrine.client import Flow


def show(
    flow_id: FlowIdArg,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """A collection: state, counters, warnings, and how each source ended."""
    with connected(url, token, ca_cert) as client:
        flow = client.collections.get(flow_id)
    if as_json:
        print_json(flow.to_dict())
        return
    console.print(_summary(flow, time.time()))
    names = [result_set_name(a, s) for a, s in flow.result_sets()]
    rows = [_source_row(n, status) for n, status in zip(names, flow.sources.values(), strict=True)]
    columns = ["source", "status", "rows", "warnings", "uploads skipped", "seconds", "error"]
    print_table(console, columns, rows, {"source"})


def _summary(flow: Flow, now: float) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    warnings = str(flow.warnings)
    if flow.warnings:
        warnings += f" (queries' warnings, uploads left out: peregrine flows log {flow.flow_id})"
    fields: list[tuple[str, str | None]] = [
        ("flow id", flow.flow_id),
        ("client", flow.client_id),
        ("hunt", flow.hunt_id),
        ("artifacts", ", ".join(str(a.get("name")) for a in flow.artifacts)),
        ("state", flow.state),
        ("error", flow.error),
        ("creator", flow.creator),
        ("created", _when(flow.created, now)),
        ("started", _when(flow.started, now)),
        ("finished", _when(flow.finished, now)),
        ("expires", _when(flow.expires, now) if flow.state == "Scheduled" else None),
        ("rows", str(flow.rows)),
        ("bytes", str(flow.bytes)),
        ("uploads", f"{flow.uploads} ({flow.upload_bytes} bytes)"),
        ("log lines", str(flow.logs)),
        ("warnings", warnings),
    ]
    for name, value in fields:
        if value:
            grid.add_row(Text(name), Text(value))
    return grid


def _when(stamp: float | None, now: float) -> str | None:
    if not stamp:
        return None
    clock = datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")
    if stamp > now:
        return f"{clock} (in {ago(now, stamp).removesuffix(' ago')})"
    return f"{clock} ({ago(stamp, now)})"


def _source_row(name: str, status: dict[str, Any]) -> list[str]:
    elapsed = status.get("elapsed")
    return [
        name,
        str(status.get("status", "")),
        str(status.get("rows", "")),
        str(status.get("warnings", 0)),
        str(status.get("uploads_skipped", 0)),
        f"{elapsed:.1f}" if isinstance(elapsed, int | float) else "",
        str(status.get("error") or ""),
    ]


def register(flows_app: typer.Typer) -> None:
    flows_app.command("show")(show)
