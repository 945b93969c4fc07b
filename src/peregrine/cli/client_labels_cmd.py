"""``peregrine clients label CLIENT add|remove LABEL...``: label clients, to target hunts."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from peregrine.cli.remote_cmd import (
    CaOption,
    JsonOption,
    TokenOption,
    UrlOption,
    connected,
    console,
    print_json,
)


class Change(enum.StrEnum):
    add = "add"
    remove = "remove"


def label(
    client_id: Annotated[str, typer.Argument(metavar="CLIENT", help="The client's id (C.…).")],
    change: Annotated[Change, typer.Argument(help="add or remove.")],
    labels: Annotated[list[str], typer.Argument(metavar="LABEL...", help="One or more labels.")],
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """Add or remove a client's labels, then print them all (hunts target clients by label)."""
    with connected(url, token, ca_cert) as client:
        if change is Change.add:
            now = client.clients.label(client_id, add=labels)
        else:
            now = client.clients.label(client_id, remove=labels)
    if as_json:
        print_json({"client_id": client_id, "labels": now})
    else:
        console.print(f"{client_id}: {', '.join(now) or 'no labels'}", markup=False)


def register(clients_app: typer.Typer) -> None:
    clients_app.command("label")(label)
