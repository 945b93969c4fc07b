"""``peregrine config``: create a deployment (CA, certificates, secrets), show or export it."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from peregrine.config import (
    SERVER_FILE,
    ClientConfig,
    ConfigError,
    ServerConfig,
    check_server_pki,
    default_data_dir,
    export_client_config,
    generate,
    load_client_config,
    load_server_config,
    masked,
    write_client_config,
)
from peregrine.config.model import DEFAULT_PORT, to_yaml

app = typer.Typer(
    help="Create a deployment (CA, TLS certificates, secrets), show or export its configuration.",
    no_args_is_help=True,
)
# No emoji codes: a fingerprint like ``...:CD:...`` must not turn into a picture.
console = Console(emoji=False)
err = Console(stderr=True, emoji=False)

_WHAT = {
    "ca.pem": "deployment CA certificate (agents pin it)",
    "ca.key": "CA private key: only to issue certificates, may be kept offline",
    "server.pem": "frontend TLS certificate",
    "server.key": "frontend TLS private key",
    "client.yaml": "client configuration: copy to endpoints (holds the enrollment secret)",
    "server.yaml": "server configuration (holds the enrollment secret)",
}


def _fail(message: str) -> typer.Exit:
    err.print("[bold red]Error:[/bold red] ", end="")
    err.print(message, highlight=False, markup=False)
    return typer.Exit(1)


def _default_server_yaml() -> Path:
    return default_data_dir() / SERVER_FILE


@app.command("generate")
def generate_cmd(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Where to write the files (default: the server's data directory, "
            "$PEREGRINE_DATA_DIR, so `peregrine server` finds them without --config).",
        ),
    ] = None,
    public_urls: Annotated[
        list[str] | None,
        typer.Option(
            "--public-url",
            help="A URL agents use to reach a frontend, wss://host:port/agent (repeatable; "
            "default: this host name).",
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="The port the server listens on.")] = DEFAULT_PORT,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Datastore and filestore location (default: --dir)."),
    ] = None,
    hostnames: Annotated[
        list[str] | None,
        typer.Option(
            "--hostname", help="Another name or IP for the frontend certificate (repeatable)."
        ),
    ] = None,
    labels: Annotated[
        list[str] | None,
        typer.Option("--label", help="A label agents with this client config report."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace an existing deployment (new CA: deployed agents are cut off)."
        ),
    ] = False,
) -> None:
    """Write a server and a client configuration: CA, TLS certificate, enrollment secret."""
    target = directory or default_data_dir()
    try:
        made = generate(
            target,
            public_urls,
            port=port,
            data_dir=data_dir,
            hostnames=hostnames or (),
            labels=labels or (),
            force=force,
        )
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    table = Table("file", "mode", "what", title=Text(f"Deployment written to {made.directory}"))
    for path in made.files:
        mode = stat.filemode(path.stat().st_mode)
        table.add_row(path.name, mode, _WHAT.get(path.name, ""))
    console.print(table)
    console.print("Frontend URLs (agents pick one at random):", highlight=False)
    for url in made.server.public_urls:
        console.print(f"  {url}", highlight=False, markup=False)
    console.print(
        f"Listening on {made.server.bind_address}:{made.server.port}; "
        f"data in {made.server.data_dir}",
        highlight=False,
        markup=False,
    )
    console.print("\n[bold]Next:[/bold]")
    for line in (
        f"  peregrine server --config {made.server_config_path}",
        f"  peregrine agent --config {made.client_config_path}",
    ):
        console.print(line, highlight=False, markup=False)


def _load_any(path: Path) -> ServerConfig | ClientConfig:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        data = None  # the loader below reports it with file and line
    if isinstance(data, dict) and "server_urls" in data:
        return load_client_config(path)
    return load_server_config(path)


@app.command("show")
def show(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="A server or client configuration file."),
    ] = None,
) -> None:
    """Print a configuration (secrets masked) and check its certificates."""
    path = config or _default_server_yaml()
    try:
        cfg = _load_any(path)
        warnings = check_server_pki(cfg) if isinstance(cfg, ServerConfig) else []
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    kind = "server" if isinstance(cfg, ServerConfig) else "client"
    console.print(f"[bold]{kind} configuration[/bold] ", end="")
    console.print(str(path), style="dim", markup=False, highlight=False)
    data: dict[str, Any] = masked(cfg)
    text = yaml.safe_dump(data, sort_keys=False, width=200).rstrip()
    console.print(text, highlight=False, markup=False, soft_wrap=True)
    for warning in warnings:
        err.print("[yellow]Warning:[/yellow] ", end="")
        err.print(warning, highlight=False, markup=False)


@app.command("client")
def client(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="The server configuration (default: data dir)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (owner-only) instead of to stdout."),
    ] = None,
    public_urls: Annotated[
        list[str] | None,
        typer.Option("--public-url", help="Frontend URLs for these agents (default: all)."),
    ] = None,
    labels: Annotated[
        list[str] | None, typer.Option("--label", help="Labels these agents report.")
    ] = None,
) -> None:
    """Export a client configuration for agents of a server (pinned CA, enrollment secret)."""
    path = config or _default_server_yaml()
    try:
        server = load_server_config(path)
        made = export_client_config(server, server_urls=public_urls, labels=labels or ())
        if output is None:
            typer.echo(to_yaml(made), nl=False)
            return
        write_client_config(made, output)
        load_client_config(output)  # what we wrote must load
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"{output}: {exc.strerror or exc}") from None
    mode = stat.filemode(output.stat().st_mode)
    err.print(
        f"Client configuration written to {output} ({mode}). Run an agent with: "
        f"peregrine agent --config {output}",
        highlight=False,
        markup=False,
    )
