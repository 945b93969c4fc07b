"""Every ``peregrine`` command, in one Typer app (the agent gets a lean one: see __init__).

``command_app()`` is what the console script runs: each command's module is imported when the
command is used (see lazy_group). ``app`` (built on first use) has every command loaded, for
tests and tools that walk the whole table.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import typer

from peregrine import __version__
from peregrine.cli.lazy_group import Entry, add_entry, lazy_group

_REMOTE: Entry = ("remote_cmd", "register", "register")  # over the API
#: Every command, in the order ``peregrine --help`` lists them.
COMMANDS: dict[str, Entry] = {
    "query": ("query_cmd", "command", "query"),
    "server": ("server_cmd", "command", "server"),
    "agent": ("server_cmd", "command", "agent"),
    "loadtest": ("loadtest_cmd", "command", "loadtest"),
    "collect": _REMOTE,
    "uploads": _REMOTE,
    "results": _REMOTE,
    "analyze": ("analyze_cmd", "register", "register"),  # SQL over collected results
    "version": ("full_app", "command", "version"),
    "plugins": ("plugins_cmd", "group", "app"),
    "artifacts": ("artifacts_cmd", "group", "app"),
    "config": ("config_cmd", "group", "app"),
    "deploy": ("deploy_cmd", "group", "app"),
    "users": ("users_cmd", "group", "app"),
    "clients": _REMOTE,
    "flows": _REMOTE,
    "hunts": _REMOTE,
    "server-artifacts": _REMOTE,
    "events": ("events_cmd", "register", "register"),  # assignments, stored and live events
    "alerts": ("alerts_cmd", "register", "register"),  # alerts and the rules that raise them
    "rules": ("alerts_cmd", "register", "register"),
    "notebooks": ("notebooks_cmd", "group", "app"),
    "timeline": ("timeline_cmd", "group", "app"),
}
_SETTINGS: dict[str, Any] = {
    "name": "peregrine",
    "help": "Peregrine: endpoint visibility and DFIR. Ask an endpoint questions in SQL.",
    "no_args_is_help": True,
    "add_completion": False,
}
_MARKUP: Final = "rich"


def version() -> None:
    """Print Peregrine's version."""
    typer.echo(__version__)


def command_app() -> typer.Typer:
    """The ``peregrine`` command with each command imported when it is used."""
    app = typer.Typer(cls=lazy_group(COMMANDS, _MARKUP), rich_markup_mode=_MARKUP, **_SETTINGS)
    app.callback()(_no_options)  # a group, though no command is registered up front
    return app


def _no_options() -> None:
    """Peregrine: endpoint visibility and DFIR. Ask an endpoint questions in SQL."""


@functools.cache
def full_app() -> typer.Typer:
    """The ``peregrine`` command with every command loaded."""
    app = typer.Typer(rich_markup_mode=_MARKUP, **_SETTINGS)
    done: set[Entry] = set()
    for name, entry in COMMANDS.items():
        if entry[1] != "register" or entry not in done:
            add_entry(app, name, entry)
            done.add(entry)
    return app


def __getattr__(name: str) -> typer.Typer:
    """``app``: the full command table, built on first use."""
    if name == "app":
        return full_app()
    raise AttributeError(name)
