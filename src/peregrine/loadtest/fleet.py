"""A simulated fleet: many ``SimAgent`` in one event loop, one shared TLS context.

Used by ``peregrine loadtest`` and by tests that need thousands of clients (hunts): start it,
wait for the clients to connect, take some offline and bring them back, read what it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from peregrine.config import ClientConfig, client_ssl_context, normalize_frontend_url
from peregrine.loadtest import canned
from peregrine.loadtest.keys import KeyStore
from peregrine.loadtest.sim import SimAgent
from peregrine.loadtest.stats import FleetStats
from peregrine.protocol.keepalive import Keepalive

_random = random.Random()  # noqa: S311 (jitter; own state, so the global generator stays seeded)

log = logging.getLogger(__name__)

RowsFor = Callable[[int, str, str], int]


class Fleet:
    """``count`` simulated clients of the deployment ``config`` points at.

    ``rows``: rows per artifact source, or ``rows(index, artifact, source)``; ``row_bytes``:
    payload bytes per row. ``os_for(index)`` (or ``os_mix`` weights, e.g. {"linux": 2,
    "windows": 1}) decides each client's OS. ``ramp_per_second`` limits new connections at
    start (0: all at once). ``source_addresses`` are loopback addresses the connections are
    spread over (past the ephemeral-port limit of one). ``answer_delay`` (seconds, or a
    function of the index) is how long a client "works" before its rows. ``first_index``
    offsets host names and keys when a fleet is split over processes. ``urls`` picks some of
    the config's frontends (never others). ``events_per_second``: rows each client sends
    per assigned event artifact (canned process starts), in batches at the assignment's
    ``batch_seconds``.
    """

    def __init__(
        self,
        config: ClientConfig,
        count: int,
        *,
        key_dir: Path,
        rows: int | RowsFor = 10,
        row_bytes: int = 100,
        os_mix: Mapping[str, float] | None = None,
        os_for: Callable[[int], str] | None = None,
        ramp_per_second: float = 0.0,
        source_addresses: Sequence[str] = (),
        answer_delay: float | Callable[[int], float] = 0.0,
        first_index: int = 0,
        urls: Sequence[str] | None = None,
        open_timeout: float = 30.0,
        ping_interval: float | None = 30.0,
        ping_timeout: float | None = 60.0,
        events_per_second: float = 0.0,
    ) -> None:
        if count < 0:
            raise ValueError("count must be 0 or more")
        self.config = config
        self.count = count
        self.key_store = KeyStore(Path(key_dir))
        self.first_index = first_index
        self.urls = _pick_urls(config, urls)
        self.row_bytes = max(0, row_bytes)
        self.payload = canned.payload(self.row_bytes)
        self._rows = rows
        self._answer_delay = answer_delay
        self.os_for = os_for or canned.os_chooser(os_mix or {"linux": 1.0})
        self.ramp_per_second = ramp_per_second
        self.source_addresses = list(source_addresses)
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        #: Pings every connection every ``ping_interval``, as the real agent's websockets does,
        #: from one task for the fleet (a task and timers per connection cost the simulator
        #: more CPU than the server it loads).
        self.keepalive = (
            Keepalive(ping_interval, ping_timeout or math.inf, tick=min(1.0, ping_interval / 10))
            if ping_interval
            else None
        )
        #: Event rows each client sends per second for each event artifact assigned to it.
        self.events_per_second = max(0.0, events_per_second)
        self.boot_time = time.time() - 3600.0
        self.ssl_context = client_ssl_context(config)
        self.stats = FleetStats(clients=count)
        self.stopping = False
        self.sims = [SimAgent(self, first_index + i) for i in range(count)]
        self._started_at: float | None = None
        self._ramp_task: asyncio.Task[None] | None = None
        self._ever: set[int] = set()

    # -- what tests and reports read ----------------------------------------------------------

    @property
    def connected(self) -> int:
        return self.stats.connected

    @property
    def client_ids(self) -> list[str]:
        """Client ids in index order (available once ``start`` has loaded the keys)."""
        return [sim.client_id for sim in self.sims]

    def sim(self, index: int) -> SimAgent:
        """The simulated client at position ``index`` of this fleet (0 .. count-1)."""
        return self.sims[index]

    def rows_for(self, index: int, artifact: str, source: str) -> int:
        rows = self._rows
        return max(0, rows(index, artifact, source) if callable(rows) else rows)

    def answer_delay_for(self, index: int) -> float:
        delay = self._answer_delay
        return max(0.0, delay(index) if callable(delay) else delay)

    def snapshot(self, with_latencies: bool = True) -> FleetStats:
        if self._started_at is not None:
            self.stats.elapsed = time.monotonic() - self._started_at
        return self.stats.snapshot(with_latencies)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load (or make) the keys, then start connecting at the ramp rate; returns at once."""
        self._started_at = began = time.monotonic()
        self.stats.started = time.time()
        keys = await asyncio.to_thread(self.key_store.load, self.first_index + self.count)
        for sim, raw in zip(self.sims, keys[self.first_index :], strict=True):
            sim.raw_key = raw
        self.stats.keys_generated = self.key_store.generated
        self.stats.key_seconds = time.monotonic() - began
        self._ramp_task = asyncio.create_task(self._ramp())

    async def _ramp(self) -> None:
        rate = self.ramp_per_second
        t0 = time.monotonic()
        for n, sim in enumerate(self.sims):
            if self.stopping:
                return
            if rate > 0:
                due = t0 + (n + _random.random()) / rate
                wait = due - time.monotonic()
                if wait > 0.002:
                    await asyncio.sleep(wait)
            sim.task = asyncio.create_task(sim.run())
            if rate <= 0 and n % 500 == 499:
                await asyncio.sleep(0)  # let the first ones make progress

    async def wait_connected(self, n: int | None = None, timeout: float = 60.0) -> None:
        """Wait until at least ``n`` (default: every online client) are connected.

        Connected means welcomed by the server; the server's own registry may lag a moment
        (tests that need it wait for ``server.connections`` too)."""
        want = sum(1 for s in self.sims if s.online) if n is None else n
        deadline = time.monotonic() + timeout
        while self.stats.connected < want:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.stats.connected} of {want} simulated clients connected within "
                    f"{timeout} s (errors: {dict(self.stats.errors)})"
                )
            await asyncio.sleep(0.02)

    async def set_online(self, indices: Iterable[int], online: bool) -> None:
        """Take clients offline (their connections are closed; returns when closed) or bring
        them back (they reconnect with the same identity)."""
        chosen = [self.sims[i] for i in indices]
        for sim in chosen:
            sim.online = online
            sim.wake()
        if not online:
            await asyncio.gather(*(s.disconnect("simulated client offline") for s in chosen))

    async def stop(self, timeout: float = 10.0) -> None:
        """Close every connection and end every task."""
        self.stopping = True
        if self._ramp_task is not None:
            self._ramp_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ramp_task
        for sim in self.sims:
            sim.online = False
            sim.wake()
        await asyncio.gather(*(s.disconnect("simulator stopping") for s in self.sims if s.ws))
        tasks = [s.task for s in self.sims if s.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for sim in self.sims:
            sim.cancel_flows()
        if self.keepalive is not None:
            await self.keepalive.stop()
        flows = [f.task for s in self.sims for f in s.flows.values() if f.task is not None]
        flows += [s.resender for s in self.sims if s.resender is not None]
        await asyncio.gather(*flows, return_exceptions=True)
        self.snapshot(with_latencies=False)

    # -- called by the simulated clients ------------------------------------------------------

    def note_welcome(self, sim: SimAgent, latency: float, enrolled: bool) -> None:
        stats = self.stats
        stats.sessions += 1
        stats.connect_latencies.append(latency)
        if sim.index not in self._ever:
            self._ever.add(sim.index)
            stats.ever_connected += 1
            stats.last_first_connect = time.time()
        if enrolled:
            now = time.time()
            stats.enrolled += 1
            stats.first_enrolled = stats.first_enrolled or now
            stats.last_enrolled = now

    async def replace_key(self, index: int, raw: bytes) -> None:
        await asyncio.to_thread(self.key_store.replace, index, raw)


def _pick_urls(config: ClientConfig, urls: Sequence[str] | None) -> list[str]:
    """The frontends to use: the config's, or the given subset of them (nothing else)."""
    if not urls:
        return list(config.server_urls)
    picked = []
    for url in urls:
        canonical = normalize_frontend_url(url)
        if canonical not in config.server_urls:
            raise ValueError(
                f"{url} is not a frontend of this deployment (the client config lists "
                f"{', '.join(config.server_urls)})"
            )
        picked.append(canonical)
    return picked
