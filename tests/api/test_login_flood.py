"""A flood of wrong passwords must not slow anything else down.

Each password check is argon2 (64 MiB, tens of milliseconds of CPU) on purpose. When they ran on
the event loop's default thread pool, 64 concurrent wrong logins queued every other thread job
behind them: the status endpoint took 22.7 s and agent handshakes 12.8 s. Password checks now
run on their own bounded pool (excess logins get 429 at once), so an authenticated API call and
an agent handshake stay fast during the flood.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from peregrine.agent.identity import Identity
from peregrine.config import GeneratedConfig
from peregrine.config.model import LoginSettings
from tests.api.conftest import API, PASSWORD, Live, live_deployment
from tests.server.harness import RawAgent

FLOOD = 64
#: Far above what the new code takes (about 0.1 s here); the old code took over 10 s.
RESPONSIVE_SECONDS = 2.0


class Flood:
    """``FLOOD`` clients sending wrong passwords back to back, from a thread of their own."""

    def __init__(self, live: Live, username: str) -> None:
        self.live = live
        self.username = username
        self.statuses: Counter[int] = Counter()
        self.retry_after: set[str] = set()
        self.refusal_seconds: list[float] = []
        self.in_flight = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        deadline = time.monotonic() + 30
        while sum(self.statuses.values()) < FLOOD and time.monotonic() < deadline:
            time.sleep(0.05)  # the flood is going: every client has had an answer
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=FLOOD, max_keepalive_connections=FLOOD)
        async with httpx.AsyncClient(
            base_url=self.live.base + API, verify=self.live.tls, timeout=120, limits=limits
        ) as http:
            workers = [asyncio.create_task(self._worker(http)) for _ in range(FLOOD)]
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self, http: httpx.AsyncClient) -> None:
        body = {"username": self.username, "password": "wrong password, guessed"}
        while True:
            started = time.monotonic()
            response = await http.post("/auth/login", json=body)
            self.statuses[response.status_code] += 1
            if response.status_code == 429:
                self.refusal_seconds.append(time.monotonic() - started)
                self.retry_after.add(response.headers.get("retry-after", ""))


async def handshake(deployment: GeneratedConfig, identity: Identity) -> float:
    """Seconds from connecting to the server's Welcome, for a client already enrolled."""
    started = time.monotonic()
    async with RawAgent(deployment, identity):
        return time.monotonic() - started


def status_seconds(live: Live, token: str) -> float:
    with live.http(token) as http:
        started = time.monotonic()
        response = http.get("/status")
        elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    return elapsed


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_login_flood_leaves_agents_and_the_api_responsive(tmp_path: Path) -> None:
    # No rate limit here: every wrong password is checked, as from many addresses at once.
    unlimited = LoginSettings(failures_per_address=10**9, failures_per_user=10**9)
    with live_deployment(tmp_path, login=unlimited) as live:
        live.make_user("victim", ["reader"], password=PASSWORD)
        token = live.tokens["reader"]
        identities = [Identity.generate() for _ in range(6)]
        for identity in identities:  # enrolled before the flood: their handshakes are timed
            asyncio.run(handshake(live.deployment, identity))
        quiet = [status_seconds(live, token) for _ in range(3)]
        with Flood(live, "victim") as flood:
            api, agents = [], []
            for identity in identities[1:]:
                api.append(status_seconds(live, token))
                agents.append(asyncio.run(handshake(live.deployment, identity)))
                time.sleep(0.5)
        print(
            f"status quiet {statistics.median(quiet):.3f} s; during the flood: status "
            f"max {max(api):.3f} s, handshake max {max(agents):.3f} s; "
            f"answers {dict(flood.statuses)}"
        )
        assert max(api) < RESPONSIVE_SECONDS, api
        assert max(agents) < RESPONSIVE_SECONDS, agents
        # The excess was refused at once, with a time to come back.
        assert flood.statuses[429] > 0, flood.statuses
        assert flood.retry_after and all(v.isdigit() and int(v) >= 1 for v in flood.retry_after)
        assert statistics.median(flood.refusal_seconds) < RESPONSIVE_SECONDS
        assert set(flood.statuses) <= {401, 429}, flood.statuses
