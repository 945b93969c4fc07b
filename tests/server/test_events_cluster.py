"""Event monitoring in the distributed mode: two frontends of one cluster (in this process) over
a real Redis and PostgreSQL and a shared filestore. An assignment made on frontend "b" reaches
an agent connected to frontend "a" through the bus; "a" stores the events, "b" reads them, and
a live follower on "b" gets them as they are stored on "a"."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.server.harness import (
    agent_config,
    free_port,
    make_deployment,
    repository_with,
    running_agent,
    running_server_with,
    wait_until,
)
from tests.server.test_bus_cluster import cluster_config
from tests.server.test_events import ALL, ARTIFACTS, CLOCK, in_loop, stored


@pytest.mark.slow
@pytest.mark.timeout(180)
@in_loop
async def test_an_assignment_made_on_one_frontend_reaches_an_agent_on_another(
    tmp_path: Path, redis_server: RedisServer, postgres_database: str
) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    a_port, b_port = free_port(), free_port()
    shared = (postgres_database, redis_server.url)
    a_config = cluster_config(deployment, tmp_path, "a", *shared, a_port)
    b_config = cluster_config(deployment, tmp_path, "b", *shared, b_port)
    for config in (a_config, b_config):
        Path(config.data_dir).mkdir(parents=True)
    agent = agent_config(
        deployment, tmp_path / "host", server_urls=[f"wss://127.0.0.1:{a_port}/agent"]
    )
    repository = repository_with(ARTIFACTS)
    async with (
        running_server_with(a_config, repository) as a,
        running_server_with(b_config, repository) as b,
        running_agent(agent) as host,
    ):
        client = host.client_id
        await wait_until(lambda: client in b.online(), 20)  # b knows a holds it
        assert not b.holds(client)
        async with b.services.event_monitoring.follow(client_id=client) as followed:
            await asyncio.sleep(1.0)  # b's "someone follows here" reaches a
            version = await b.services.event_monitoring.assign(CLOCK, {"period": 0.1}, [], "x", ALL)
            started = time.monotonic()
            await wait_until(lambda: len(stored(b, client, CLOCK)) >= 5, 60)  # read on b
            print(f"assigned on b, 5 events readable on b {time.monotonic() - started:.1f} s later")
            live = await asyncio.wait_for(followed.get(), 30)  # stored on a, followed on b
            assert (live.client_id, live.artifact) == (client, CLOCK)
            assert live.rows and live.rows[0]["tick"] == live.first_seq
            assert "_seq" not in live.rows[0]
        assert a.services.event_monitoring.files.root == b.services.event_monitoring.files.root
        assert host.events is not None and host.events.version == version
        await b.services.event_monitoring.unassign(CLOCK, "x")
        await wait_until(lambda: CLOCK not in host.events.workers, 30)  # type: ignore[union-attr]
        seqs = [r["_seq"] for r in stored(b, client, CLOCK)]
        assert seqs == list(range(1, len(seqs) + 1))
