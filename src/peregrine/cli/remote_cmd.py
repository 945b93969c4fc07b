"""CLI commands over the REST API: ``clients``, ``collect``, ``flows``, ``results``, ``hunts``
and ``server-artifacts``.

They work from anywhere that reaches the server: the connection comes from ``--url``,
``--token`` and ``--ca-cert`` or ``PEREGRINE_URL``, ``PEREGRINE_TOKEN`` and
``PEREGRINE_CA_CERT``; on the server's own machine, from the login it keeps (``local_login``).
Every command takes ``--json`` for scripts; a refusal from the server prints
``Error: <the server's reason>`` and exits with status 1.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from peregrine.cli.default_group import default_command
from peregrine.cli.local_login import LocalLoginError, login_path, read_local_login
from peregrine.cli.output import OutputFormat, print_table, write_rows, yaml_text

if TYPE_CHECKING:  # the API client (httpx) is imported by the commands that connect
    from peregrine.client import Flow, Hunt, HuntProgress, Peregrine, RowsPage

console = Console(emoji=False, highlight=False)
err = Console(stderr=True, emoji=False, highlight=False)

clients_app = typer.Typer(
    cls=default_command("search"),
    help="The server's clients: search them (the default: peregrine clients 'label:prod'), "
    "label them, delete them.",
)
flows_app = typer.Typer(
    cls=default_command("list"),
    help="Collections: a client's list (the default: peregrine flows C.…), one in detail "
    "(show), its log.",
)
hunts_app = typer.Typer(
    help="Hunts on the server: create, start, watch, results.", no_args_is_help=True
)
artifacts_app = typer.Typer(
    help="The server's artifacts: list, show, check and add custom ones.", no_args_is_help=True
)

# -- connection options (every command) ---------------------------------------------------------

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="PEREGRINE_URL", help="The API, e.g. https://peregrine.example:8444."
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="PEREGRINE_TOKEN",
        help="An API token (peregrine users token NAME).",
        show_default=False,
    ),
]
CaOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert",
        envvar="PEREGRINE_CA_CERT",
        help="The deployment's CA certificate, to verify the server.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="Param=value (to every artifact declaring Param) or Artifact.Name:Param=value.",
    ),
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="table, json, jsonl or csv.")
]
LimitOption = Annotated[int, typer.Option("--limit", "-n", min=1, help="Rows to show.")]
AllOption = Annotated[bool, typer.Option("--all", help="Every row, however many.")]
SortOption = Annotated[str | None, typer.Option("--sort", help="Order the rows by COLUMN.")]
DescOption = Annotated[bool, typer.Option("--desc", help="With --sort: largest first.")]
FilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        help="Keep rows whose COLUMN contains TEXT (column:text), or compare "
        "(column:>10, :<=2.5, :=x, :!=x); repeatable, all must hold.",
    ),
]
ResultsExportOption = Annotated[
    Path | None,
    typer.Option("--export", help="Stream every row to FILE (.csv, .jsonl or .parquet)."),
]


def row_view_options(sort: str | None, desc: bool, filters: list[str] | None) -> dict[str, Any]:
    """The client's ``sort``/``order``/``filters`` from the command's options."""
    return {"sort": sort, "order": "desc" if desc else "asc", "filters": filters or ()}


def fail(message: str) -> NoReturn:
    err.print(f"Error: {message}", markup=False)
    raise typer.Exit(1)


@contextlib.contextmanager
def connected(url: str | None, token: str | None, ca_cert: Path | None) -> Iterator[Peregrine]:
    """The client, with every server error printed as ``Error: <detail>`` (exit status 1).

    Settings not given come from the local deployment's login on the server's own machine."""
    url, token, ca_cert = _with_local_login(url, token, ca_cert)
    if not url:
        fail(
            "no server given: pass --url https://HOST:8444 or set PEREGRINE_URL "
            "(and PEREGRINE_TOKEN, PEREGRINE_CA_CERT); on the server's machine, "
            f"`peregrine server` writes them to {login_path()}"
        )
    if not token:
        fail(
            "no API token given: pass --token or set PEREGRINE_TOKEN "
            "(make one on the server with: peregrine users token NAME)"
        )
    from peregrine.client import Peregrine, PeregrineError

    try:
        with Peregrine(url, token, ca_cert=ca_cert) as client:
            yield client
    except PeregrineError as exc:
        fail(exc.detail)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def _with_local_login(
    url: str | None, token: str | None, ca_cert: Path | None
) -> tuple[str | None, str | None, Path | None]:
    """Fill in what was not given from the local login, when there is one for this URL."""
    try:
        local = read_local_login()
    except LocalLoginError as exc:
        if url:
            return url, token, ca_cert
        fail(str(exc))
    if local is None or (url and url.rstrip("/") != local.url):
        return url, token, ca_cert
    return local.url, token or local.token, ca_cert or local.ca_cert


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# -- small formatting helpers -------------------------------------------------------------------


def ago(when: float | None, now: float | None = None) -> str:
    """``12s ago``, ``5m ago``, ``3h ago``, ``2d ago``; ``never`` for nothing."""
    if not when:
        return "never"
    seconds = max(0.0, (now or time.time()) - when)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def warnings_note(flow: Flow) -> str:
    """``, 3 warnings (peregrine flows show F.…)``, or nothing when there were none."""
    if not flow.warnings:
        return ""
    plural = "s" if flow.warnings != 1 else ""
    return f", {flow.warnings} warning{plural} (peregrine flows show {flow.flow_id})"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text: str, option: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` in seconds."""
    match = _DURATION.match(text.lower())
    if not match:
        raise typer.BadParameter(
            f"{text!r} is not a duration like 30m, 12h or 7d", param_hint=option
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)i?b?\s*$")


