"""Run a simulated fleet for a fixed time, in one process or spread over several.

One process holds at most ~20,000 connections (the open-file cap), so a large fleet is split
into slices, each a ``Fleet`` in its own process (spawned, not forked: a clean interpreter per
slice). The children report their counters twice a second and their full view (latencies
included) at the end; the parent merges them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import multiprocessing
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from peregrine.config import ClientConfig
from peregrine.config.tls import shrink_tls_read_buffers
from peregrine.loadtest.fleet import Fleet
from peregrine.loadtest.keys import KeyStore
from peregrine.loadtest.stats import FleetStats

#: Connections one source address should carry (under the ~28,000 ephemeral ports of one).
PER_ADDRESS = 20_000
PROGRESS_SECONDS = 0.5

Progress = Callable[[FleetStats], None]


@dataclass
class LoadTestOptions:
    clients: int
    key_dir: Path
    processes: int = 1
    rows: int = 10
    row_bytes: int = 100
    ramp: float = 0.0
    duration: float = 60.0
    os_mix: dict[str, float] = field(default_factory=lambda: {"linux": 1.0})
    source_addresses: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    answer_delay: float = 0.0
    events_per_second: float = 0.0


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auto_source_addresses(urls: list[str], clients: int) -> list[str]:
    """Enough 127.0.0.x addresses for ``clients`` connections, when every target is on this
    machine (binding a loopback source to reach another host would fail); else none."""
    needed = math.ceil(clients / PER_ADDRESS)
    if needed <= 1 or not all(is_loopback(u) for u in urls):
        return []
    return [f"127.0.0.{i}" for i in range(1, min(needed, 254) + 1)]


def _slices(total: int, parts: int) -> list[tuple[int, int]]:
    """(first_index, count) of each of ``parts`` near-equal slices of ``total``."""
    base, extra = divmod(total, parts)
    out, first = [], 0
    for p in range(parts):
        count = base + (1 if p < extra else 0)
        out.append((first, count))
        first += count
    return out


async def run_fleet(
    config: ClientConfig,
    options: LoadTestOptions,
    first_index: int,
    count: int,
    progress: Progress | None,
    stop: Callable[[], bool],
    ramp: float,
) -> FleetStats:
    """Run one slice until ``duration`` has passed or ``stop()`` is true."""
    fleet = Fleet(
        config,
        count,
        key_dir=options.key_dir,
        rows=options.rows,
        row_bytes=options.row_bytes,
        os_mix=options.os_mix,
        ramp_per_second=ramp,
        source_addresses=options.source_addresses,
        answer_delay=options.answer_delay,
        events_per_second=options.events_per_second,
        first_index=first_index,
        urls=options.urls or None,
    )
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, interrupted.set)  # stop early, still report
    deadline = time.monotonic() + options.duration
    # 68 KB a simulated client instead of 320 (restored after, for a process that also serves)
    previous_buffer = shrink_tls_read_buffers()
    try:
        await fleet.start()
        while time.monotonic() < deadline and not stop() and not interrupted.is_set():
            await asyncio.sleep(min(PROGRESS_SECONDS, max(0.0, deadline - time.monotonic())))
            if progress is not None:
                progress(fleet.snapshot(with_latencies=False))
    finally:
        # The final counters are of the run, not of the shutdown: take them before stopping.
        final = fleet.snapshot()
        await fleet.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        shrink_tls_read_buffers(previous_buffer)
    return final


def _child(
    config_json: bytes,
    options: LoadTestOptions,
    first_index: int,
    count: int,
    ramp: float,
    reports: Any,
    stop_event: Any,
) -> None:
    """A slice in a child process: progress and the final view go to ``reports``."""
    config = msgspec.json.decode(config_json, type=ClientConfig)

    def progress(stats: FleetStats) -> None:
        reports.put((first_index, False, stats))

    try:
        final = asyncio.run(
            run_fleet(config, options, first_index, count, progress, stop_event.is_set, ramp)
        )
    except BaseException as exc:
        failed = FleetStats(clients=count)
        failed.errors[f"process failed: {type(exc).__name__}: {exc}"] += 1
        reports.put((first_index, True, failed))
        raise
    reports.put((first_index, True, final))


def run_loadtest(
    config: ClientConfig, options: LoadTestOptions, progress: Progress | None = None
) -> FleetStats:
    """Run the whole fleet for ``options.duration`` seconds; returns the merged view."""
    started = time.monotonic()
    keys = KeyStore(options.key_dir)
    keys.load(options.clients)  # once, here: the slices then only read the cache
    generated = keys.generated
    key_seconds = time.monotonic() - started
    processes = max(1, min(options.processes, options.clients or 1))
    if processes == 1:
        final = asyncio.run(
            run_fleet(config, options, 0, options.clients, progress, lambda: False, options.ramp)
        )
    else:
        final = _run_processes(config, options, processes, progress)
    final.keys_generated = generated
    final.key_seconds = key_seconds
    return final


def _run_processes(
    config: ClientConfig, options: LoadTestOptions, processes: int, progress: Progress | None
) -> FleetStats:
    ctx = multiprocessing.get_context("spawn")
    reports = ctx.Queue()
    stop_event = ctx.Event()
    config_json = msgspec.json.encode(config)
    children = []
    for first, count in _slices(options.clients, processes):
        child = ctx.Process(
            target=_child,
            args=(config_json, options, first, count, options.ramp / processes, reports,
                  stop_event),
            name=f"loadtest-{first}",
            daemon=True,
        )  # fmt: skip
        child.start()
        children.append(child)
    latest: dict[int, FleetStats] = {}
    finals: dict[int, FleetStats] = {}
    deadline = time.monotonic() + options.duration + 60.0  # children stop themselves first
    try:
        while len(finals) < len(children):
            if time.monotonic() > deadline or (
                not any(c.is_alive() for c in children) and reports.empty()
            ):
                break
            with contextlib.suppress(queue.Empty):
                first, final, stats = reports.get(timeout=PROGRESS_SECONDS)
                (finals if final else latest)[first] = stats
                if progress is not None and not final:
                    progress(FleetStats.merged(list({**latest, **finals}.values())))
    except KeyboardInterrupt:
        stop_event.set()
        _drain(reports, finals, len(children), 30.0)
    finally:
        stop_event.set()
        for child in children:
            child.join(15)
            if child.is_alive():
                child.terminate()
                child.join(5)
    missing = len(children) - len(finals)
    merged = FleetStats.merged(list(finals.values()))
    merged.clients = options.clients
    if missing:
        merged.errors["process ended without a report"] += missing
    return merged


def _drain(reports: Any, finals: dict[int, FleetStats], want: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(finals) < want and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            first, final, stats = reports.get(timeout=PROGRESS_SECONDS)
            if final:
                finals[first] = stats
