"""A command group that also runs as its most common command: ``peregrine clients 'os:linux'``
searches, ``peregrine clients label ...`` labels; ``peregrine flows C.…`` lists, ``peregrine
flows log F.…`` shows a log."""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

_HELP = ("--help", "-h")


def default_command(name: str) -> type[TyperGroup]:
    """A group class whose arguments go to the command ``name`` unless they start with the
    name of another of its commands (or ask for the group's help)."""

    class DefaultCommandGroup(TyperGroup):
        default_name = name

        def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Typer's own click
            if not args or (args[0] not in self.commands and args[0] not in _HELP):
                args = [name, *args]
            return super().parse_args(ctx, args)

    return DefaultCommandGroup
