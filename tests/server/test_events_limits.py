"""What an agent could abuse through event rows: a flood is paid for by the connection's budget
(read slower, nothing lost, nothing doubled when sent again), a batch must name its own
artifact's stream (else the connection closes and nothing is stored), and statuses are kept
only for event artifacts the server knows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from peregrine.agent.identity import load_or_create
from peregrine.protocol.messages import Ack, EventRows, EventStatus, decode_from_server, encode
from tests.server.harness import (
    RawAgent,
    make_deployment,
    repository_with,
    running_server_with,
    wait_until,
)
from tests.server.test_events import in_loop
from tests.server.test_protocol_limits import with_limits

ART = "Test.Events.Flood"
STREAM = f"events:{ART}"
FLOOD = f"name: {ART}\ntype: CLIENT_EVENT\nsources:\n  - query: SELECT tick AS n FROM clock(1)\n"


def batch(seq: int, rows: int, stream: str = STREAM, artifact: str = ART) -> bytes:
    return encode(
        EventRows(
            stream=stream, seq=seq, artifact=artifact, source="", time=time.time(), columns=["n"],
            rows=[[n] for n in range(seq, seq + rows)],
        )
    )  # fmt: skip


@pytest.mark.timeout(60)
@in_loop
async def test_an_event_flood_is_read_at_the_budget_and_stored_once(tmp_path: Path) -> None:
    """40,000 event cells at once against 10,000 a second (20,000 in a burst): the last ack
    comes after about 2 s; every event is stored once, and the whole flood sent again adds
    nothing."""
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "raw.yaml")
    config = with_limits(deployment, cells_per_second=10_000)
    async with running_server_with(config, repository_with(FLOOD)) as server:
        files = server.services.event_monitoring.files
        async with RawAgent(deployment, identity) as raw:
            assert raw.ws is not None
            frames = [batch(seq, 2000) for seq in range(1, 40_001, 2000)]
            for attempt in range(2):
                started = time.monotonic()
                for frame in frames:
                    await raw.send(frame)
                while True:
                    message = decode_from_server(await asyncio.wait_for(raw.ws.recv(), 20))
                    if isinstance(message, Ack) and message.seq == 38_001:
                        assert message.flow_id == STREAM
                        break
                elapsed = time.monotonic() - started
                print(f"flood {attempt + 1}: last ack after {elapsed:.1f} s")
                assert 1.5 < elapsed < 8.0, elapsed
        rows = list(files.iter_rows(identity.client_id, ART, 0, time.time() + 86400))
        assert [r["_seq"] for r in rows] == list(range(1, 40_001))
        assert [r["n"] for r in rows] == list(range(1, 40_001))


@pytest.mark.timeout(60)
@in_loop
async def test_an_event_batch_naming_another_stream_closes_the_connection(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "raw.yaml")
    async with running_server_with(deployment.server) as server:
        async with RawAgent(deployment, identity) as raw:
            await raw.send(batch(1, 10, stream="F.0123456789abcdef"))
            closed = await raw.closed()
        assert closed.rcvd is not None and closed.rcvd.code == 1008
        assert "not its artifact's" in closed.rcvd.reason
        files = server.services.event_monitoring.files
        assert list(files.iter_rows(identity.client_id, ART, 0, time.time() + 86400)) == []


@pytest.mark.timeout(60)
@in_loop
async def test_statuses_about_made_up_artifacts_are_not_stored(tmp_path: Path) -> None:
    """One status row per client and artifact: an agent naming thousands of artifacts that do
    not exist must not grow the table; a report about a real event artifact is kept."""
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "raw.yaml")
    real = "Test.Events.Real"
    repository = repository_with(
        f"name: {real}\ntype: CLIENT_EVENT\nsources:\n  - query: SELECT tick FROM clock(1)\n"
    )
    async with running_server_with(deployment.server, repository) as server:
        async with RawAgent(deployment, identity) as raw:
            for n in range(200):
                await raw.send(encode(EventStatus(artifact=f"Made.Up.{n}", state="running")))
            await raw.send(encode(EventStatus(artifact="Test.Quick", state="running")))
            await raw.send(encode(EventStatus(artifact=real, state="running", time=1.0)))
            store = server.datastore.events
            await wait_until(lambda: store.statuses(client_id=identity.client_id), 10)
        assert [s.artifact for s in store.statuses()] == [real]


@pytest.mark.timeout(60)
@in_loop
async def test_rows_of_an_artifact_the_server_does_not_know_are_dropped(tmp_path: Path) -> None:
    """Acknowledged (the agent may forget them) but never stored: an agent cannot make
    folders and files under made-up names."""
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "raw.yaml")
    async with running_server_with(deployment.server, repository_with(FLOOD)) as server:
        async with RawAgent(deployment, identity) as raw:
            assert raw.ws is not None
            for n in range(20):
                made_up = f"Made.Up.{n}"
                await raw.send(batch(1, 5, stream=f"events:{made_up}", artifact=made_up))
            await raw.send(batch(1, 5))  # a real one after them
            acked = set()
            while len(acked) < 21:
                message = decode_from_server(await asyncio.wait_for(raw.ws.recv(), 20))
                if isinstance(message, Ack):
                    acked.add(message.flow_id)
        root = server.services.event_monitoring.files.root / identity.client_id
        assert [p.name.split("__")[0] for p in root.iterdir()] == [ART]
        assert server.event_ingestor.dropped == 100


@pytest.mark.timeout(60)
@in_loop
async def test_a_batch_sent_again_reaches_a_live_follower_once(tmp_path: Path) -> None:
    """An agent whose acknowledgement was lost sends the batch again: the server publishes it
    again (the rules must see it at least once), but a follower is shown it once."""
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "raw.yaml")
    async with running_server_with(deployment.server, repository_with(FLOOD)) as server:
        monitoring = server.services.event_monitoring
        async with monitoring.follow(client_id=identity.client_id) as followed:
            async with RawAgent(deployment, identity) as raw:
                assert raw.ws is not None
                for frame in (batch(1, 3), batch(1, 3), batch(4, 2), batch(1, 3)):
                    await raw.send(frame)  # each acknowledged before the next is sent
                    while not isinstance(
                        decode_from_server(await asyncio.wait_for(raw.ws.recv(), 20)), Ack
                    ):
                        pass
            await asyncio.sleep(0.2)  # any batch published after the last ack is queued by now
            got = [followed.get_nowait() for _ in range(followed.qsize())]
        assert [(b.first_seq, [r["n"] for r in b.rows]) for b in got] == [
            (1, [1, 2, 3]),
            (4, [4, 5]),
        ]
