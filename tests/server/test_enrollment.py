"""Enrollment, identity proof, interrogation, clones and the pinned CA, over real TLS."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from peregrine.agent.agent import Agent
from peregrine.config import client_ssl_context, generate
from peregrine.protocol.messages import (
    Challenge,
    Hello,
    decode_from_server,
    encode,
)
from tests.server.harness import (
    agent_config,
    free_port,
    make_deployment,
    running_agent,
    running_server,
    wait_until,
)


def test_enrollment_interrogates_and_fills_the_client_record(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(agent_config(deployment, tmp_path / "host1")) as agent:
                record = await wait_until(
                    lambda: (
                        (r := server.datastore.clients.get(agent.client_id))
                        and r.interrogated
                        and r
                    )
                )
                assert record.hostname == os.uname().nodename
                assert record.os == "linux"
                assert record.kernel == os.uname().release
                assert "root" in record.users
                assert record.agent_version
                assert record.first_seen <= record.last_seen
                [flow] = server.datastore.collections.list_for_client(agent.client_id)
                assert flow.creator == "server:interrogation" and flow.state == "Finished"

    asyncio.run(scenario())


def test_wrong_enrollment_secret_is_refused(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    config = agent_config(deployment, tmp_path / "intruder", enrollment_secret="x" * 32)

    async def scenario() -> None:
        async with running_server(deployment) as server:
            agent = Agent(config)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await asyncio.sleep(1.5)
            stop.set()
            await task
            agent.close()
            assert server.datastore.clients.get(agent.client_id) is None
            assert not agent.connected.is_set() and agent.sessions == 0

    asyncio.run(scenario())


async def _raw_hello(url: str, ssl_context, build) -> object:  # type: ignore[no-untyped-def]
    async with connect(url, ssl=ssl_context) as ws:
        challenge = decode_from_server(await ws.recv())
        assert isinstance(challenge, Challenge)
        await ws.send(encode(build(challenge)))
        try:
            return decode_from_server(await ws.recv())
        except ConnectionClosed as closed:
            return closed


def test_a_forged_identity_is_refused(tmp_path: Path) -> None:
    """Claiming a client id without its key, or signing the wrong nonce, closes the link."""
    from peregrine.agent.identity import load_or_create

    deployment = make_deployment(tmp_path / "deploy")
    victim = load_or_create(tmp_path / "victim.yaml")
    thief = load_or_create(tmp_path / "thief.yaml")
    url = deployment.client.server_urls[0]
    ssl_context = client_ssl_context(deployment.client)

    async def scenario() -> None:
        async with running_server(deployment) as server:
            wrong_key = await _raw_hello(
                url,
                ssl_context,
                lambda c: Hello(
                    client_id=victim.client_id,
                    public_key=thief.public_key_bytes,
                    signature=thief.sign(c.nonce + victim.client_id.encode()),
                    agent_version="x",
                    enrollment_secret=deployment.client.enrollment_secret,
                ),
            )
            assert isinstance(wrong_key, ConnectionClosed)
            assert "does not belong to the public key" in wrong_key.rcvd.reason
            replayed = await _raw_hello(
                url,
                ssl_context,
                lambda c: Hello(
                    client_id=victim.client_id,
                    public_key=victim.public_key_bytes,
                    signature=victim.sign(b"an old nonce" + victim.client_id.encode()),
                    agent_version="x",
                    enrollment_secret=deployment.client.enrollment_secret,
                ),
            )
            assert isinstance(replayed, ConnectionClosed)
            assert "signature is invalid" in replayed.rcvd.reason
            assert server.datastore.clients.get(victim.client_id) is None

    asyncio.run(scenario())


def test_an_agent_refuses_a_server_from_another_deployment(tmp_path: Path) -> None:
    """The CA is pinned: an impostor server with its own valid-looking CA is refused."""
    real = make_deployment(tmp_path / "real")
    port = int(real.client.server_urls[0].rsplit(":", 1)[1].split("/")[0])
    impostor = generate(
        tmp_path / "impostor",
        [f"wss://127.0.0.1:{port}/agent"],
        port=port,
        api_port=free_port(),
        force=True,
    )

    async def scenario() -> None:
        async with running_server(impostor) as server:
            agent = Agent(agent_config(real, tmp_path / "host"))
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await asyncio.sleep(1.5)
            stop.set()
            await task
            agent.close()
            assert agent.sessions == 0
            assert server.datastore.clients.count() == 0

    asyncio.run(scenario())


def test_a_cloned_machine_gets_a_new_identity(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    original = agent_config(deployment, tmp_path / "original")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(original) as first:
                # Clone the machine: copy its whole agent state, writeback included.
                shutil.copytree(tmp_path / "original", tmp_path / "clone")
                clone_config = agent_config(deployment, tmp_path / "clone")
                async with running_agent(clone_config) as clone:
                    await wait_until(lambda: clone.client_id != first.client_id)
                    await wait_until(lambda: clone.connected.is_set())
                    await wait_until(
                        lambda: (
                            {first.client_id, clone.client_id}
                            <= set(server.connections.client_ids())
                        )
                    )
                    assert server.events.counts["clone"] >= 1
                    kept = list((tmp_path / "clone").glob("writeback.yaml.old-*"))
                    assert kept, "the clone keeps its old identity file for forensics"
                    assert first.connected.is_set()

    asyncio.run(scenario())


def test_reconnect_replaces_a_stale_connection(tmp_path: Path) -> None:
    """The same agent reconnecting (its old socket half-dead) is not mistaken for a clone."""
    deployment = make_deployment(tmp_path / "deploy")
    config = agent_config(deployment, tmp_path / "host")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(config) as agent:
                client_id = agent.client_id
            async with running_agent(config) as again:
                assert again.client_id == client_id
                await wait_until(lambda: client_id in server.connections)
            assert server.events.counts["clone"] == 0

    asyncio.run(scenario())
