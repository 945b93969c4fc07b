"""The agent's metrics as a Prometheus text file, rewritten every ``metrics_interval`` seconds
when ``metrics_file`` is set (for node_exporter's textfile collector, or any reader).

A file rather than a port: the agent then listens on nothing (an endpoint's attack surface
stays the one outgoing connection), and the host's existing exporter publishes it. Written by
hand in the text format (a few lines), so the agent does not load prometheus-client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
from pathlib import Path
from typing import TYPE_CHECKING

from peregrine import __version__
from peregrine.agent.stats import STATS

if TYPE_CHECKING:
    from peregrine.agent.agent import Agent

log = logging.getLogger(__name__)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(agent: Agent) -> str:
    """The metrics in Prometheus' text format."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # query workers that have ended
    values = [
        ("peregrine_agent_info", "gauge", "The agent's version and client id.", 1,
         f'{{version="{_escape(__version__)}",client_id="{_escape(agent.client_id)}"}}'),
        ("peregrine_agent_connected", "gauge", "1 while connected to a frontend.",
         int(agent.connected.is_set()), ""),
        ("peregrine_agent_sessions_total", "counter", "Connections a frontend welcomed.",
         agent.sessions, ""),
        ("peregrine_agent_rows_collected_total", "counter",
         "Result rows of collections spooled for sending.", STATS.rows_collected, ""),
        ("peregrine_agent_messages_sent_total", "counter",
         "Spooled messages sent to a frontend (a resend counts again).", STATS.messages_sent,
         ""),
        ("peregrine_agent_spool_bytes", "gauge", "Bytes waiting in the spool.",
         agent.spool.size, ""),
        ("peregrine_agent_sources_failed_total", "counter", "Sources that ended in error.",
         STATS.sources_failed, ""),
        ("peregrine_agent_query_worker_kills_total", "counter",
         "Query workers killed (hard time-out, memory limit) or crashed.", STATS.worker_kills,
         ""),
        ("peregrine_agent_cpu_seconds_total", "counter",
         "CPU time of the agent process (user and system).", own.ru_utime + own.ru_stime, ""),
        ("peregrine_agent_worker_cpu_seconds_total", "counter",
         "CPU time of the agent's ended query workers.", workers.ru_utime + workers.ru_stime,
         ""),
        ("peregrine_agent_max_rss_bytes", "gauge", "Peak resident memory of the agent process.",
         own.ru_maxrss * 1024, ""),
    ]  # fmt: skip
    lines = []
    for name, kind, text, value, labels in values:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name}{labels} {value}"]
    return "\n".join(lines) + "\n"


def write(agent: Agent, path: Path) -> None:
    """Replace the file atomically: a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render(agent))
    tmp.chmod(0o644)  # counts only; the exporter may run as another user
    tmp.replace(path)


async def keep_writing(agent: Agent, path: Path, interval: float) -> None:
    """Write the file now and every ``interval`` seconds; a failure is logged, not fatal."""
    warned = False
    while True:
        try:
            await asyncio.to_thread(write, agent, path)
            warned = False
        except OSError as exc:
            if not warned:
                log.warning("cannot write the metrics file %s: %s", path, exc)
                warned = True
        await asyncio.sleep(interval)


async def stop_writing(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
