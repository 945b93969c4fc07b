"""Redis restarted mid-hunt, PostgreSQL restarted mid-hunt, on a 3-frontend cluster with its
own PostgreSQL (stopped and started for real): the frontends say what is degraded while it
is (``/readyz``, the status route), wait, and recover by themselves; every client's results
arrive exactly once; a leader is elected again once PostgreSQL is back.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from peregrine.cluster.devcluster import DevCluster
from tests.cluster.conftest import api
from tests.cluster.faults import (
    ARTIFACT,
    Stopwatch,
    all_held,
    assert_exactly_once,
    fleet,
    start_hunt,
    wait_hunt_done,
)
from tests.cluster.services import program
from tests.server.harness import wait_until

pytestmark = [pytest.mark.slow]

CLIENTS = 120
ROWS = 1500
#: How long each service stays down.
OUTAGE = 8.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """A cluster whose PostgreSQL is its own (``scripts/postgres``), so a test may stop it."""
    program("haproxy")
    program("redis-server")
    directory = tmp_path_factory.mktemp("cluster") / "dev"
    # Outside pytest's owner-only folders: as root, PostgreSQL runs as the postgres user.
    postgres = Path(tempfile.mkdtemp(prefix="peregrine-faults-pg-"))
    postgres.chmod(0o755)
    try:
        running = DevCluster.up(directory, 3, timeout=120, postgres_dir=postgres / "pg")
        try:
            yield running
        finally:
            running.down()
    finally:
        shutil.rmtree(postgres, ignore_errors=True)


def _answer_delay(index: int) -> float:
    return (index % 20) * 0.3


def _readiness(cluster: DevCluster, name: str) -> tuple[int, dict[str, Any]]:
    """A frontend's /readyz answer, straight from it (not through the balancer): the HTTP
    status and the body."""
    frontend = cluster.frontend(name)
    verify = cluster._tls()
    answer = httpx.get(f"https://{frontend.host}:{frontend.api_port}/readyz", verify=verify)
    return answer.status_code, json.loads(answer.text)


@pytest.mark.timeout(200)
def test_redis_restarted_mid_hunt(cluster: DevCluster, tmp_path: Path) -> None:
    """Agents do not need Redis: every frontend stays ready (degraded) and in the balancer's
    pool while it is away, and a collection made through one frontend for a client another
    holds (its "deliver" notice dropped) still runs once Redis is back."""

    async def scenario() -> None:
        agents = fleet(cluster, CLIENTS, tmp_path / "keys", rows=ROWS, answer_delay=_answer_delay)
        await agents.start()
        direct = api(cluster, "frontend1")
        try:
            await agents.wait_connected(CLIENTS, timeout=60)
            held = await all_held(cluster, agents.client_ids)
            elsewhere = next(c for c, h in held.items() if h != "frontend1")
            hunt_id = await start_hunt(cluster)
            await asyncio.sleep(2)
            clock = Stopwatch()
            cluster.stop_redis()
            status = await wait_until(lambda: _degraded(direct, "bus (Redis"), 15, 0.3)
            noticed = clock()
            checks = await wait_until(lambda: _bus_down_but_ready(cluster, "frontend1"), 15, 0.3)
            said = clock()
            # Made through frontend1 for a client frontend2 or 3 holds: its notice is lost.
            flow = await direct.collections.create(elsewhere, ARTIFACT)
            await asyncio.sleep(max(0.0, OUTAGE - clock()))
            # Two failed checks 2 s apart would have taken them out: all still in the pool.
            assert set(cluster.pool().values()) == {"UP"}, cluster.pool()
            for frontend in cluster.state.frontends:
                assert _bus_down_but_ready(cluster, frontend.name), frontend.name
            cluster.start_redis()
            restarted = clock()
            await wait_until(lambda: _healthy(direct), 30, 0.3)
            recovered = clock() - restarted
            done = await wait_until(lambda: _final(direct, flow.flow_id), 30, 0.3)
            ran = clock() - restarted
            assert done == "Finished", done
            # Presence is written again: every client is found where it is.
            await all_held(cluster, agents.client_ids, timeout=30)
            await wait_hunt_done(cluster, hunt_id, CLIENTS, timeout=60)
            print(
                f"\nRedis down {restarted:.1f} s: status degraded after {noticed:.1f} s "
                f"({status}), /readyz {checks} after {said:.1f} s; healthy {recovered:.1f} s "
                f"after its restart; the collection made meanwhile finished {ran:.1f} s after it"
            )
            await asyncio.to_thread(assert_exactly_once, cluster, hunt_id, agents.client_ids, ROWS)
        finally:
            await direct.close()
            await agents.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(150)
def test_postgresql_restarted_mid_hunt(cluster: DevCluster, tmp_path: Path) -> None:
    async def scenario() -> None:
        agents = fleet(cluster, CLIENTS, tmp_path / "keys", rows=ROWS, answer_delay=_answer_delay)
        await agents.start()
        try:
            await agents.wait_connected(CLIENTS, timeout=60)
            await all_held(cluster, agents.client_ids)
            await wait_until(cluster.leader, 30, 0.2)
            hunt_id = await start_hunt(cluster)
            await asyncio.sleep(2)
            logs = _Logs(cluster)
            clock = Stopwatch()
            await asyncio.to_thread(cluster.stop_postgres)
            checks = await wait_until(lambda: _not_ready(cluster, "frontend1"), 15, 0.3)
            assert checks["datastore"] in ("unavailable", "timeout"), checks
            await asyncio.sleep(max(0.0, OUTAGE - clock()))
            await asyncio.to_thread(cluster.start_postgres)
            restarted = clock()
            leader = await wait_until(cluster.leader, 15, 0.2)
            led = clock() - restarted
            await wait_until(lambda: cluster.is_ready("frontend1"), 15, 0.3)
            await wait_hunt_done(cluster, hunt_id, CLIENTS, timeout=60)
            print(
                f"\nPostgreSQL down {restarted:.1f} s: {leader} led {led:.1f} s after its "
                f"restart; {agents.stats.messages_resent} messages resent; agents saw "
                f"{dict(agents.stats.errors)}"
            )
            # The frontends waited for PostgreSQL with their agents still connected: nothing
            # was acknowledged meanwhile, and nobody had to reconnect and send it again.
            assert agents.stats.errors["connection_lost"] == 0, agents.stats.errors
            await asyncio.to_thread(assert_exactly_once, cluster, hunt_id, agents.client_ids, ROWS)
            # The leader's loops said it once each way, without a traceback per pass.
            for name, text in logs.since().items():
                assert "Traceback" not in text, (name, text[-3000:])
                for loop, most in (("hunt manager", 1), ("flow monitor", 0)):
                    down = text.count(f"{loop}: the datastore (")
                    back = text.count(f"{loop}: the datastore answers again")
                    assert most <= down <= 1 and back == down, (name, loop, text[-3000:])
        finally:
            await agents.stop()

    asyncio.run(scenario())


class _Logs:
    """What each frontend logs from now on."""

    def __init__(self, cluster: DevCluster) -> None:
        folder = cluster.directory / "logs"
        self.paths = {f.name: folder / f"{f.name}.log" for f in cluster.state.frontends}
        self.sizes = {name: path.stat().st_size for name, path in self.paths.items()}

    def since(self) -> dict[str, str]:
        texts = {}
        for name, path in self.paths.items():
            with open(path, "rb") as log:
                log.seek(self.sizes[name])
                texts[name] = log.read().decode(errors="replace")
        return texts


async def _degraded(client: object, word: str) -> list[str] | None:
    status = await client.status()  # type: ignore[attr-defined]
    found = [d for d in status.degraded if word in d]
    return found or None


async def _final(client: object, flow_id: str) -> str | None:
    """The flow's state once it is final."""
    flow = await client.collections.get(flow_id)  # type: ignore[attr-defined]
    state: str = flow.state
    return state if state in ("Finished", "Error", "Cancelled", "Unresponsive") else None


async def _healthy(client: object) -> bool:
    status = await client.status()  # type: ignore[attr-defined]
    return not status.degraded


def _bus_down_but_ready(cluster: DevCluster, name: str) -> dict[str, str] | None:
    """The frontend's /readyz checks when it answers 200 "degraded" with the bus down."""
    code, body = _readiness(cluster, name)
    if code == 200 and body["status"] == "degraded":
        assert body["checks"] == {**body["checks"], "bus": "unavailable"}, body
        checks: dict[str, str] = body["checks"]
        return checks
    return None


def _not_ready(cluster: DevCluster, name: str) -> dict[str, str] | None:
    try:
        checks: dict[str, str] = _readiness(cluster, name)[1]["checks"]
    except httpx.HTTPError:
        return None
    return checks if any(v != "ok" for v in checks.values()) else None
