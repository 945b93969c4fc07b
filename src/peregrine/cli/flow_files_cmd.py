"""A collection's log (``peregrine flows log F.…``) and its uploaded files (``peregrine uploads
F.… [--download DIR]``, each download checked against the SHA-256 the server recorded)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from peregrine.cli.output import print_table
from peregrine.cli.remote_cmd import (
    CaOption,
    JsonOption,
    TokenOption,
    UrlOption,
    connected,
    console,
    err,
    fail,
    print_json,
)

FlowIdArg = Annotated[str, typer.Argument(metavar="FLOW_ID", help="The collection (F.…).")]
PAGE = 1000


def _clock(stamp: Any) -> str:
    try:
        return datetime.datetime.fromtimestamp(float(stamp)).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def log(
    flow_id: FlowIdArg,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """A collection's log: what the agent and the server said about it, oldest first."""
    entries: list[dict[str, Any]] = []
    with connected(url, token, ca_cert) as client:
        while True:
            page = client.collections.logs(flow_id, offset=len(entries), limit=PAGE)
            entries += page.rows
            if not page.rows or len(entries) >= page.total:
                break
    if as_json:
        print_json(entries)
        return
    for entry in entries:
        line = f"{_clock(entry.get('time'))} {entry.get('level', '')!s:<7} "
        console.print(line + str(entry.get("message", "")), markup=False, highlight=False)
    if not entries:
        console.print("0 log lines")


def uploads(
    flow_id: FlowIdArg,
    download: Annotated[
        Path | None,
        typer.Option(
            "--download",
            "-d",
            help="Save every file into this directory (kept only if its SHA-256 matches).",
        ),
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
) -> None:
    """The files a collection uploaded; --download saves them, each checked by SHA-256."""
    from peregrine.client import IntegrityError

    saved: dict[str, str] = {}
    with connected(url, token, ca_cert) as client:
        found = client.collections.uploads(flow_id)
        if download is not None:
            download.mkdir(parents=True, exist_ok=True)
            for upload in found:
                try:
                    path = client.collections.download(flow_id, upload.upload_id, download)
                except IntegrityError as exc:
                    fail(f"{upload.path}: {exc} (nothing kept)")
                saved[upload.upload_id] = str(path)
                err.print(f"saved {path} (SHA-256 verified)", markup=False)
    if as_json:
        print_json([{**u.to_dict(), "saved": saved.get(u.upload_id)} for u in found])
        return
    rows = [[u.upload_id, u.path, str(u.size), u.sha256] for u in found]
    print_table(console, ["upload id", "path on the client", "bytes", "sha256"], rows, {"sha256"})


def register(app: typer.Typer, flows_app: typer.Typer) -> None:
    flows_app.command("log")(log)
    app.command("uploads")(uploads)
