"""A small collection in one FlowBatch frame, or (an agent of the previous version) in a frame
per message: the server stores both once, and answers a batch with one cumulative Ack."""

from __future__ import annotations

import asyncio
from pathlib import Path

from peregrine.agent.identity import load_or_create
from peregrine.protocol.messages import (
    Ack,
    FlowFinished,
    FlowMessage,
    FlowStarted,
    ResultBatch,
    SourceFinished,
    decode_from_server,
    encode,
    pack_flow_messages,
)
from tests.server.harness import (
    RawAgent,
    make_deployment,
    repository_with,
    running_server_with,
    start_flow,
)

ARTIFACT = """
name: Test.One
description: One row.
sources:
  - query: SELECT 1 AS n
"""


def collection(flow_id: str) -> list[FlowMessage]:
    """What an agent sends for a one-row collection."""
    rows = {"flow_id": flow_id, "artifact": "Test.One", "source": ""}
    return [
        FlowStarted(flow_id=flow_id, seq=1, started=1.0),
        ResultBatch(seq=2, columns=["n"], rows=[[7]], **rows),
        SourceFinished(seq=3, status="finished", rows=1, **rows),
        FlowFinished(flow_id=flow_id, seq=4, status="finished", finished=2.0),
    ]


async def acks_until(agent: RawAgent, flow_id: str, seq: int) -> list[int]:
    """The seqs of the Acks of ``flow_id`` read until one reaches ``seq``."""
    assert agent.ws is not None
    seen: list[int] = []
    async with asyncio.timeout(30):
        while not seen or seen[-1] < seq:
            message = decode_from_server(await agent.ws.recv())
            if isinstance(message, Ack) and message.flow_id == flow_id:
                seen.append(message.seq)
    return seen


def test_batched_and_separate_frames_are_stored_once(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    repository = repository_with(ARTIFACT)
    old = load_or_create(tmp_path / "old.yaml")
    new = load_or_create(tmp_path / "new.yaml")

    async def scenario() -> None:
        async with running_server_with(deployment.server, repository) as server:
            for identity in (old, new):
                async with RawAgent(deployment, identity) as agent:
                    assert agent.welcome.flow_batches  # new agents may batch
            flows = {}
            for identity in (old, new):
                flows[identity.client_id] = await start_flow(
                    server, identity.client_id, [("Test.One", {})]
                )
            async with RawAgent(deployment, old) as agent:  # the previous version's frames
                flow_id = flows[old.client_id].flow_id
                for message in collection(flow_id):
                    await agent.send(encode(message))
                assert (await acks_until(agent, flow_id, 4))[-1] == 4
            async with RawAgent(deployment, new) as agent:
                flow_id = flows[new.client_id].flow_id
                payloads = [encode(m) for m in collection(flow_id)]
                (frame,) = pack_flow_messages(payloads)
                await agent.send(frame)
                assert await acks_until(agent, flow_id, 4) == [4]  # one ack for the batch
                await agent.send(frame)  # resent (no ack came through): nothing doubles
                await agent.send(pack_flow_messages(payloads[1:3])[0])
                assert await acks_until(agent, flow_id, 4) == [4]
            for identity in (old, new):
                done = await server.wait_for_flow(
                    flows[identity.client_id].flow_id, ["Finished", "Error"], 30
                )
                assert done.state == "Finished" and done.rows == 1
                assert done.sources["Test.One/"]["status"] == "finished"
                rows = server.filestore.read_rows(identity.client_id, done.flow_id, "Test.One", "")
                assert rows == [{"n": 7}]

    asyncio.run(scenario())
