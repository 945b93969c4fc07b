"""``peregrine clients delete CLIENT [--yes] [--force]``: remove a client and all kept of it."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from peregrine.cli.remote_cmd import (
    CaOption,
    JsonOption,
    TokenOption,
    UrlOption,
    connected,
    console,
    fail,
    print_json,
)


def delete(
    client_id: Annotated[str, typer.Argument(metavar="CLIENT", help="The client's id (C.…).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Delete it even while it is connected (it is disconnected)."),
    ] = False,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Delete a client with its collections (results, logs, uploads) and hunt entries.

    Administrators only. A connected client is refused unless --force. An agent that keeps
    running with the enrollment secret comes back as a new client: remove it first to retire
    a machine."""
    if not yes:
        if not sys.stdin.isatty():
            fail(f"deleting {client_id} removes all its collections: pass --yes to confirm")
        typer.confirm(
            f"Delete {client_id} with all its collections, uploads and hunt entries?", abort=True
        )
    with connected(url, token, ca_cert) as client:
        deleted = client.clients.delete(client_id, force=force)
    if as_json:
        print_json(deleted.to_dict())
        return
    note = " (it was connected and was disconnected)" if deleted.was_connected else ""
    console.print(
        f"deleted {deleted.client_id}: {deleted.flows} collections, "
        f"{deleted.bytes_freed:,} bytes of files{note}",
        markup=False,
    )


def register(clients_app: typer.Typer) -> None:
    clients_app.command("delete")(delete)
