"""Scheduled work expires: a collection whose client never comes online to start it ends in
Error, says so, and is not delivered afterwards (a collection's own expiry, a hunt's, or the
server's default, applied by the flow monitor)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from peregrine.config import GeneratedConfig
from peregrine.datastore import FlowRecord
from peregrine.services.collections import Limits
from peregrine.services.hunts import HuntSpec
from tests.server.harness import (
    agent_config,
    make_deployment,
    running_agent,
    running_server,
    running_server_with,
    wait_until,
)

USERS = ("Linux.Sys.Users", {"UserRegex": "^root$"})


@pytest.fixture
def deployment(tmp_path: Path) -> GeneratedConfig:
    return make_deployment(tmp_path / "deploy")


def test_a_collection_expires_if_its_client_never_comes_online(
    deployment: GeneratedConfig, tmp_path: Path
) -> None:
    config = agent_config(deployment, tmp_path / "laptop")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(config) as agent:
                cid = agent.client_id
                await wait_until(
                    lambda: (c := server.datastore.clients.get(cid)) and c.interrogated
                )
            # The laptop is away, and the analyst only wants the answer for a second.
            flow = await server.collect(cid, [USERS], "t", limits=Limits(expires_in=1.0))
            assert flow.expires == pytest.approx(flow.created + 1.0)
            assert server.datastore.collections.get(flow.flow_id).expires == flow.expires
            await server.monitor.check_once(now=flow.created + 0.5)
            assert server.datastore.collections.get(flow.flow_id).state == "Scheduled"
            expired = await server.wait_for_flow(flow.flow_id, ["Error", "Finished"], 15)
            assert expired.state == "Error"
            assert expired.error.startswith("expired before the client came online")
            assert server.datastore.tasks.pending(cid) == []
            # It comes back later: the expired collection is not run after all.
            async with running_agent(config):
                later = await server.collect(cid, [USERS], "t")
                done = await server.wait_for_flow(later.flow_id, ["Finished", "Error"], 60)
                assert done.state == "Finished"
            after = server.datastore.collections.get(flow.flow_id)
            assert (after.state, after.rows, after.started) == ("Error", 0, None)

    asyncio.run(scenario())


def test_the_default_expiry_applies_to_collections_without_one(
    deployment: GeneratedConfig, tmp_path: Path
) -> None:
    """``flows.scheduled_expiry`` for a new collection; and one stored before flows had an
    expiry (``expires`` None) is counted from its creation with the same default."""
    flows = msgspec.structs.replace(deployment.server.flows, scheduled_expiry=3600.0)
    server_config = msgspec.structs.replace(deployment.server, flows=flows)
    config = agent_config(deployment, tmp_path / "laptop")

    async def scenario() -> None:
        async with running_server_with(server_config) as server:
            async with running_agent(config) as agent:
                cid = agent.client_id
                await wait_until(
                    lambda: (c := server.datastore.clients.get(cid)) and c.interrogated
                )
            flow = await server.collect(cid, [USERS], "t")
            assert flow.expires == pytest.approx(flow.created + 3600.0)
            old = FlowRecord("F.00000000000000e1", cid, [], {}, "older-server", time.time())
            server.datastore.collections.create(old, task=b"request of an older server")
            assert server.datastore.collections.get(old.flow_id).expires is None
            monitor = server.monitor
            assert await monitor.check_once(now=time.time() + 3000.0) == []
            changed = await monitor.check_once(now=time.time() + 3700.0)
            assert set(changed) == {flow.flow_id, old.flow_id}
            for flow_id in changed:
                record = server.datastore.collections.get(flow_id)
                assert record.state == "Error"
                assert "expired before the client came online" in record.error
            assert server.datastore.tasks.pending(cid) == []

    asyncio.run(scenario())


def test_a_hunt_collection_expires_with_its_hunt(
    deployment: GeneratedConfig, tmp_path: Path
) -> None:
    config = agent_config(deployment, tmp_path / "laptop")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(config) as agent:
                cid = agent.client_id
                await wait_until(
                    lambda: (c := server.datastore.clients.get(cid)) and c.interrogated
                )
            hunt = await server.hunts.create(
                HuntSpec(artifacts=[USERS], expires_in=600.0), creator="t"
            )
            assert await server.hunts.hunt_add(hunt.hunt_id, cid)  # the client is offline
            [entry] = server.datastore.hunts.clients(hunt.hunt_id)
            flow = server.datastore.collections.get(entry.flow_id)
            assert flow.state == "Scheduled" and flow.expires == hunt.expires
            assert await server.monitor.check_once(now=hunt.expires - 1) == []
            assert await server.monitor.check_once(now=hunt.expires + 1) == [flow.flow_id]
            stats = server.datastore.hunts.stats(hunt.hunt_id)
            assert (stats.scheduled, stats.errors, stats.waiting) == (1, 1, 0)

    asyncio.run(scenario())


def test_a_started_collection_is_not_expired(deployment: GeneratedConfig, tmp_path: Path) -> None:
    """Expiry is about waiting for the client: once running, only the time-outs apply."""
    config = agent_config(deployment, tmp_path / "host")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(config) as agent:
                flow = await server.collect(
                    agent.client_id,
                    [("Generic.System.Pslist", {})],
                    "t",
                    limits=Limits(expires_in=1.0),
                )
                done = await server.wait_for_flow(flow.flow_id, ["Finished", "Error"], 60)
                assert done.state == "Finished"
                assert await server.monitor.check_once(now=flow.created + 5.0) == []

    asyncio.run(scenario())
