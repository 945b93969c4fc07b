"""A session stores the messages that arrived while it was busy as one run, acked once per flow."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from peregrine.agent.identity import load_or_create
from peregrine.protocol.messages import (
    Ack,
    CollectionRequest,
    FlowFinished,
    FlowStarted,
    ResultBatch,
    SourceFinished,
    decode_from_server,
    encode,
)
from peregrine.server.session import _frames_waiting
from tests.server.harness import (
    RawAgent,
    make_deployment,
    running_server,
    schedule_flow,
    wait_until,
)


def test_frames_waiting_reads_the_websockets_receive_queue() -> None:
    """The one private websockets detail sessions rely on; fails if an upgrade moves it."""

    async def scenario() -> list[bool]:
        seen: list[bool] = []
        arrived = asyncio.Event()

        async def handler(ws: ServerConnection) -> None:
            seen.append(_frames_waiting(ws))
            await arrived.wait()
            await asyncio.sleep(0.2)  # the three frames are read by websockets meanwhile
            seen.append(_frames_waiting(ws))
            for _ in range(3):
                await ws.recv()
            seen.append(_frames_waiting(ws))
            await ws.close()

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as client:
                for n in range(3):
                    await client.send(f"message {n}")
                arrived.set()
                await client.wait_closed()
        return seen

    assert asyncio.run(scenario()) == [False, True, False]


def test_messages_that_arrive_while_storing_are_stored_as_one_run(tmp_path: Path) -> None:
    """The first message is held in the group commit; the other three arrive meanwhile and
    are stored together, acknowledged by one cumulative Ack."""
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "raw.yaml")
    client_id = identity.client_id

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with RawAgent(deployment, identity) as raw:
                assert raw.ws is not None
                # The enrollment's interrogation comes first: once it is here, the session
                # has finished its handshake and is reading messages.
                message = decode_from_server(await asyncio.wait_for(raw.ws.recv(), 10))
                assert isinstance(message, CollectionRequest)
                record, payload = schedule_flow(
                    server.collections, client_id, [("Generic.Client.Info", {})]
                )
                await server.connections.send(client_id, payload)
                while True:  # the interrogation again (pending tasks are resent), then ours
                    message = decode_from_server(await asyncio.wait_for(raw.ws.recv(), 10))
                    if isinstance(message, CollectionRequest) and message.flow_id == record.flow_id:
                        break
                flow_id, now = record.flow_id, time.time()
                gate, opened = threading.Event(), threading.Event()

                def hold() -> None:
                    gate.set()
                    assert opened.wait(10)

                server.datastore.group.submit(hold)
                assert await asyncio.to_thread(gate.wait, 10)
                messages = [
                    FlowStarted(flow_id=flow_id, seq=1, started=now),
                    ResultBatch(
                        flow_id=flow_id, seq=2, artifact="Generic.Client.Info", source="host",
                        columns=["hostname"], rows=[["raw"], ["raw2"]],
                    ),
                    SourceFinished(
                        flow_id=flow_id, seq=3, artifact="Generic.Client.Info", source="host",
                        status="finished", rows=2,
                    ),
                    FlowFinished(flow_id=flow_id, seq=4, status="finished", finished=now),
                ]  # fmt: skip
                await raw.send(encode(messages[0]))
                group_queue = server.datastore.group._queue
                await wait_until(lambda: group_queue.qsize() == 1, 10)  # stored, held by hold()
                for message in messages[1:]:
                    await raw.send(encode(message))
                session = server.connections.get(client_id)
                assert session is not None
                ws = session.ws  # type: ignore[attr-defined]
                await wait_until(lambda: len(ws.recv_messages.frames) == 3, 10)
                opened.set()
                acks: list[int] = []
                while not acks or acks[-1] < 4:
                    message = decode_from_server(await asyncio.wait_for(raw.ws.recv(), 10))
                    if isinstance(message, Ack) and message.flow_id == flow_id:
                        acks.append(message.seq)
                assert acks == [1, 4]
                final = server.datastore.collections.get(flow_id)
                assert final is not None
                assert (final.state, final.rows, final.last_seq) == ("Finished", 2, 4)
                assert final.sources["Generic.Client.Info/host"]["status"] == "finished"

    asyncio.run(scenario())


def test_agents_get_no_tls_session_tickets(tmp_path: Path) -> None:
    """Agents never resume sessions; tickets would cost CPU on every handshake."""
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "raw.yaml")

    async def scenario() -> None:
        async with running_server(deployment), RawAgent(deployment, identity) as raw:
            assert raw.ws is not None
            tls = raw.ws.transport.get_extra_info("ssl_object")
            assert tls.version() == "TLSv1.3"
            # The welcome came after the handshake, so tickets, if any, came before it.
            session = tls.session
            assert session is None or not session.has_ticket

    asyncio.run(scenario())
