"""Every enrolled client is interrogated, even one whose first connection ended between its
enrollment and its Welcome (its interrogation, stored with the enrollment, waits for it)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
from websockets.asyncio.client import connect

from peregrine.agent.identity import load_or_create
from peregrine.config import client_ssl_context
from peregrine.protocol.messages import (
    CancelCollection,
    Challenge,
    CollectionRequest,
    Hello,
    decode_from_server,
    encode,
)
from peregrine.server.app import Server
from peregrine.services.interrogation import INTERROGATOR
from tests.server.harness import (
    RawAgent,
    agent_config,
    make_deployment,
    running_agent,
    running_server_with,
    wait_until,
)


def test_a_client_gone_before_its_welcome_is_interrogated_when_it_returns(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    limits = msgspec.structs.replace(deployment.server.limits, max_handshakes=1)
    server_config = msgspec.structs.replace(deployment.server, limits=limits)
    config = agent_config(deployment, tmp_path / "host")
    identity = load_or_create(Path(config.writeback_path))
    client_id = identity.client_id

    async def leave_before_welcome(server: Server) -> None:
        """Send the Hello and hang up while the enrollment waits for the database, so the
        enrollment commits after the agent is gone and the Welcome cannot be sent."""
        release = threading.Event()
        locked = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(server, locked, release))
        holder.start()
        try:
            locked.wait(10)
            async with connect(config.server_urls[0], ssl=client_ssl_context(config)) as ws:
                challenge = decode_from_server(await ws.recv())
                assert isinstance(challenge, Challenge)
                await ws.send(
                    encode(
                        Hello(
                            client_id=client_id,
                            public_key=identity.public_key_bytes,
                            signature=identity.sign(challenge.nonce + client_id.encode()),
                            agent_version="test",
                            enrollment_secret=config.enrollment_secret,
                        )
                    )
                )
            # The closing handshake is over: the server knows the connection is gone.
        finally:
            release.set()
            await asyncio.to_thread(holder.join)
        # Enrolled, and out of the handshake (the only slot is free again): the session has
        # given up on its Welcome; the interrogation stored with the enrollment waits.
        await wait_until(lambda: server.datastore.clients.get(client_id) is not None)
        await wait_until(lambda: not server.connections.handshakes.locked())
        [waiting] = server.datastore.collections.list_for_client(client_id)
        assert (waiting.creator, waiting.state) == (INTERROGATOR, "Scheduled")

    async def scenario() -> None:
        async with running_server_with(server_config) as server:
            await leave_before_welcome(server)
            async with running_agent(config):
                record = await wait_until(
                    lambda: (r := server.datastore.clients.get(client_id)) and r.interrogated and r,
                    timeout=30,
                )
                assert record.os == "linux"
            # It checks in again: once interrogated, a client is not interrogated again.
            async with running_agent(config):
                await asyncio.sleep(0.5)
            flows = server.datastore.collections.list_for_client(client_id)
            assert [f.creator for f in flows] == [INTERROGATOR]
            assert flows[0].state == "Finished"

    asyncio.run(scenario())


def _hold_write_lock(server: Server, locked: threading.Event, release: threading.Event) -> None:
    """Another writer holds the SQLite database until ``release`` (a slow commit)."""
    path = server.config.datastore_url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(30)
        connection.execute("COMMIT")
    finally:
        connection.close()


def test_a_request_made_while_a_client_enrolls_is_delivered_with_its_interrogation(
    tmp_path: Path,
) -> None:
    """A new client's check-in sends the interrogation stored with its enrollment without
    reading its tasks, unless something was pushed to it before its connection registered:
    then it reads them, and the collection an analyst made in that moment arrives too."""
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "raw" / "writeback.yaml")
    client_id = identity.client_id

    async def scenario() -> None:
        async with running_server_with(deployment.server) as server:
            made: list[str] = []

            async def collect(cid: str) -> None:
                # Enrolled, not yet registered: the push finds no connection.
                flow = await server.collect(cid, [("Generic.System.Pslist", {})], "analyst")
                made.append(flow.flow_id)

            after_enrollment(server, collect)
            async with RawAgent(deployment, identity) as agent:
                assert agent.welcome.enrolled
                assert agent.ws is not None
                requests = []
                async with asyncio.timeout(10):
                    while len(requests) < 2:
                        message = decode_from_server(await agent.ws.recv())
                        if isinstance(message, CollectionRequest):
                            requests.append(message)
                flows = {
                    f.flow_id: f.creator
                    for f in server.datastore.collections.list_for_client(client_id)
                }
                assert sorted(flows.values()) == ["analyst", INTERROGATOR]
                assert {r.flow_id for r in requests} == set(flows)
                assert made[0] in flows

    asyncio.run(scenario())


def test_a_cancel_from_another_frontend_while_a_client_enrolls_is_not_undone(
    tmp_path: Path,
) -> None:
    """Another frontend cancels the new client's interrogation while it logs in here: the
    cancel's bus notice finds no connection, and the check-in must then read the tasks (the
    interrogation is gone) rather than send the one kept from the enrollment."""
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "raw" / "writeback.yaml")
    client_id = identity.client_id

    async def scenario() -> None:
        async with running_server_with(deployment.server) as server:
            cancelled: list[str] = []

            async def cancel_elsewhere(cid: str) -> None:
                (flow,) = server.datastore.collections.list_for_client(cid)
                # What the other frontend does: the datastore, then its notice on the bus.
                server.datastore.tasks.cancel(flow.flow_id)
                server.datastore.collections.transition(flow.flow_id, "Cancelled", 0.0, "test")
                cancel = encode(CancelCollection(flow_id=flow.flow_id, reason="test"))
                await server._on_notice({"kind": "send", "client_id": cid, "payload": cancel.hex()})
                cancelled.append(flow.flow_id)

            after_enrollment(server, cancel_elsewhere)
            async with RawAgent(deployment, identity) as agent:
                assert agent.welcome.enrolled and agent.ws is not None
                flow = await server.collect(client_id, [("Generic.System.Pslist", {})], "analyst")
                async with asyncio.timeout(10):
                    while not isinstance(
                        first := decode_from_server(await agent.ws.recv()), CollectionRequest
                    ):
                        pass
                assert first.flow_id == flow.flow_id, (first.flow_id, cancelled)

    asyncio.run(scenario())


def after_enrollment(server: Server, step: Callable[[str], Awaitable[None]]) -> None:
    """Make ``server`` run ``step(client_id)`` after each enrollment, before the new client's
    connection registers: the moment a push or a notice finds it connected nowhere."""
    enroll = server.services.enroll

    async def enroll_then_step(cid: str, key: bytes) -> tuple[bool, list[tuple[str, bytes]]]:
        enrolled = await enroll(cid, key)
        await step(cid)
        return enrolled

    server.services.enroll = enroll_then_step  # type: ignore[method-assign]
