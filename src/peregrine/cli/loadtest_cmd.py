"""``peregrine loadtest``: load a deployment with simulated agents and report what they saw."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from peregrine.config import ConfigError, load_client_config

console = Console(stderr=True)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} s"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} /s"


def _progress_line(stats: Any, clients: int) -> Text:
    return Text.from_markup(
        f"connected [bold green]{stats.connected:,}[/] / {clients:,}   "
        f"ever {stats.ever_connected:,}   errors [bold red]{stats.error_count:,}[/]   "
        f"enrolled {stats.enrolled:,}   flows {stats.flows_answered:,}   "
        f"rows {stats.rows_sent:,}   {stats.elapsed:,.0f}s"
    )


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="Load test", show_header=False)
    table.add_column("measure", style="bold")
    table.add_column("value", justify="right")
    rate = summary["enroll_per_second"]
    rows = [
        ("clients", f"{summary['clients']:,}"),
        ("connected at the end", f"{summary['connected']:,}"),
        ("ever connected", f"{summary['ever_connected']:,}"),
        ("sessions (incl. reconnects)", f"{summary['sessions']:,}"),
        ("errors", f"{summary['errors']:,}"),
        ("time to connect all", _seconds(summary["connect_seconds"])),
        ("connect rate", _rate(summary["connect_per_second"])),
        ("connect latency p50", _ms(summary["connect_ms_p50"])),
        ("connect latency p99", _ms(summary["connect_ms_p99"])),
        ("enrolled", f"{summary['enrolled']:,}"),
        ("enroll rate", _rate(rate)),
        ("keys generated", f"{summary['keys_generated']:,}"),
        ("flows answered", f"{summary['flows_answered']:,}"),
        ("rows sent", f"{summary['rows_sent']:,}"),
        ("MB sent", f"{summary['mb_sent']:,.2f}"),
        ("elapsed", f"{summary['elapsed_seconds']:,.1f} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    for kind, n in sorted(summary["errors_by_kind"].items()):
        table.add_row(f"  error: {kind}", f"{n:,}")
    return table


def loadtest(
    clients: Annotated[int, typer.Option("--clients", "-n", min=1, help="Simulated agents.")],
    config: Annotated[
        Path, typer.Option("--config", "-c", help="client.yaml of the deployment to load.")
    ],
    server: Annotated[
        list[str] | None,
        typer.Option(
            "--server",
            help="Use only this frontend (repeatable); it must be one the client config lists.",
        ),
    ] = None,
    processes: Annotated[
        int, typer.Option(min=1, help="Processes to spread the agents over (~20k each at most).")
    ] = 1,
    rows: Annotated[int, typer.Option(min=0, help="Rows per artifact source answered.")] = 10,
    row_bytes: Annotated[int, typer.Option(min=0, help="Payload bytes per row.")] = 100,
    ramp: Annotated[
        float, typer.Option(min=0, help="New connections per second at start (0: no limit).")
    ] = 500.0,
    duration: Annotated[
        float, typer.Option(min=1, help="Seconds to run; then everything disconnects.")
    ] = 60.0,
    key_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the agents' keys are kept, so a rerun is the same clients "
            "(default: loadtest-keys next to the config)."
        ),
    ] = None,
    os_mix: Annotated[
        str, typer.Option(help="OS shares of the fleet, e.g. linux=3,windows=1,darwin=1.")
    ] = "linux",
    source_addresses: Annotated[
        int | None,
        typer.Option(
            help="Spread connections over 127.0.0.1..N (default: one per 20,000 clients when "
            "the server is on this machine; 0: let the kernel choose)."
        ),
    ] = None,
    answer_delay: Annotated[
        float, typer.Option(min=0, help="Seconds each agent 'works' before answering.")
    ] = 0.0,
    events_per_second: Annotated[
        float,
        typer.Option(
            min=0, help="Event rows each agent sends per assigned event artifact (0: none)."
        ),
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Simulate a fleet of agents speaking the real protocol against a deployment.

    Each simulated agent has a real key (cached in --key-dir), enrolls with the secret,
    keeps a TLS connection pinned to the deployment CA, and answers collections with canned
    rows. It runs for --duration seconds, then prints what it saw.
    """
    from peregrine.loadtest.canned import os_chooser, parse_os_mix
    from peregrine.loadtest.runner import LoadTestOptions, auto_source_addresses, run_loadtest

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.ERROR)
    try:
        cfg = load_client_config(config)
        mix = parse_os_mix(os_mix)
        os_chooser(mix)  # checks the names and weights
    except (ConfigError, ValueError) as exc:
        console.print(f"[bold red]Error:[/bold red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    from peregrine.config import normalize_frontend_url

    urls: list[str] = []
    for url in server or []:
        try:
            canonical = normalize_frontend_url(url)
        except ValueError as exc:
            console.print(f"[bold red]Error:[/bold red] {escape(str(exc))}")
            raise typer.Exit(2) from None
        if canonical not in cfg.server_urls:
            console.print(
                f"[bold red]Error:[/bold red] {url} is not a frontend of this deployment; "
                f"the client config lists {', '.join(cfg.server_urls)}"
            )
            raise typer.Exit(2)
        urls.append(canonical)
    targets = urls or cfg.server_urls
    if source_addresses is None:
        addresses = auto_source_addresses(targets, clients)
    else:
        addresses = [f"127.0.0.{i}" for i in range(1, min(source_addresses, 254) + 1)]
    options = LoadTestOptions(
        clients=clients,
        key_dir=key_dir or config.absolute().parent / "loadtest-keys",
        processes=processes,
        rows=rows,
        row_bytes=row_bytes,
        ramp=ramp,
        duration=duration,
        os_mix=mix,
        source_addresses=addresses,
        urls=urls,
        answer_delay=answer_delay,
        events_per_second=events_per_second,
    )
    console.print(
        f"{clients:,} simulated agents → {', '.join(targets)} for {duration:g}s "
        f"({processes} process{'es' if processes > 1 else ''}"
        f"{f', {len(addresses)} source addresses' if addresses else ''})"
    )
    with Live(Text("starting..."), console=console, refresh_per_second=4, transient=True) as live:
        stats = run_loadtest(cfg, options, lambda s: live.update(_progress_line(s, clients)))
    summary = stats.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        Console().print(_summary_table(summary))
    if stats.ever_connected == 0:
        raise typer.Exit(1)
