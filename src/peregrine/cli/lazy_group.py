"""A command group whose commands are imported when they are used, not when ``peregrine`` starts.

Importing every command module up front loaded most of the package (SQLAlchemy, the datastore,
the engine, the API client) before the arguments were even parsed: 2.2 s for ``peregrine
version``. Here the group knows each command's name and the module that adds it; ``peregrine
clients`` imports the remote commands only, and ``peregrine --help`` (which shows every
command's summary) all of them.
"""

from __future__ import annotations

import importlib
from difflib import get_close_matches
from typing import Any

import typer
from typer.core import TyperGroup
from typer.main import get_group

#: Command name → (module under peregrine.cli, how it adds itself, attribute), in help order.
#: "command": ``app.command(name)(attribute)``; "group": ``app.add_typer(attribute, name=name)``;
#: "register": ``module.register(app)``, which adds several names at once.
Entry = tuple[str, str, str]


def add_entry(app: typer.Typer, name: str, entry: Entry) -> None:
    """Import the module of one table entry and add what it provides to ``app``."""
    module_name, kind, attribute = entry
    module = importlib.import_module(f"peregrine.cli.{module_name}")
    if kind == "command":
        app.command(name)(getattr(module, attribute))
    elif kind == "group":
        app.add_typer(getattr(module, attribute), name=name)
    else:
        getattr(module, attribute)(app)


def lazy_group(table: dict[str, Entry], rich_markup_mode: Any) -> type[TyperGroup]:
    """A group class that loads the commands of ``table`` on first use."""

    class LazyGroup(TyperGroup):
        def list_commands(self, ctx: Any) -> list[str]:
            return [*table, *(name for name in self.commands if name not in table)]

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            if cmd_name not in self.commands and cmd_name in table:
                self.commands.update(load(cmd_name))
            return self.commands.get(cmd_name)

        def resolve_command(self, ctx: Any, args: list[str]) -> Any:
            """An unknown name is refused with the close ones among every command (Typer's
            own suggestions know only the commands loaded so far)."""
            name = args[0] if args else ""
            if name and not name.startswith("-") and self.get_command(ctx, name) is None:
                matches = get_close_matches(name, self.list_commands(ctx))
                hint = f" Did you mean {', '.join(map(repr, matches))}?" if matches else ""
                ctx.fail(f"No such command {name!r}.{hint}")
            return super().resolve_command(ctx, args)

    def load(name: str) -> dict[str, Any]:
        """The click commands of ``name``'s module (all it registers, so it loads once)."""
        holder = typer.Typer(rich_markup_mode=rich_markup_mode, add_completion=False)
        add_entry(holder, name, table[name])
        return dict(get_group(holder).commands)

    return LazyGroup
