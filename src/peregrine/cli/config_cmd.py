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

from peregrine.cluster.generate import FIRST_FRONTEND_PORT, generate_cluster, plan_frontends
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
    "haproxy.cfg": "balancer configuration: run on the balancer host",
}
_CLUSTER_WHAT = {".yaml": "a frontend's server configuration (holds the enrollment secret)"}


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
    frontends: Annotated[
        int | None,
        typer.Option(
            "--frontends",
            min=1,
            help="Make a cluster of this many frontends behind HAProxy (one configuration "
            "each, haproxy.cfg, client.yaml); --public-url is then the balancer.",
            rich_help_panel="Cluster",
        ),
    ] = None,
    datastore_url: Annotated[
        str,
        typer.Option(
            help="The cluster's PostgreSQL: postgresql://user@host:port/database.",
            rich_help_panel="Cluster",
        ),
    ] = "",
    bus_url: Annotated[
        str,
        typer.Option(help="The cluster's Redis: redis://host:6379/0.", rich_help_panel="Cluster"),
    ] = "",
    filestore_dir: Annotated[
        Path | None,
        typer.Option(
            help="The shared filestore, mounted alike on every frontend (default with all "
            "frontends on loopback: --dir/filestore).",
            rich_help_panel="Cluster",
        ),
    ] = None,
    frontend_hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--frontend-host",
            help="A frontend's host, as the balancer reaches it (one per frontend, or one "
            "for all; default 127.0.0.1).",
            rich_help_panel="Cluster",
        ),
    ] = None,
    frontend_port: Annotated[
        int,
        typer.Option(
            help="The first frontend's agent port (its API: the next one; frontends on one "
            "host count up).",
            rich_help_panel="Cluster",
        ),
    ] = FIRST_FRONTEND_PORT,
    api_port: Annotated[
        int | None,
        typer.Option(
            help="The balancer's API port (default: its agent port + 1).",
            rich_help_panel="Cluster",
        ),
    ] = None,
) -> None:
    """Write a server and a client configuration: CA, TLS certificate, enrollment secret.

    With --frontends N: a cluster (N frontend configurations, haproxy.cfg, client.yaml).
    """
    target = directory or default_data_dir()
    if frontends is not None:
        _generate_cluster(
            target,
            frontends,
            frontend_hosts or [],
            frontend_port,
            datastore_url=datastore_url,
            bus_url=bus_url,
            filestore_dir=filestore_dir,
            public_urls=public_urls,
            api_port=api_port,
            hostnames=hostnames or (),
            labels=labels or (),
            force=force,
        )
        return
    if datastore_url or bus_url or filestore_dir or frontend_hosts or api_port is not None:
        raise _fail(
            "--datastore-url, --bus-url, --filestore-dir, --frontend-host and --api-port "
            "describe a cluster: add --frontends N"
        )
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


def _generate_cluster(
    target: Path,
    count: int,
    hosts: list[str],
    first_port: int,
    *,
    filestore_dir: Path | None,
    public_urls: list[str] | None,
    api_port: int | None,
    **options: Any,
) -> None:
    try:
        made = generate_cluster(
            target,
            plan_frontends(count, hosts, first_port),
            filestore_dir=filestore_dir,
            public_urls=public_urls,
            balancer_api_port=api_port,
            **options,
        )
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    table = Table("file", "mode", "what", title=Text(f"Cluster written to {made.directory}"))
    for path in made.files:
        mode = stat.filemode(path.stat().st_mode)
        what = _WHAT.get(path.name) or _CLUSTER_WHAT.get(path.suffix, "")
        table.add_row(path.name, mode, what)
    console.print(table)
    console.print("Frontends (name, agent and API addresses):", highlight=False)
    for spec in made.frontends:
        console.print(
            f"  {spec.name}: {spec.host}:{spec.port}, API {spec.host}:{spec.api_port}",
            highlight=False,
            markup=False,
        )
    console.print("Agents connect through the balancer:", highlight=False)
    for url in made.client.server_urls:
        console.print(f"  {url}", highlight=False, markup=False)
    console.print(f"API through the balancer: {made.api_url}/api/v1", highlight=False, markup=False)
    console.print("\n[bold]Next:[/bold]")
    lines = [f"  haproxy -f {made.haproxy_config_path}"]
    lines += [
        f"  peregrine server --config {path} --no-local-agent  # on {spec.host}"
        for spec, path in zip(made.frontends, made.frontend_config_paths, strict=True)
    ]
    lines.append(f"  peregrine agent --config {made.client_config_path}")
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


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
