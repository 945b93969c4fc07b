"""The ``peregrine`` command. Each sub-command lives in its own module and is added here.

``peregrine agent`` runs on every endpoint for months: ``main`` gives it a command line of its
own so it never imports what only the server and the API need (SQLAlchemy, FastAPI, pyarrow...),
which would triple its memory.
"""

from __future__ import annotations

import sys

import typer

from peregrine import __version__
from peregrine.cli import server_cmd


def _agent_app() -> typer.Typer:
    lean = typer.Typer(name="peregrine", add_completion=False)
    lean.command("agent")(server_cmd.agent)
    lean.command("version", hidden=True)(lambda: typer.echo(__version__))
    return lean


def main() -> None:
    if sys.argv[1:2] == ["agent"]:
        _agent_app()()  # only the agent's own modules
        return
    from peregrine.cli.full_app import app

    app()


def __getattr__(name: str) -> typer.Typer:
    """``peregrine.cli.app``: the full command table, built on first use."""
    if name == "app":
        from peregrine.cli.full_app import app

        return app
    raise AttributeError(name)
