"""``peregrine events assign|unassign|assignments|status|rows|export|follow``: event monitoring
over the API — which event artifacts run where, how they run, and the events they sent."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from peregrine.cli.output import print_table
from peregrine.cli.remote_cmd import (
    CaOption,
    JsonOption,
    LimitOption,
    TokenOption,
    UrlOption,
    ago,
    connected,
    console,
    duration,
    fail,
    print_json,
)

events_app = typer.Typer(
    help="Event monitoring: event artifacts running continuously on clients.",
    no_args_is_help=True,
)

Artifact = Annotated[str, typer.Argument(metavar="ARTIFACT", help="A CLIENT_EVENT artifact.")]
ClientOption = Annotated[str | None, typer.Option("--client", help="One client's.")]
ArtifactOption = Annotated[str | None, typer.Option("--artifact", help="One artifact's.")]
SinceOption = Annotated[str, typer.Option("--since", help="From 30m, 12h, 7d... ago.")]


def _parameters(given: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; a value that reads as JSON is taken as such (numbers, lists)."""
    out: dict[str, Any] = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or not name:
            fail(f"--param {item!r}: write NAME=VALUE")
        try:
            out[name] = json.loads(value)
        except ValueError:
            out[name] = value
    return out


def _print_set(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(answer)
        return
    console.print(f"assignment set version {answer['version']}", markup=False)
    rows = [
        [
            a["artifact"],
            ", ".join(a["labels"]) or "(every client)",
            json.dumps(a["parameters"]) if a["parameters"] else "",
            a["modified_by"],
            ago(a["modified"]),
        ]
        for a in answer["assignments"]
    ]
    print_table(console, ["artifact", "labels", "parameters", "by", "changed"], rows)


@events_app.command("assign")
def assign(
    artifact: Artifact,
    labels: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Only clients with it (repeat).")
    ] = None,
    params: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE (repeat).")
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Run an event artifact on every client, or on clients with a --label (replaces its
    earlier assignment). Connected clients start it at once."""
    with connected(url, token, ca_cert) as client:
        answer = client.events.assign(artifact, _parameters(params or []), labels or [])
    _print_set(answer, as_json)


@events_app.command("unassign")
def unassign(
    artifact: Artifact,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Stop an event artifact on every client."""
    with connected(url, token, ca_cert) as client:
        answer = client.events.unassign(artifact)
    _print_set(answer, as_json)


@events_app.command("assignments")
def assignments(
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """List which event artifacts run on which clients."""
    with connected(url, token, ca_cert) as client:
        answer = client.events.assignments()
    _print_set(answer, as_json)


@events_app.command("status")
def status(
    client_id: ClientOption = None,
    artifact: ArtifactOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """How event artifacts run on clients (running, restarting with why, failed, stopped)."""
    with connected(url, token, ca_cert) as client:
        statuses = client.events.status(client_id, artifact)
    if as_json:
        print_json(statuses)
        return
    rows = [
        [s["client_id"], s["artifact"], s["state"], str(s["restarts"]), ago(s["updated"]),
         s["error"] or ""]
        for s in statuses
    ]  # fmt: skip
    columns = ["client", "artifact", "state", "restarts", "reported", "error"]
    print_table(console, columns, rows, ids={"client"})


@events_app.command("rows")
def rows(
    client_id: Annotated[str, typer.Argument(metavar="CLIENT", help="The client id.")],
    artifact: Artifact,
    since: SinceOption = "1h",
    limit: LimitOption = 100,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many.")] = 0,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """A client's stored events of one artifact since --since, oldest first."""
    start = time.time() - duration(since, "--since")
    with connected(url, token, ca_cert) as client:
        found = client.events.rows(client_id, artifact, start, None, offset, limit)
    if as_json:
        print_json(found)
        return
    columns = list(dict.fromkeys(k for row in found for k in row))
    print_table(console, columns, [[str(row.get(c, "")) for c in columns] for row in found])


@events_app.command("export")
def export(
    client_id: Annotated[str, typer.Argument(metavar="CLIENT", help="The client id.")],
    artifact: Artifact,
    output: Annotated[Path, typer.Option("--output", "-o", help="File: .csv, .jsonl or .parquet.")],
    since: SinceOption = "1d",
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Export a client's events of one artifact since --since to a file (streamed)."""
    start = time.time() - duration(since, "--since")
    with connected(url, token, ca_cert) as client:
        path = client.events.export(client_id, artifact, output, start=start)
    console.print(f"wrote {path}", markup=False)


@events_app.command("follow")
def follow(
    client_id: ClientOption = None,
    artifact: ArtifactOption = None,
    seconds: Annotated[
        float | None, typer.Option("--for", help="Stop after this many seconds.")
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Print events as the server stores them, until Ctrl-C (JSON lines with --json)."""
    with connected(url, token, ca_cert) as client:
        for batch in client.events.follow(client_id, artifact, seconds):
            for number, row in enumerate(batch["rows"]):
                event = {
                    "client_id": batch["client_id"],
                    "hostname": batch["hostname"],
                    "artifact": batch["artifact"],
                    "seq": batch["first_seq"] + number,
                    **row,
                }
                if as_json:  # one line each, flushed: for a pipe into jq or a SIEM
                    sys.stdout.write(json.dumps(event, default=str) + "\n")
                    sys.stdout.flush()
                else:
                    console.print("  ".join(f"{k}={v}" for k, v in event.items()), markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")
