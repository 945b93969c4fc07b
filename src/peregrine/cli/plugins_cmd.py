"""``peregrine plugins``: list the query plugins, or document one."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from peregrine.engine.registry import Plugin, TablePlugin
from peregrine.plugin_manager import default_registry

app = typer.Typer(help="List the query plugins or document one.", no_args_is_help=False)
console = Console()


def describe(plugin: Plugin) -> dict[str, Any]:
    """Everything the registry knows about a plugin, as plain data (for --json and docs)."""
    doc: dict[str, Any] = {
        "name": plugin.name,
        "kind": plugin.kind,
        "description": plugin.description,
        "platforms": list(plugin.platforms),
        "supported_here": plugin.supported_here(),
        "permissions": list(plugin.permissions),
        "arguments": [
            {
                "name": a.name,
                "type": a.type,
                "required": a.required,
                "default": a.default,
                "doc": a.doc,
            }
            for a in plugin.arguments
        ],
        "examples": list(plugin.examples),
    }
    if isinstance(plugin, TablePlugin):
        doc["columns"] = [
            {"name": c.name, "type": c.type, "doc": c.doc, "expensive": c.expensive}
            for c in plugin.columns
        ]
    else:
        doc["returns"] = plugin.returns
    return doc


@app.callback(invoke_without_command=True)
def list_plugins(
    ctx: typer.Context,
    search: Annotated[
        str | None, typer.Option("--search", "-s", help="Only plugins whose name or text has this.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List every table and function plugin."""
    if ctx.invoked_subcommand is not None:
        return
    plugins = list(default_registry())
    if search:
        word = search.lower()
        plugins = [p for p in plugins if word in p.name.lower() or word in p.description.lower()]
    if as_json:
        typer.echo(json.dumps([describe(p) for p in plugins], indent=1, default=str))
        return
    table = Table("name", "kind", "description", "needs", header_style="bold")
    for p in plugins:
        needs = ", ".join(p.permissions)
        name = p.name if p.supported_here() else f"[dim]{p.name} (not on this OS)[/dim]"
        table.add_row(name, p.kind, p.description, needs)
    console.print(table)
    console.print(f"[dim]{len(plugins)} plugins; `peregrine plugins show NAME` for details[/dim]")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Plugin name, e.g. glob.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Document one plugin: its arguments, columns, platforms and examples."""
    plugin = default_registry().get(name)
    if plugin is None:
        import difflib

        close = difflib.get_close_matches(name, [p.name for p in default_registry()], n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        Console(stderr=True).print(
            f"[bold red]Error:[/bold red] no plugin named {name!r}.{hint} "
            "`peregrine plugins` lists them."
        )
        raise typer.Exit(1)
    doc = describe(plugin)
    if as_json:
        typer.echo(json.dumps(doc, indent=1, default=str))
        return
    console.print(f"[bold]{plugin.name}[/bold] ({plugin.kind})  {plugin.description}")
    console.print(f"platforms: {', '.join(plugin.platforms)}", highlight=False)
    if plugin.permissions:
        console.print(f"needs permission: {', '.join(plugin.permissions)}")
    if plugin.arguments:
        args = Table("argument", "type", "required", "default", "doc", title="Arguments")
        for a in doc["arguments"]:
            default = "" if a["default"] is None else repr(a["default"])
            args.add_row(a["name"], a["type"], "yes" if a["required"] else "", default, a["doc"])
        console.print(args)
    if "columns" in doc:
        cols = Table("column", "type", "doc", title="Columns")
        for c in doc["columns"]:
            note = " (computed only when selected)" if c["expensive"] else ""
            cols.add_row(c["name"], c["type"], c["doc"] + note)
        console.print(cols)
    else:
        console.print(f"returns: {doc['returns']}")
    for example in plugin.examples:
        console.print(f"  [cyan]peregrine query {json.dumps(example)}[/cyan]", highlight=False)
