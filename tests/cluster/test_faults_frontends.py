"""Frontends dying, joining and leaving mid-hunt, on a 3-frontend cluster (real processes,
HAProxy, Redis, PostgreSQL) with a simulated fleet: ``kill -9`` of a frontend while its agents
are answering a hunt loses and doubles nothing; a frontend added while running takes agents;
a frontend stopped gracefully mid-collection drains (out of the balancer's pool first, its
agents moved a few at a time) and nothing in flight is lost.

``pytest -s`` prints the measured times (docs/benchmarks.md, "Cluster fail-over").
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from peregrine.cluster.devcluster import DevCluster
from tests.cluster.conftest import api, holders
from tests.cluster.faults import (
    ARTIFACT,
    Stopwatch,
    all_held,
    assert_exactly_once,
    fleet,
    start_hunt,
    stores,
    wait_hunt_done,
)

pytestmark = [pytest.mark.slow]

CLIENTS = 240
#: Two result messages a client (the simulator sends 1,000 rows a message).
ROWS = 1500
FINAL = {"Finished", "Error", "Cancelled", "Unresponsive"}


def _answer_delay(index: int) -> float:
    """Clients answer over 0 to 7 s, so a fault a few seconds in finds hunts mid-flight."""
    return (index % 25) * 0.3


def _unfinished(cluster: DevCluster, hunt_id: str, clients: list[str]) -> int:
    """How many of ``clients`` have the hunt's collection not yet final."""
    with stores(cluster) as (datastore, _):
        entries = datastore.hunts.clients(hunt_id, limit=100_000)
    mine = set(clients)
    return sum(1 for e in entries if e.client_id in mine and e.state not in FINAL)


@pytest.mark.timeout(150)
def test_kill_9_of_a_frontend_mid_hunt_loses_and_doubles_nothing(
    cluster: DevCluster, tmp_path: Path
) -> None:
    victim = "frontend2"

    async def scenario() -> None:
        agents = fleet(cluster, CLIENTS, tmp_path / "keys", rows=ROWS, answer_delay=_answer_delay)
        await agents.start()
        try:
            await agents.wait_connected(CLIENTS, timeout=60)
            held = await all_held(cluster, agents.client_ids)
            theirs = [c for c, h in held.items() if h == victim]
            assert len(theirs) > CLIENTS // 6, held  # leastconn gave it its share
            hunt_id = await start_hunt(cluster)
            await asyncio.sleep(2.5)
            in_flight = await asyncio.to_thread(_unfinished, cluster, hunt_id, theirs)
            clock = Stopwatch()
            cluster.kill_frontend(victim)
            await all_held(cluster, theirs, timeout=60, avoid=victim)
            reconnected = clock()
            await wait_hunt_done(cluster, hunt_id, CLIENTS, timeout=60)
            print(
                f"\nkill -9 of {victim} holding {len(theirs)} of {CLIENTS} agents, "
                f"{in_flight} of their collections in flight: all reconnected in "
                f"{reconnected:.1f} s; hunt done {clock():.1f} s after the kill; "
                f"{agents.stats.messages_resent} messages resent"
            )
            assert in_flight > 0, "the kill came after the hunt: nothing was in flight"
            await asyncio.to_thread(assert_exactly_once, cluster, hunt_id, agents.client_ids, ROWS)
        finally:
            await agents.stop()

    try:
        asyncio.run(scenario())
    finally:
        cluster.start_frontend(victim)
        cluster.wait_ready(90)


class _Watch:
    """What a test sees while a frontend stops: its own /readyz answers, when HAProxy took
    it out of the agents' pool, and when each of its agents was first held elsewhere."""

    def __init__(self, cluster: DevCluster, name: str, agents: list[str]) -> None:
        self.cluster, self.name, self.agents = cluster, name, agents
        self.answers: list[str] = []
        self.out_of_pool: float | None = None
        self.moved: dict[str, float] = {}

    async def run(self, clock: Stopwatch) -> None:
        frontend = self.cluster.frontend(self.name)
        url = f"https://{frontend.host}:{frontend.api_port}/readyz"
        async with httpx.AsyncClient(verify=self.cluster._tls(), timeout=2) as http:
            while True:
                try:
                    answer = await http.get(url)
                    self.answers.append(f"{answer.status_code} {answer.json()['checks']}")
                except httpx.HTTPError as exc:
                    self.answers.append(type(exc).__name__)
                pool = await asyncio.to_thread(self.cluster.pool)
                if self.out_of_pool is None and pool.get(f"agents/{self.name}") != "UP":
                    self.out_of_pool = clock()
                held = await asyncio.to_thread(holders, self.cluster, self.name)
                for client in self.agents:
                    if client in held and client not in self.moved:
                        self.moved[client] = clock()
                await asyncio.sleep(0.1)


