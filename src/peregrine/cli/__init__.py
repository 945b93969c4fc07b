"""The ``peregrine`` command. Each sub-command lives in its own module and is added here.

``peregrine agent`` runs on every endpoint for months: ``main`` sends it to ``agent_cmd``, a
command line of its own on argparse, so it never imports what only the other commands need
(SQLAlchemy, FastAPI, pyarrow for the server and the API; Typer, Rich and pydantic for the
command table), which would more than double its memory. ``peregrine version`` prints without
the command table; every other command goes through it, and it imports only that command's
module (full_app, lazy_group).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer


def main() -> None:
    if sys.argv[1:2] == ["agent"]:
        from peregrine.cli import agent_cmd

        sys.exit(agent_cmd.main(sys.argv[2:]))
    if sys.argv[1:] == ["version"]:  # nothing to parse: no need for Typer (and pydantic)
        from peregrine import __version__

        print(__version__)
        return
    from peregrine.cli.full_app import command_app

    command_app()()


def __getattr__(name: str) -> typer.Typer:
    """``peregrine.cli.app``: the full command table, built on first use."""
    if name == "app":
        from peregrine.cli.full_app import app

        return app
    raise AttributeError(name)
