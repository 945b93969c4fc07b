"""``peregrine agent``: run an agent, stay connected to a frontend and answer collections.

The agent runs on every endpoint for months, so its command line uses only the standard
library (argparse), not Typer and Rich like the other commands: Typer builds its option parsers
with pydantic, which the agent would then keep in memory for its whole life. The full command
table (``peregrine --help``) lists this command through the Typer wrapper in ``server_cmd``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from peregrine import logformat
from peregrine.logcontext import set_process_context
from peregrine.logformat import FORMATS, LogFormat

HELP = "Run an agent: stay connected to a frontend and answer collections."
CONFIG_HELP = "client.yaml"
LOG_LEVEL_HELP = "DEBUG, INFO, WARNING or ERROR."
LOG_FORMAT_HELP = "text, or json: one JSON object a line with the client, flow and hunt ids."
STATE_DIR_HELP = (
    "Keep the identity and the spool here (DIR/writeback.yaml, DIR/spool) whatever the "
    "configuration says: the configuration can then stay read-only in /etc."
)


def configure_logging(level: str, format: LogFormat = "text", file: str = "") -> None:
    logformat.configure_logging(level, format, file)


async def until_signalled(stop: asyncio.Event) -> None:
    """Wait for SIGINT or SIGTERM, which set ``stop``."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run(
    config: Path,
    log_level: str = "INFO",
    log_format: LogFormat = "text",
    state_dir: Path | None = None,
) -> int:
    """Run the agent configured in ``config`` until it is signalled; the exit code."""
    configure_logging(log_level, log_format)
    from peregrine.agent.agent import Agent
    from peregrine.config import ConfigError, load_client_config

    try:
        cfg = load_client_config(config)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if state_dir is not None:
        cfg = cfg.in_state_dir(state_dir.absolute())

    async def main() -> None:
        runner = Agent(cfg)
        set_process_context(client_id=runner.client_id)  # every line of this process
        print(f"agent {runner.client_id} → {', '.join(cfg.server_urls)}", file=sys.stderr)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:
            await until_signalled(stop)
        finally:
            await task
            runner.close()

    asyncio.run(main())
    return 0


def main(argv: Sequence[str]) -> int:
    """``peregrine agent ARGV``."""
    parser = argparse.ArgumentParser(prog="peregrine agent", description=HELP)
    parser.add_argument("--config", "-c", type=Path, required=True, help=CONFIG_HELP)
    parser.add_argument("--log-level", default="INFO", help=LOG_LEVEL_HELP)
    parser.add_argument("--log-format", default="text", choices=FORMATS, help=LOG_FORMAT_HELP)
    parser.add_argument("--state-dir", type=Path, metavar="DIR", help=STATE_DIR_HELP)
    args = parser.parse_args(argv)
    return run(args.config, args.log_level, args.log_format, args.state_dir)