@pytest.mark.timeout(150)
def test_a_graceful_stop_mid_hunt_drains_out_of_the_pool_first_and_loses_nothing(
    cluster: DevCluster, tmp_path: Path
) -> None:
    victim = "frontend3"
    clients = 120

    async def scenario() -> None:
        agents = fleet(cluster, clients, tmp_path / "keys", rows=ROWS, answer_delay=_answer_delay)
        await agents.start()
        try:
            await agents.wait_connected(clients, timeout=60)
            held = await all_held(cluster, agents.client_ids)
            theirs = [c for c, h in held.items() if h == victim]
            assert len(theirs) > clients // 6, held
            hunt_id = await start_hunt(cluster)
            await asyncio.sleep(2.5)
            in_flight = await asyncio.to_thread(_unfinished, cluster, hunt_id, theirs)
            clock = Stopwatch()
            watch = _Watch(cluster, victim, theirs)
            watcher = asyncio.create_task(watch.run(clock))
            await asyncio.to_thread(cluster.stop_frontend, victim)
            stopped = clock()
            await all_held(cluster, theirs, timeout=30, avoid=victim)
            watcher.cancel()
            await wait_hunt_done(cluster, hunt_id, clients, timeout=60)
            moved = sorted(watch.moved.values())
            print(
                f"\ngraceful stop of {victim} holding {len(theirs)} agents, {in_flight} "
                f"collections in flight: out of the pool {watch.out_of_pool} s, its agents "
                f"moved from {moved[0]:.1f} to {moved[-1]:.1f} s, exited after {stopped:.1f} s"
            )
            assert in_flight > 0
            # It said "draining" (rather than refusing connections) while it drained...
            assert any("'accepting': 'draining'" in a for a in watch.answers), watch.answers
            # ...so HAProxy took it out before its agents were sent away, a few at a time.
            assert watch.out_of_pool is not None and watch.out_of_pool <= moved[0], watch.answers
            assert moved[-1] - moved[0] >= 2.0, moved
            await asyncio.to_thread(assert_exactly_once, cluster, hunt_id, agents.client_ids, ROWS)
        finally:
            await agents.stop()

    try:
        asyncio.run(scenario())
    finally:
        cluster.start_frontend(victim)
        cluster.wait_ready(90)


@pytest.mark.timeout(150)
def test_a_frontend_added_while_running_receives_agents(
    cluster: DevCluster, tmp_path: Path
) -> None:
    async def scenario() -> None:
        agents = fleet(cluster, 30, tmp_path / "keys")
        await agents.start()
        newcomers = fleet(cluster, 9, tmp_path / "keys-2")
        balancer = api(cluster)
        try:
            await agents.wait_connected(30, timeout=60)
            await all_held(cluster, agents.client_ids)
            added = await asyncio.to_thread(cluster.add_frontend)
            assert cluster.pool()[f"agents/{added}"] == "UP"
            await newcomers.start()
            await newcomers.wait_connected(9, timeout=60)
            placed = await all_held(cluster, newcomers.client_ids)
            # leastconn: the new, empty frontend takes the new connections.
            assert set(placed.values()) == {added}, placed
            # It is a full member: a collection made through the balancer reaches them.
            for client in newcomers.client_ids[:3]:
                flow = await balancer.collections.create(client, ARTIFACT)
                done = await balancer.collections.wait(flow.flow_id, timeout=60)
                assert done.state == "Finished", done
        finally:
            await balancer.close()
            await newcomers.stop()
            await agents.stop()

    asyncio.run(scenario())
