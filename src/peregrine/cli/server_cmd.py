"""``peregrine server``: run the embedded server; and ``peregrine agent`` in the full command table
(the agent itself is in ``agent_cmd``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from peregrine.cli import agent_cmd
from peregrine.cli.local_login import LOGIN_FILE, ensure_local_login
from peregrine.cli.server_start import banner, port_problem
from peregrine.config import (
    CLIENT_FILE,
    ConfigError,
    default_server_config,
    load_client_config,
    load_server_config,
)
from peregrine.logformat import FORMATS, LogFormat

console = Console(stderr=True)


def server(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="server.yaml (default: make one).")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where a first start keeps its configuration and data."),
    ] = None,
    local_agent: Annotated[
        bool, typer.Option(help="Also run an agent for this machine in the same process.")
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Frontend processes sharing the ports (use every core; each holds its own "
            "agent connections, past the per-process open-file cap).",
        ),
    ] = 1,
    worker_of: Annotated[int, typer.Option(hidden=True, help="Internal: run as one worker.")] = 0,
    agent_socket: Annotated[
        int | None, typer.Option(hidden=True, help="Internal: the worker's agent socket (fd).")
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="DEBUG, INFO, WARNING or ERROR (default: logging.level, INFO)."),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(help=f"{agent_cmd.LOG_FORMAT_HELP} Default: logging.format, text."),
    ] = None,
    local_login: Annotated[
        bool,
        typer.Option(
            help="Keep an administrator login for the CLI on this machine "
            f"(<data_dir>/{LOGIN_FILE}, owner-only), so `peregrine clients` needs no settings.",
        ),
    ] = True,
) -> None:
    """Run the embedded server: one process, SQLite, a local filestore, and a local agent.

    With no --config it creates a deployment in the data directory on first start (CA,
    certificates, enrollment secret) and reuses it afterwards. It prints where its API and CA
    certificate are and how to log in.
    """
    if log_format is not None and log_format not in FORMATS:
        console.print(
            f"[bold red]Error:[/bold red] --log-format {escape(log_format)}: use text or json"
        )
        raise typer.Exit(2)
    agent_cmd.configure_logging(log_level or "INFO", _log_format(log_format or "text"))
    from peregrine.server.app import Server

    try:
        if config is None:
            config, cfg = default_server_config(data_dir)
            console.print(f"using [bold]{escape(str(config))}[/bold]")
        else:
            cfg = load_server_config(config)
    except ConfigError as exc:
        console.print(f"[bold red]Error:[/bold red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    # The configuration's logging, each part the command line did not set.
    log_level = log_level or cfg.logging.level
    log_format = log_format or cfg.logging.format
    agent_cmd.configure_logging(log_level, _log_format(log_format), cfg.logging.file)

    login = None
    if not worker_of:
        problem = port_problem(cfg, config)
        if problem:
            console.print(f"Error: {problem}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        login = _local_login(cfg) if local_login and cfg.api_port else None

    if workers > 1 and not worker_of:
        _supervise(config, cfg, workers, local_agent, [log_level, log_format], login)
        return

    async def main() -> None:
        srv = Server(cfg, workers=worker_of or 1, agent_socket=agent_socket)
        try:
            await srv.start()
        except OSError as exc:  # a port taken since port_problem() looked
            console.print(f"Error: cannot start: {exc.strerror or exc}", markup=False)
            raise typer.Exit(1) from None
        if not worker_of:
            console.print("[green]Peregrine server running[/green]")
            console.print(banner(cfg, login), markup=False, highlight=False, soft_wrap=True)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_local_agent(cfg, stop))] if local_agent else []
        try:
            await agent_cmd.until_signalled(stop)
        finally:
            for task in tasks:
                await task
            await srv.stop()

    asyncio.run(main())


def _local_login(cfg: Any) -> Path | None:
    """The CLI's login on this machine (see local_login), or None with a warning."""
    from peregrine.auth import AccountError

    try:
        return ensure_local_login(cfg)
    except (AccountError, OSError) as exc:
        console.print(f"[yellow]no local CLI login:[/yellow] {escape(str(exc))}", highlight=False)
        return None


