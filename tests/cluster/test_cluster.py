"""Three frontend processes behind HAProxy, on PostgreSQL and Redis: agents (the fleet
simulator, speaking the real protocol) connect through the balancer; a collection created
through any frontend's API reaches its agent wherever it is held, and its live state streams
from any frontend; a frontend stopped (gracefully or ``kill -9``) leaves HAProxy's pool, its
agents reconnect to the others, and it comes back into the pool when started again."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from peregrine.cluster.devcluster import DevCluster
from peregrine.config import load_client_config
from peregrine.loadtest import Fleet
from tests.cluster.conftest import api, holders
from tests.server.harness import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ARTIFACT = "Linux.Sys.Groups"
ROWS = 3


def _fleet(cluster: DevCluster, count: int, key_dir: Path) -> Fleet:
    client = load_client_config(Path(cluster.state.client_config))
    config = msgspec.structs.replace(client, poll_min=0.2, poll_max=1.0)
    return Fleet(config, count, key_dir=key_dir, ramp_per_second=50, rows=ROWS)


async def _all_held(
    cluster: DevCluster, clients: list[str], timeout: float = 30, avoid: str = ""
) -> dict[str, str]:
    """Wait until every client is connected to some frontend other than ``avoid`` (as the
    frontends told Redis; a killed frontend's list lingers until it expires)."""

    def check() -> dict[str, str] | None:
        held = holders(cluster, avoid)
        return held if set(clients) <= set(held) else None

    found: dict[str, str] = await wait_until(check, timeout, 0.25)
    return {c: found[c] for c in clients}


async def _finished_at(action: Callable[[str], None], name: str) -> float:
    """Run ``action(name)`` in a thread; the monotonic time it returned."""
    await asyncio.to_thread(action, name)
    return time.monotonic()


def test_a_collection_made_through_any_frontend_reaches_its_agent_wherever_it_is_held(
    cluster: DevCluster, tmp_path: Path
) -> None:
    names = [f.name for f in cluster.state.frontends]

    async def scenario() -> None:
        fleet = _fleet(cluster, 9, tmp_path / "keys")
        await fleet.start()
        try:
            await fleet.wait_connected(9, timeout=60)
            held = await _all_held(cluster, fleet.client_ids)
            # leastconn spread the agents over every frontend.
            assert set(Counter(held.values())) == set(names), held
            through = {name: api(cluster, name) for name in names}
            balancer = api(cluster)
            try:
                for i, (maker, watcher) in enumerate(
                    zip(names, names[1:] + names[:1], strict=True)
                ):
                    # A client held by neither the frontend taking the request nor the one
                    # streaming the flow's state.
                    client = next(c for c, h in held.items() if h not in (maker, watcher))
                    flow = await through[maker].collections.create(client, ARTIFACT)
                    done = await through[watcher].collections.wait(flow.flow_id, timeout=60)
                    assert done.state == "Finished", (i, done)
                    page = await balancer.collections.results(flow.flow_id, ARTIFACT)
                    assert len(page.rows) == ROWS
                # Through the balancer too, for every client: each collection finishes.
                flows = [await balancer.collections.create(c, ARTIFACT) for c in held]
                for flow in flows:
                    done = await balancer.collections.wait(flow.flow_id, timeout=60)
                    assert done.state == "Finished", done
            finally:
                for client_api in (*through.values(), balancer):
                    await client_api.close()
        finally:
            await fleet.stop()

    asyncio.run(scenario())


def test_a_stopped_frontend_leaves_the_pool_and_its_agents_reconnect_to_the_others(
    cluster: DevCluster, tmp_path: Path
) -> None:
    async def scenario() -> None:
        fleet = _fleet(cluster, 9, tmp_path / "keys")
        await fleet.start()
        balancer = api(cluster)
        try:
            await fleet.wait_connected(9, timeout=60)
            held = await _all_held(cluster, fleet.client_ids)
            for stop, how in (("frontend2", "graceful"), ("frontend3", "kill -9")):
                moved = [c for c, h in held.items() if h == stop]
                assert moved, held  # leastconn gave it some agents
                started = time.monotonic()
                # A graceful stop drains for seconds before the process exits: the signal is
                # the moment that counts, so the stop runs beside the watch (and the agents'
                # event loop keeps running meanwhile).
                stopper = cluster.stop_frontend if how == "graceful" else cluster.kill_frontend
                stopping = asyncio.create_task(_finished_at(stopper, stop))
                out = {f"agents/{stop}": "DOWN", f"api/{stop}": "DOWN"}
                await wait_until(lambda: out.items() <= cluster.pool().items(), 15, 0.2)  # noqa: B023
                left_pool = time.monotonic() - started
                exited = await stopping - started
                # Its agents are back, on the frontends still running.
                held = await _all_held(cluster, fleet.client_ids, timeout=30, avoid=stop)
                back = time.monotonic() - started
                # The API through the balancer is not sent to the stopped frontend.
                for _ in range(10):
                    assert (await balancer.status()) is not None
                print(
                    f"{stop} ({how}): out of the pool {left_pool:.1f} s, exited {exited:.1f} s, "
                    f"agents back {back:.1f} s"
                )
                assert left_pool < 10
            # Started again, they are back in the pool and take new agents.
            for name in ("frontend2", "frontend3"):
                cluster.start_frontend(name)
            await asyncio.to_thread(cluster.wait_ready, 90)
            newcomers = _fleet(cluster, 6, tmp_path / "keys-2")
            await newcomers.start()
            try:
                await newcomers.wait_connected(6, timeout=60)
                placed = await _all_held(cluster, newcomers.client_ids)
                # leastconn: the emptied frontends get the new connections.
                assert set(placed.values()) == {"frontend2", "frontend3"}, placed
            finally:
                await newcomers.stop()
        finally:
            await balancer.close()
            await fleet.stop()

    asyncio.run(scenario())
