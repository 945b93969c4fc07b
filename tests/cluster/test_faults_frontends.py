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

import pytest

from peregrine.cluster.devcluster import DevCluster
from tests.cluster.faults import (
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
