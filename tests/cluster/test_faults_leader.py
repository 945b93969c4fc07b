"""``kill -9`` of the leader mid-hunt: another frontend takes the PostgreSQL advisory lock
within 10 s, and the leader's work goes on after the hand-over — a recurring hunt's
iterations (one per period, never two), the expiry of each iteration, collections timed
out for want of progress — each done exactly once (counted in the datastore and in the
frontends' logs, which run at INFO here so every such step is logged where it happens).

``pytest -s`` prints the hand-over time (docs/benchmarks.md, "Cluster fail-over").
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from peregrine.cluster.devcluster import DevCluster
from tests.cluster.conftest import api, postgres_server_url
from tests.cluster.faults import ARTIFACT, Stopwatch, all_held, fleet, stores
from tests.cluster.services import program
from tests.server.harness import wait_until

pytestmark = [pytest.mark.slow]

CLIENTS = 30
#: Clients 0..SLOW-1 never get past "started" (they "work" for an hour): their collections
#: with a short progress time-out must be timed out by the leader.
SLOW = 6
PROGRESS_TIMEOUT = 14.0
#: The recurring hunt's period in this test (the API's minimum is a minute: shortened in the
#: datastore, so that a minute holds several periods).
PERIOD = 8.0
FLOW_ERROR = re.compile(r"flow (F\.[0-9a-f]+) of C\.[0-9a-f]+: Error")
HUNT_EXPIRED = re.compile(r"hunt (H\.[0-9a-f]+) expired")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    program("haproxy")
    program("redis-server")
    directory = tmp_path_factory.mktemp("cluster") / "dev"
    running = DevCluster.up(
        directory, 3, postgres_url=postgres_server_url(), log_level="INFO", timeout=120
    )
    try:
        yield running
    finally:
        running.down()


def _answer_delay(index: int) -> float:
    return 3600.0 if index < SLOW else 0.0


def _logged(cluster: DevCluster, pattern: re.Pattern[str]) -> Counter[str]:
    """How often each id matched ``pattern`` in every frontend's log."""
    counts: Counter[str] = Counter()
    for log in (cluster.directory / "logs").glob("frontend*.log"):
        counts.update(pattern.findall(log.read_text(errors="replace")))
    return counts


def _shorten_period(cluster: DevCluster, hunt_id: str) -> None:
    url = make_url(cluster.state.postgres_url).set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE hunts SET schedule = :schedule WHERE hunt_id = :hunt"),
                {"schedule": f'{{"every_seconds": {PERIOD}}}', "hunt": hunt_id},
            )
    finally:
        engine.dispose()


@pytest.mark.timeout(150)
def test_kill_9_of_the_leader_mid_hunt_hands_over_within_10_s_and_nothing_runs_twice(
    cluster: DevCluster, tmp_path: Path
) -> None:
    async def scenario() -> None:
        agents = fleet(cluster, CLIENTS, tmp_path / "keys", answer_delay=_answer_delay)
        await agents.start()
        client = api(cluster)
        try:
            await agents.wait_connected(CLIENTS, timeout=60)
            await all_held(cluster, agents.client_ids)
            leader = await wait_until(cluster.leader, 30, 0.2)
            template = await client.hunts.create(
                ARTIFACT, description="recurring", every_seconds=60, expires_in=3600
            )
            await asyncio.to_thread(_shorten_period, cluster, template.hunt_id)
            await client.hunts.start(template.hunt_id)
            slow = [
                await client.collections.create(
                    cid, ARTIFACT, limits={"progress_timeout": PROGRESS_TIMEOUT}
                )
                for cid in agents.client_ids[:SLOW]
            ]
            await wait_until(lambda: _iterations(cluster, template.hunt_id), 20, 0.2)
            clock = Stopwatch()
            killed_at = time.time()
            cluster.kill_frontend(leader)
            successor = await wait_until(
                lambda: (name := cluster.leader()) not in (None, leader) and name, 30, 0.1
            )
            handover = clock()
            print(f"\nkill -9 of the leader {leader}: {successor} led {handover:.2f} s later")
            assert handover < 10
            # Past the slow collections' time-out and several periods after the hand-over.
            await asyncio.sleep(max(0.0, PROGRESS_TIMEOUT + 8 - clock()))
            await asyncio.sleep(3 * PERIOD)
            await client.hunts.stop(template.hunt_id)
            await asyncio.sleep(3)  # the stop reaches every frontend's leader loop

            iterations = _iterations(cluster, template.hunt_id)
            starts = [h.created for h in iterations]
            gaps = [b - a for a, b in itertools.pairwise(starts)]
            assert len(iterations) >= 4, iterations
            assert min(gaps) >= PERIOD, gaps  # never two iterations in one period
            assert any(t > killed_at + handover for t in starts), "none after the hand-over"
            # Each iteration expired once, by whichever leader there was.
            expired = _logged(cluster, HUNT_EXPIRED)
            for hunt in iterations[:-1]:
                assert hunt.state == "Stopped", hunt
                assert expired[hunt.hunt_id] == 1, (hunt.hunt_id, expired)
            # Each slow collection timed out once, after the hand-over.
            errors = _logged(cluster, FLOW_ERROR)
            for flow in slow:
                done = await client.collections.get(flow.flow_id)
                assert done.state == "Error", done
                assert "no progress" in (done.error or ""), done
                assert done.finished is not None and done.finished > killed_at + handover
                assert errors[flow.flow_id] == 1, (flow.flow_id, errors)
        finally:
            await client.close()
            await agents.stop()

    asyncio.run(scenario())


def _iterations(cluster: DevCluster, template: str) -> list:  # type: ignore[type-arg]
    """The recurring hunt's iterations, oldest first."""
    with stores(cluster) as (datastore, _):
        hunts = datastore.hunts.list(None, 1000, 0)
    return sorted((h for h in hunts if h.parent_id == template), key=lambda h: h.created)
