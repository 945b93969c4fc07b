"""Saving a server-side export to a file from a command (notebooks, timelines): the file's
format chosen wrongly is an ``Error:`` line, and where it went is said on standard error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from peregrine.cli.remote_cmd import connected, err, fail
from peregrine.client import Peregrine


def save_export(
    url: str | None, token: str | None, ca_cert: Path | None, export: Callable[[Peregrine], Path]
) -> None:
    try:
        with connected(url, token, ca_cert) as client:
            saved = export(client)
    except ValueError as exc:
        fail(str(exc))
    err.print(f"saved to {saved}")