async def _local_agent(cfg: Any, stop: asyncio.Event) -> None:
    """The agent enrolled with the server on first start, until ``stop`` is set."""
    from peregrine.agent.agent import Agent

    agent = Agent(load_client_config(Path(cfg.data_dir) / CLIENT_FILE))
    console.print(f"local agent {agent.client_id}")
    try:
        await agent.run(stop)
    finally:
        agent.close()


def _supervise(
    config_path: Path,
    cfg: Any,
    workers: int,
    local_agent: bool,
    logging: list[str],
    login: Path | None,
) -> None:
    """Run ``workers`` frontend processes (restarted if one dies) and the local agent."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from peregrine.metrics.exposition import prepare_multiprocess_dir, worker_gone
    from peregrine.server.app import LISTEN_BACKLOG
    from peregrine.server.tls_socket import listening_socket

    # Each worker's metrics go to files here, so whichever answers a scrape answers for all.
    metrics_dir = Path(cfg.data_dir) / "metrics"
    env = {**os.environ, **prepare_multiprocess_dir(metrics_dir)}
    # Every worker's agent socket exists before any worker starts, and outlives a worker that
    # dies: the kernel spreads connections over all of them from the first, and those that
    # come for a worker while it (re)starts wait in its backlog. A worker that bound its own
    # would take the whole fleet reconnecting after a restart if it listened first (agents
    # keep their connection), and a dead one's queued connections would be reset.
    agent_sockets: list[socket.socket] = []
    try:
        for _ in range(workers):
            agent_sockets.append(
                listening_socket(cfg.bind_address, cfg.port, LISTEN_BACKLOG, True, socket.socket)
            )
    except OSError as exc:
        for made in agent_sockets:
            made.close()
        console.print(f"Error: cannot listen for agents: {exc.strerror or exc}", markup=False)
        raise typer.Exit(1) from None

    def spawn(number: int) -> subprocess.Popen[bytes]:
        fd = agent_sockets[number].fileno()
        # -P: `-m` would put the working directory first on the frontend's sys.path.
        return subprocess.Popen(
            [sys.executable, "-P", "-m", "peregrine", "server", "--config", str(config_path),
             "--no-local-agent", "--worker-of", str(workers), "--agent-socket", str(fd),
             "--log-level", logging[0], "--log-format", logging[1]],
            env=env,
            pass_fds=(fd,),
        )  # fmt: skip

    children = [spawn(number) for number in range(workers)]
    console.print(f"[green]Peregrine server running[/green]: {workers} frontend processes")
    console.print(banner(cfg, login), markup=False, highlight=False, soft_wrap=True)

    async def main() -> None:
        stop = asyncio.Event()
        agent = asyncio.create_task(_local_agent(cfg, stop)) if local_agent else None

        async def watch() -> None:
            while not stop.is_set():
                await asyncio.sleep(1.0)
                for i, child in enumerate(children):
                    if child.poll() is not None:
                        code = child.returncode
                        console.print(f"[yellow]frontend exited ({code}); restarting[/yellow]")
                        worker_gone(metrics_dir, child.pid)
                        children[i] = spawn(i)

        watcher = asyncio.create_task(watch())
        try:
            await agent_cmd.until_signalled(stop)
        finally:
            stop.set()
            watcher.cancel()
            if agent is not None:
                await agent  # stop is set: it cancels its jobs and closes its connection
            for child in children:
                child.terminate()
            deadline = time.monotonic() + 15
            for child in children:
                try:
                    child.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()

    asyncio.run(main())


def agent(
    config: Annotated[Path, typer.Option("--config", "-c", help=agent_cmd.CONFIG_HELP)],
    log_level: Annotated[str, typer.Option(help=agent_cmd.LOG_LEVEL_HELP)] = "INFO",
    log_format: Annotated[str, typer.Option(help=agent_cmd.LOG_FORMAT_HELP)] = "text",
    state_dir: Annotated[
        Path | None, typer.Option(metavar="DIR", help=agent_cmd.STATE_DIR_HELP)
    ] = None,
) -> None:
    """Run an agent: stay connected to a frontend and answer collections."""
    # `peregrine agent` itself goes to agent_cmd.main (no Typer); this entry keeps the command
    # in the full command table and its help.
    code = agent_cmd.run(config, log_level, _log_format(log_format), state_dir)
    if code:
        raise typer.Exit(code)


def _log_format(value: str) -> LogFormat:
    """A --log-format value as the type configure_logging takes (text unless json)."""
    return "json" if value == "json" else "text"