def byte_size(text: str, option: str) -> int:
    """``1048576``, ``512K``, ``100M``, ``2G`` in bytes (powers of 1024)."""
    match = _SIZE.match(text.lower())
    if not match:
        raise typer.BadParameter(f"{text!r} is not a size like 500K, 100M or 2G", param_hint=option)
    return int(match.group(1)) * int(1024 ** "_kmgt".index(match.group(2) or "_"))


def artifact_params(
    client: Peregrine, names: Sequence[str], values: Sequence[str]
) -> list[tuple[str, dict[str, str]]]:
    """``Param=value`` goes to every artifact that declares Param, ``Artifact:Param=value`` to
    that one; a parameter no artifact declares is refused here, before anything starts."""
    per: dict[str, dict[str, str]] = {name: {} for name in names}
    declared: dict[str, set[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not Param=value", param_hint="--param")
        target, colon, param = key.rpartition(":")
        if colon and target not in per:
            fail(f"{target} is not being collected (in --param {item})")
        targets = [target] if colon else list(names)
        if len(targets) == 1:
            per[targets[0]][param] = value  # the server says if it is not a parameter
            continue
        for name in targets:
            if name not in declared:
                shown = client.artifacts.show(name)
                declared[name] = {str(p.get("name")) for p in shown.get("parameters") or []}
        chosen = [name for name in targets if param in declared[name]]
        if not chosen:
            fail(f"no artifact being collected has a parameter {param!r}")
        for name in chosen:
            per[name][param] = value
    return list(per.items())


def columns_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def emit_rows(rows: Iterable[Mapping[str, Any]], fmt: OutputFormat, first: list[Any]) -> int:
    """Write rows (the first page given, to name the columns) in ``fmt`` to stdout."""
    columns = columns_of(first)
    values = ([row.get(c) for c in columns] for row in rows)
    if fmt is OutputFormat.table and not columns:
        console.print("0 rows")
        return 0
    return write_rows(values, columns, fmt, sys.stdout, console)


def result_set_name(artifact: str, source: str) -> str:
    return f"{artifact}/{source}" if source else artifact


# -- clients, collections -----------------------------------------------------------------------


def clients(
    search: Annotated[
        str, typer.Argument(help="e.g. 'label:prod os:linux host:web-*', 'recent:15m'.")
    ] = "",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 100,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Search the server's clients (every one with no search)."""
    with connected(url, token, ca_cert) as client:
        page = client.clients.search(search, limit=limit)
    if as_json:
        print_json(page.to_dict())
        return
    now = time.time()
    rows = [
        [
            c.client_id,
            c.hostname or "",
            c.os or "",
            ", ".join(c.labels),
            "connected" if c.online else ago(c.last_seen, now),
        ]
        for c in page.items
    ]
    print_table(console, ["client id", "host", "os", "labels", "last seen"], rows)
    if page.total > len(page.items):
        err.print(f"{len(page.items)} of {page.total} clients (--limit for more)")


def _flow_progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("[bold]{task.fields[state]}[/]"),
        TextColumn("{task.fields[rows]} rows"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # nothing to animate in a log file
    )


def collect(
    client_id: Annotated[str, typer.Argument(metavar="CLIENT", help="The client's id.")],
    artifacts: Annotated[list[str], typer.Argument(metavar="ARTIFACT", help="To collect.")],
    param: ParamOption = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            help="The collection's time-out once running, e.g. 90s, 10m "
            "(default: the artifact's, else the server's).",
        ),
    ] = None,
    progress_timeout: Annotated[
        str | None,
        typer.Option("--progress-timeout", help="Error if no progress for this long, e.g. 5m."),
    ] = None,
    max_rows: Annotated[
        int | None, typer.Option("--max-rows", min=1, help="Rows per source at most.")
    ] = None,
    max_upload_bytes: Annotated[
        str | None,
        typer.Option(
            "--max-upload-bytes", help="Bytes of uploaded files at most, e.g. 500M (0: none)."
        ),
    ] = None,
    cpu_limit: Annotated[
        float | None,
        typer.Option("--cpu-limit", min=0.1, max=100, help="Percent of one CPU at most."),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires", help="Give up if the client has not started it within this, e.g. 2h."
        ),
    ] = None,
    wait: Annotated[
        float, typer.Option("--wait", min=1, help="Seconds to wait here for it to finish.")
    ] = 600,
    show_rows: Annotated[
        int, typer.Option("--show-rows", min=1, help="Rows shown per result set (table).")
    ] = 1000,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Collect artifacts on one client, wait for them (live progress), print the results.

    The limits (--timeout, --max-rows, --max-upload-bytes ...) apply on the client; --wait only
    says how long this command waits (the collection carries on after it).
    """
    limits = {
        "timeout": duration(timeout, "--timeout") if timeout else None,
        "progress_timeout": (
            duration(progress_timeout, "--progress-timeout") if progress_timeout else None
        ),
        "max_rows": max_rows,
        "max_upload_bytes": byte_size(max_upload_bytes, "--max-upload-bytes")
        if max_upload_bytes is not None
        else None,
        "cpu_limit": cpu_limit,
        "expires_in": duration(expires, "--expires") if expires else None,
    }
    from peregrine.client import WaitTimeout

    with connected(url, token, ca_cert) as client:
        calls = artifact_params(client, artifacts, param or [])
        chosen = {k: v for k, v in limits.items() if v is not None}
        flow = client.collections.create(client_id, calls, limits=chosen or None)
        try:
            with _flow_progress() as progress:
                task = progress.add_task(flow.flow_id, state=flow.state, rows=0, total=None)
                done = client.collections.wait(
                    flow.flow_id,
                    wait,
                    on_update=lambda f: progress.update(task, state=f.state, rows=f.rows),
                )
        except WaitTimeout:
            fail(
                f"{flow.flow_id} still running after {wait:g} s; it carries on: "
                f"see it later with `peregrine results {flow.flow_id}`"
            )
        if as_json:
            results = {
                result_set_name(a, s): list(client.collections.iter_results(done.flow_id, a, s))
                for a, s in done.result_sets()
            }
            print_json({"flow": done.to_dict(), "results": results})
        else:
            note = warnings_note(done)
            rows = f"{done.rows} row{'s' if done.rows != 1 else ''}"
            err.print(f"{done.flow_id}: {done.state}, {rows}{note}", markup=False)
            for artifact, source in done.result_sets():
                _print_result_set(client, done, artifact, source, show_rows)
    if done.state != "Finished":
        fail(f"{done.flow_id} {done.state}: {done.error or 'no reason given'}")


def _print_result_set(
    client: Peregrine, flow: Flow, artifact: str, source: str, max_rows: int
) -> None:
    page = client.collections.results(flow.flow_id, artifact, source, limit=min(max_rows, 10_000))
    console.print(f"\n[bold]{escape(result_set_name(artifact, source))}[/] ({page.total} rows)")
    emit_rows(page.rows, OutputFormat.table, page.rows)
    if page.total > len(page.rows):
        err.print(
            f"showing {len(page.rows)} of {page.total}: "
            f"peregrine results {flow.flow_id} --artifact {artifact} --source '{source}' --all"
        )


def flows(
    client_id: Annotated[str, typer.Argument(metavar="CLIENT", help="The client's id.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 50,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """A client's collections, newest first."""
    with connected(url, token, ca_cert) as client:
        found = client.collections.list(client_id, limit=limit)
    if as_json:
        print_json([f.to_dict() for f in found])
        return
    now = time.time()
    rows = [
        [
            f.flow_id,
            ", ".join(str(a.get("name")) for a in f.artifacts),
            f.state,
            str(f.rows),
            str(f.uploads),
            str(f.warnings),
            ago(f.created, now),
            f.creator,
            f.error or "",
        ]
        for f in found
    ]
    columns = ["flow id", "artifacts", "state", "rows", "uploads", "warnings", "created",
               "creator", "error"]  # fmt: skip
    print_table(console, columns, rows)


def _rows(
    pages: Iterator[dict[str, Any]] | None, first: list[dict[str, Any]]
) -> Iterable[dict[str, Any]]:
    return first if pages is None else chain(first, pages)


def results(
    flow_id: Annotated[str, typer.Argument(help="The collection (F.…).")],
    artifact: Annotated[
        str | None, typer.Option("--artifact", "-a", help="Default: every result set.")
    ] = None,
    source: Annotated[str, typer.Option("--source", "-s")] = "",
    fmt: FormatOption = OutputFormat.table,
    limit: LimitOption = 100,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    everything: AllOption = False,
    sort: SortOption = None,
    desc: DescOption = False,
    filters: FilterOption = None,
    export: ResultsExportOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """A collection's results (a page, or --all; sorted and filtered on the server), or an
    export of one result set."""
    view = row_view_options(sort, desc, filters)
    with connected(url, token, ca_cert) as client:
        if artifact is None:
            sets = client.collections.get(flow_id).result_sets()
            if (fmt is not OutputFormat.table or export is not None) and len(sets) > 1:
                names = ", ".join(result_set_name(a, s) for a, s in sets)
                fail(f"{flow_id} has several result sets ({names}): pass --artifact and --source")
        else:
            sets = [(artifact, source)]
        if export is not None:
            if not sets:
                fail(f"{flow_id} has no results yet: wait for it (peregrine flows show {flow_id})")
            [(name, src)] = sets
            path = client.collections.export(flow_id, name, export, source=src)
            err.print(f"exported to {path} ({path.stat().st_size} bytes)", markup=False)
            return
        for name, src in sets:
            page = client.collections.results(
                flow_id, name, src, offset, min(limit, 10_000), **view
            )
            rest = None
            if everything and len(page.rows) < page.total - offset:
                rest = _following(
                    functools.partial(client.collections.results, flow_id, name, src, **view),
                    offset + len(page.rows),
                )
            if fmt is OutputFormat.table:
                console.print(f"[bold]{escape(result_set_name(name, src))}[/] ({page.total} rows)")
            emit_rows(_rows(rest, page.rows), fmt, page.rows)
            if not everything and page.total > offset + len(page.rows):
                err.print(f"showing {len(page.rows)} of {page.total} rows (--all for every row)")


def _following(fetch: Callable[[int, int], RowsPage], offset: int) -> Iterator[dict[str, Any]]:
    """The rows from ``offset`` on, a large page at a time."""
    while True:
        page = fetch(offset, 5000)
        yield from page.rows
        if len(page.rows) < 5000:
            return
        offset += len(page.rows)


# -- hunts --------------------------------------------------------------------------------------


def _hunt_line(hunt: Hunt) -> str:
    return f"{hunt.hunt_id}: {hunt.state}"


@hunts_app.command("create")
def hunts_create(
    artifacts: Annotated[list[str], typer.Argument(metavar="ARTIFACT", help="To collect.")],
    param: ParamOption = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Only clients with this label.")
    ] = None,
    exclude_label: Annotated[
        list[str] | None, typer.Option("--exclude-label", help="Not clients with this label.")
    ] = None,
    os_: Annotated[
        list[str] | None, typer.Option("--os", help="Only this OS (linux, windows, darwin).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most this many clients.")
    ] = None,
    expires: Annotated[str, typer.Option("--expires", help="e.g. 12h, 7d.")] = "7d",
    rate: Annotated[
        float | None, typer.Option("--rate", min=0, help="Clients notified per second.")
    ] = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    start: Annotated[bool, typer.Option("--start", help="Start it at once.")] = False,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Create a hunt (paused unless --start)."""
    expires_in = duration(expires, "--expires")
    with connected(url, token, ca_cert) as client:
        hunt = client.hunts.create(
            artifact_params(client, artifacts, param or []),
            description=description,
            include_labels=label or [],
            exclude_labels=exclude_label or [],
            os=os_ or [],
            client_limit=limit,
            expires_in=expires_in,
            notifications_per_second=rate,
        )
        warnings = list(hunt.warnings)
        if start:
            hunt = client.hunts.start(hunt.hunt_id)
            warnings += [w for w in hunt.warnings if w not in warnings]
    for warning in warnings:
        err.print(f"warning: {warning}", markup=False)
    if as_json:
        print_json({**hunt.to_dict(), "warnings": warnings})
    elif start:
        console.print(f"{hunt.hunt_id}: {hunt.state} (peregrine hunts watch {hunt.hunt_id})")
    else:
        console.print(f"{hunt.hunt_id}: {hunt.state} (peregrine hunts start {hunt.hunt_id})")


@hunts_app.command("list")
def hunts_list(
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Paused, Running, Stopped, Archived.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 100,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Hunts, newest first."""
    with connected(url, token, ca_cert) as client:
        found = client.hunts.list(state=state, limit=limit)
    if as_json:
        print_json([h.to_dict() for h in found])
        return
    now = time.time()
    rows = [
        [
            h.hunt_id,
            h.state,
            ", ".join(str(a.get("name")) for a in h.artifacts),
            h.description,
            ago(h.created, now),
            h.creator,
        ]
        for h in found
    ]
    columns = ["hunt id", "state", "artifacts", "description", "created", "creator"]
    print_table(console, columns, rows)


def _hunt_change(
    action: str, hunt_id: str, url: str | None, token: str | None, ca: Path | None, json_: bool
) -> None:
    with connected(url, token, ca) as client:
        hunt = getattr(client.hunts, action)(hunt_id)
    for warning in hunt.warnings:
        err.print(f"warning: {warning}", markup=False)
    if json_:
        print_json(hunt.to_dict())
    else:
        console.print(_hunt_line(hunt))


HuntIdArg = Annotated[str, typer.Argument(metavar="HUNT_ID", help="The hunt (H.…).")]


@hunts_app.command("start")
def hunts_start(
    hunt_id: HuntIdArg,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Start (or resume) a hunt."""
    _hunt_change("start", hunt_id, url, token, ca_cert, as_json)


@hunts_app.command("pause")
def hunts_pause(
    hunt_id: HuntIdArg,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Pause a hunt: no new clients are scheduled."""
    _hunt_change("pause", hunt_id, url, token, ca_cert, as_json)


@hunts_app.command("stop")
def hunts_stop(
    hunt_id: HuntIdArg,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Also cancel its collections still running.")
    ] = False,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Stop a hunt for good."""
    with connected(url, token, ca_cert) as client:
        hunt = client.hunts.stop(hunt_id, cancel=cancel)
    if as_json:
        print_json(hunt.to_dict())
    else:
        console.print(_hunt_line(hunt))


@hunts_app.command("archive")
def hunts_archive(
    hunt_id: HuntIdArg,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Archive a hunt."""
    _hunt_change("archive", hunt_id, url, token, ca_cert, as_json)


@hunts_app.command("add")
def hunts_add(
    hunt_id: HuntIdArg,
    client_id: Annotated[str, typer.Argument(metavar="CLIENT", help="The client's id.")],
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Schedule a hunt on one more client now (even when paused or expired)."""
    with connected(url, token, ca_cert) as client:
        added = client.hunts.add_client(hunt_id, client_id)
    if as_json:
        print_json({"hunt_id": hunt_id, "client_id": client_id, "added": added})
    else:
        console.print(f"{client_id}: scheduled" if added else f"{client_id} already has {hunt_id}")


_OPTIONAL_STATS = {"waiting", "uploads", "upload_bytes"}


def _stats_table(stats: Mapping[str, Any]) -> Table:
    table = Table("statistic", "value", header_style="bold")
    for name in (
        "scheduled", "waiting", "in_progress", "finished", "with_results", "without_results",
        "errors", "cancelled", "unresponsive", "rows", "bytes", "uploads", "upload_bytes",
    ):  # fmt: skip
        # Older servers' statistics lack waiting and uploads: shown only when known.
        if name in stats and (stats[name] or name not in _OPTIONAL_STATS):
            table.add_row(name.replace("_", " "), str(stats[name]))
    return table


@hunts_app.command("show")
def hunts_show(
    hunt_id: HuntIdArg,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """A hunt and its statistics."""
    with connected(url, token, ca_cert) as client:
        hunt = client.hunts.get(hunt_id)
        stats = client.hunts.stats(hunt_id)
    if as_json:
        print_json({"hunt": hunt.to_dict(), "stats": stats.to_dict()})
        return
    now = time.time()
    console.print(f"[bold]{hunt.hunt_id}[/]  {hunt.state}  {escape(hunt.description)}")
    console.print(
        "artifacts: " + ", ".join(str(a.get("name")) for a in hunt.artifacts), markup=False
    )
    console.print(
        f"created {ago(hunt.created, now)} by {hunt.creator}; "
        f"expires in {max(0, int((hunt.expires - now) // 3600))}h",
        markup=False,
    )
    if hunt.include_labels or hunt.exclude_labels or hunt.os:
        console.print(
            f"labels {hunt.include_labels or 'any'}, not {hunt.exclude_labels or 'none'}, "
            f"os {hunt.os or 'any'}",
            markup=False,
        )
    console.print(_stats_table(stats.to_dict()))


@hunts_app.command("watch")
def hunts_watch(
    hunt_id: HuntIdArg,
    until_done: Annotated[
        bool,
        typer.Option("--until-done", help="Stop watching once every scheduled client is done."),
    ] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1, help="Stop watching after this long.")
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """A live progress bar of the hunt's clients, until it stops (or Ctrl-C)."""
    from peregrine.client import WaitTimeout

    last: HuntProgress | None = None
    with (
        connected(url, token, ca_cert) as client,
        Progress(
            TextColumn(hunt_id),
            TextColumn("[bold]{task.fields[state]}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "in progress {task.fields[running]}  errors {task.fields[errors]}  "
                "rows {task.fields[rows]}"
            ),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ) as progress,
    ):
        task = progress.add_task("", total=None, state="", running=0, errors=0, rows=0)
        lines = _ProgressLines(enabled=not err.is_terminal and not as_json)
        try:
            with contextlib.closing(client.hunts.watch(hunt_id, timeout)) as states:
                for last in states:
                    lines.show(_hunt_progress_line(hunt_id, last))
                    progress.update(
                        task,
                        total=last.scheduled or None,
                        completed=last.done,
                        state=last.state,
                        running=last.in_progress + last.waiting,
                        errors=last.errors,
                        rows=last.rows,
                    )
                    if until_done and last.scheduled and last.done >= last.scheduled:
                        break
        except WaitTimeout:
            pass  # watching ends; the hunt goes on
    if last is None:
        return
    if as_json:
        print_json(last.to_dict())
    else:
        console.print(_hunt_progress_line(hunt_id, last), markup=False)


def _hunt_progress_line(hunt_id: str, last: HuntProgress) -> str:
    return (
        f"{hunt_id}: {last.state}, {last.done} of {last.scheduled} clients done "
        f"({last.finished} finished, {last.errors} errors), {last.rows} rows"
    )


class _ProgressLines:
    """Progress as plain lines on stderr when there is no terminal to animate (a log, a pipe):
    a line when something changed, at most one a second."""

    def __init__(self, enabled: bool, interval: float = 1.0) -> None:
        self.enabled = enabled
        self.interval = interval
        self._last_line = ""
        self._last_time = 0.0

    def show(self, line: str) -> None:
        now = time.monotonic()
        if not self.enabled or line == self._last_line or now - self._last_time < self.interval:
            return
        err.print(line, markup=False, soft_wrap=True)
        self._last_line, self._last_time = line, now


@hunts_app.command("results")
def hunts_results(
    hunt_id: HuntIdArg,
    artifact: Annotated[
        str | None,
        typer.Option("--artifact", "-a", help="Which artifact (default: the hunt's only one)."),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="Which source (default: the artifact's only one)."),
    ] = None,
    export: ResultsExportOption = None,
    fmt: FormatOption = OutputFormat.table,
    limit: LimitOption = 100,
    everything: AllOption = False,
    sort: SortOption = None,
    desc: DescOption = False,
    filters: FilterOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """A hunt's combined results (each row with client_id and hostname), or an export."""
    with connected(url, token, ca_cert) as client:
        artifact, source = _hunt_result_set(client, hunt_id, artifact, source)
        if export is not None:
            path = client.hunts.export(hunt_id, artifact, export, source=source)
            err.print(f"exported to {path} ({path.stat().st_size} bytes)", markup=False)
            return
        view = row_view_options(sort, desc, filters)
        page = client.hunts.results(hunt_id, artifact, source, 0, min(limit, 10_000), **view)
        rest = None
        if everything and len(page.rows) < page.total:
            rest = _following(
                functools.partial(client.hunts.results, hunt_id, artifact, source, **view),
                len(page.rows),
            )
        emit_rows(_rows(rest, page.rows), fmt, page.rows)
        if not everything and page.total > len(page.rows):
            err.print(f"showing {len(page.rows)} of {page.total} rows (--all for every row)")


def _hunt_result_set(
    client: Peregrine, hunt_id: str, artifact: str | None, source: str | None
) -> tuple[str, str]:
    """The (artifact, source) asked for, or the only one there is."""
    if artifact is None:
        names = [str(a.get("name")) for a in client.hunts.get(hunt_id).artifacts]
        if len(names) != 1:
            fail(f"{hunt_id} collects several artifacts ({', '.join(names)}): pass --artifact")
        artifact = names[0]
    if source is None:
        sources = [str(s.get("name") or "") for s in client.artifacts.show(artifact)["sources"]]
        if len(sources) > 1:
            fail(f"{artifact} has several sources ({', '.join(sources)}): pass --source")
        source = sources[0] if sources else ""
    return artifact, source


# -- the server's artifacts ---------------------------------------------------------------------


@artifacts_app.command("list")
def artifacts_list(
    search: Annotated[str | None, typer.Argument(help="Words in the name or summary.")] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """The artifacts the server knows."""
    with connected(url, token, ca_cert) as client:
        found = client.artifacts.list(search)
    if as_json:
        print_json([a.to_dict() for a in found])
        return
    rows = [[a.name, a.type, a.summary] for a in found]
    print_table(console, ["name", "type", "summary"], rows, ids={"name"})


@artifacts_app.command("show")
def artifacts_show(
    name: Annotated[str, typer.Argument(help="The artifact's name.")],
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """An artifact's definition (YAML)."""
    with connected(url, token, ca_cert) as client:
        definition = client.artifacts.show(name)
    if as_json:
        print_json(definition)
    else:
        sys.stdout.write(yaml_text(definition))


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")


@artifacts_app.command("check")
def artifacts_check(
    file: Annotated[Path, typer.Argument(help="Artifact YAML to check.")],
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Check artifact YAML on the server (queries compiled there); nothing is stored."""
    text = _read(file)
    with connected(url, token, ca_cert) as client:
        problems = client.artifacts.check(text)
    if as_json:
        print_json([p.to_dict() for p in problems])
    else:
        for p in problems:
            console.print(str(p).replace("request", str(file), 1), markup=False)
        if not problems:
            console.print(f"{file}: no problems")
    if any(p.severity == "error" for p in problems):
        raise typer.Exit(1)


@artifacts_app.command("put")
def artifacts_put(
    file: Annotated[Path, typer.Argument(help="Artifact YAML to add or update.")],
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Add or update custom artifacts on the server (checked first)."""
    text = _read(file)
    with connected(url, token, ca_cert) as client:
        stored = client.artifacts.put(text)
    if as_json:
        print_json([a.to_dict() for a in stored])
    else:
        for a in stored:
            console.print(f"stored {a.name}", markup=False)


def register(app: typer.Typer) -> None:
    """Add these commands to the ``peregrine`` command."""
    from peregrine.cli import client_delete_cmd, client_labels_cmd, flow_files_cmd, flow_show_cmd

    clients_app.command("search")(clients)
    client_labels_cmd.register(clients_app)
    client_delete_cmd.register(clients_app)
    app.add_typer(clients_app, name="clients")
    app.command("collect")(collect)
    flows_app.command("list")(flows)
    flow_files_cmd.register(app, flows_app)
    flow_show_cmd.register(flows_app)
    app.add_typer(flows_app, name="flows")
    app.command("results")(results)
    app.add_typer(hunts_app, name="hunts")
    app.add_typer(artifacts_app, name="server-artifacts")
