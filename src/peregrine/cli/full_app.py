"""Every ``peregrine`` command, in one Typer app (the agent gets a lean one: see __init__)."""

from __future__ import annotations

import typer

from peregrine import __version__
from peregrine.cli import (
    alerts_cmd,
    analyze_cmd,
    artifacts_cmd,
    config_cmd,
    deploy_cmd,
    events_cmd,
    loadtest_cmd,
    notebooks_cmd,
    plugins_cmd,
    query_cmd,
    remote_cmd,
    server_cmd,
    timeline_cmd,
    users_cmd,
)

app = typer.Typer(
    name="peregrine",
    help="Peregrine: endpoint visibility and DFIR. Ask an endpoint questions in SQL.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
app.command("query")(query_cmd.query)
app.add_typer(plugins_cmd.app, name="plugins")
app.add_typer(artifacts_cmd.app, name="artifacts")
app.add_typer(config_cmd.app, name="config")
app.add_typer(deploy_cmd.app, name="deploy")
app.command("server")(server_cmd.server)
app.command("agent")(server_cmd.agent)
app.command("loadtest")(loadtest_cmd.loadtest)
app.add_typer(users_cmd.app, name="users")
remote_cmd.register(app)  # clients, collect, flows, results, hunts, server-artifacts (over the API)
analyze_cmd.register(app)  # SQL over collected results, on the server
events_cmd.register(app)  # event monitoring: assignments, status, stored and live events
alerts_cmd.register(app)  # alerts and the rules that raise them
app.add_typer(notebooks_cmd.app, name="notebooks")
app.add_typer(timeline_cmd.app, name="timeline")


@app.command("version")
def version() -> None:
    """Print Peregrine's version."""
    typer.echo(__version__)
