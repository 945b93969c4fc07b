"""What one agent connection may cost a frontend is bounded (issue 11, items 4, 5, 7, 8, 13).

Real servers over real TLS; the hostile side is a ``RawAgent`` (logged in, then writing frames
by hand) or a stranger's websocket that never logs in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from peregrine.agent.identity import Identity, load_or_create
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.config import ServerConfig, client_ssl_context
from peregrine.config.generate import GeneratedConfig
from peregrine.config.model import AgentLimits
from peregrine.protocol.messages import (
    Ack,
    Challenge,
    Hello,
    LogBatch,
    Rejected,
    ResultBatch,
    ServerMessage,
    UploadResume,
    UploadStart,
    Welcome,
    decode_from_server,
    encode,
)
from peregrine.server.app import Server
from peregrine.services.collections import Limits
from tests.server.harness import (
    RawAgent,
    agent_config,
    make_deployment,
    repository_with,
    running_agent,
    running_server_with,
    start_flow,
    wait_until,
)

COUNT = """
name: Test.Count
description: Rows 1..N.
type: CLIENT
parameters:
  - name: N
    type: int
    default: 1000
sources:
  - query: |
      WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :N)
      SELECT n FROM c
"""
FINAL = ("Finished", "Error", "Cancelled")


@pytest.fixture(scope="module")
def repository() -> ArtifactRepository:
    return repository_with(COUNT)


def with_limits(deployment: GeneratedConfig, **limits: Any) -> ServerConfig:
    return msgspec.structs.replace(deployment.server, limits=AgentLimits(**limits))


async def stranger(deployment: GeneratedConfig) -> ClientConnection:
    """A TLS websocket to the agent listener that has not logged in."""
    client = deployment.client
    return await connect(client.server_urls[0], ssl=client_ssl_context(client))


def hello_for(identity: Identity, challenge: Challenge, secret: str) -> Hello:
    client_id = identity.client_id
    return Hello(
        client_id=client_id,
        public_key=identity.public_key_bytes,
        signature=identity.sign(challenge.nonce + client_id.encode()),
        agent_version="raw",
        enrollment_secret=secret,
    )


async def log_in(deployment: GeneratedConfig, identity: Identity) -> ServerMessage:
    """One login; the server's answer to the Hello (the connection is then closed)."""
    ws = await stranger(deployment)
    try:
        challenge = decode_from_server(await ws.recv())
        assert isinstance(challenge, Challenge)
        await ws.send(encode(hello_for(identity, challenge, deployment.client.enrollment_secret)))
        return decode_from_server(await asyncio.wait_for(ws.recv(), 10))
    finally:
        await ws.close()


async def closed(ws: ClientConnection, timeout: float) -> ConnectionClosed:
    async with asyncio.timeout(timeout):
        while True:
            try:
                await ws.recv()
            except ConnectionClosed as exc:
                return exc


async def interrogated(server: Server, client_id: str) -> None:
    def done() -> bool:
        flows = server.datastore.collections.list_for_client(client_id)
        return bool(flows) and all(f.state in FINAL for f in flows)

    await wait_until(done, 30)


async def own_flow(server: Server, deployment: GeneratedConfig, identity: Identity) -> str:
    """Enroll the raw client and give it a collection of its own to write to."""
    async with RawAgent(deployment, identity):
        pass
    record = await start_flow(server, identity.client_id, [("Test.Count", {"N": 1})])
    return record.flow_id


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records at ERROR or above: an unhandled exception in a connection handler is one."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- item 8: malformed frames are protocol errors, before and after login -----------------------


def _bad_frames(flow_id: str) -> dict[str, bytes]:
    rows = {"kind": "rows", "flow_id": flow_id, "seq": 1, "artifact": "Test.Count", "source": ""}
    nested = msgspec.msgpack.encode({**rows, "columns": ["n"], "rows": [[0]]})
    return {
        "invalid UTF-8": msgspec.msgpack.encode(
            {"kind": "logs", "flow_id": flow_id, "seq": 1, "entries": []}
        ).replace(flow_id.encode(), b"\xff" + flow_id.encode()[1:]),
        "nested arrays": nested.replace(b"\x91\x91\x00", b"\x91\x91" + b"\x91" * 50_000 + b"\x00"),
        "seq 2**64-1": msgspec.msgpack.encode(
            {"kind": "logs", "flow_id": flow_id, "seq": 2**64 - 1, "entries": []}
        ),
    }


def test_malformed_frames_close_with_a_logged_protocol_error(
    tmp_path: Path, repository: ArtifactRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """Invalid UTF-8, deep nesting and a seq beyond 64 signed bits, sent as the Hello and after
    login: each closes its connection with 1008 and a warning, never 1011 with a traceback."""
    caplog.set_level(logging.INFO)
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "raw.yaml")

    async def scenario() -> list[tuple[str, int, str]]:
        seen = []
        async with running_server_with(deployment.server, repository) as server:
            flow_id = await own_flow(server, deployment, identity)
            for what, frame in _bad_frames(flow_id).items():
                ws = await stranger(deployment)
                await ws.recv()  # the challenge
                await ws.send(frame)
                before = await closed(ws, 10)
                assert before.rcvd is not None
                seen.append((f"{what} as the hello", before.rcvd.code, before.rcvd.reason))
                async with RawAgent(deployment, identity) as raw:
                    await raw.send(frame)
                    after = await raw.closed()
                assert after.rcvd is not None
                seen.append((f"{what} after login", after.rcvd.code, after.rcvd.reason))
            record = server.datastore.collections.get(flow_id)
            assert record is not None and record.last_seq == 0  # nothing of it stored
        return seen

    seen = asyncio.run(scenario())
    assert [(what, code) for what, code, _ in seen] == [(what, 1008) for what, _, _ in seen]
    assert all("malformed" in reason for _, _, reason in seen), seen
    assert not no_errors_logged(caplog)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "malformed" in r.msg]
    assert len(warned) >= 0 and sum("malformed" in r.getMessage() for r in caplog.records) >= 6


# -- item 4: one agent cannot take the server's memory or time ----------------------------------


def _millions_of_empty_rows(flow_id: str, seq: int) -> bytes:
    """One frame under 4 MiB holding four million empty rows (12.8 s and +520 MB before)."""
    return msgspec.msgpack.encode(
        {
            "kind": "rows", "flow_id": flow_id, "seq": seq, "artifact": "Test.Count",
            "source": "", "columns": [], "rows": [[]] * 4_000_000,
        }
    )  # fmt: skip


def test_a_rogue_agent_cannot_exhaust_memory_or_stall_the_others(
    tmp_path: Path, repository: ArtifactRepository
) -> None:
    """Four frames of four million empty rows: each closes its connection within 2 s, the
    server's RSS grows by less than 100 MB, and meanwhile another agent's collection finishes
    without a disconnect and the API answers every request within 1 s."""
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "rogue.yaml")
    process = psutil.Process()

    async def scenario() -> tuple[list[float], int, list[float]]:
        async with running_server_with(deployment.server, repository) as server:
            async with running_agent(agent_config(deployment, tmp_path / "good")) as good:
                await interrogated(server, good.client_id)
                flow_id = await own_flow(server, deployment, identity)
                frames = [_millions_of_empty_rows(flow_id, seq) for seq in range(1, 5)]
                rss_before = process.memory_info().rss
                flow = await start_flow(
                    server, good.client_id, [("Test.Count", {"N": 20_000})], batch_rows=200
                )
                api_latencies: list[float] = []
                stop = asyncio.Event()
                probe = asyncio.create_task(_probe_api(server, deployment, api_latencies, stop))
                # The rogue in its own thread and loop, as another host (see _Rogue).
                closes = await asyncio.to_thread(
                    asyncio.run, _refused_each(deployment, identity, frames)
                )
                grown = process.memory_info().rss - rss_before
                final = await server.wait_for_flow(flow.flow_id, FINAL, timeout=60)
                stop.set()
                await probe
                assert final.state == "Finished" and final.rows == 20_000
                assert good.sessions == 1, "the good agent was never disconnected"
                return closes, grown, api_latencies

    closes, grown, latencies = asyncio.run(scenario())
    assert max(closes) < 2.0, closes
    assert grown < 100 * 2**20, f"RSS grew {grown / 2**20:.0f} MB"
    assert latencies and max(latencies) < 1.0, latencies


async def _refused_each(
    deployment: GeneratedConfig, identity: Identity, frames: list[bytes]
) -> list[float]:
    """Send each frame on a connection of its own; the seconds until each was refused (1008)."""
    closes: list[float] = []
    for frame in frames:
        async with RawAgent(deployment, identity) as raw:
            started = time.monotonic()
            await raw.send(frame)
            refused = await raw.closed(30)
            closes.append(time.monotonic() - started)
        assert refused.rcvd is not None and refused.rcvd.code == 1008
    return closes


async def _probe_api(
    server: Server, deployment: GeneratedConfig, latencies: list[float], stop: asyncio.Event
) -> None:
    """Ask the API's /healthz every 50 ms until ``stop``; note each answer's latency."""
    url = f"https://127.0.0.1:{server.api_port}/healthz"
    trust = ssl.create_default_context(cafile=deployment.server.ca_cert_path)
    async with httpx.AsyncClient(verify=trust, timeout=30) as api:
        assert (await api.get(url)).status_code == 200  # connected: what follows is the loop
        while not stop.is_set():
            started = time.monotonic()
            answer = await api.get(url)
            latencies.append(time.monotonic() - started)
            assert answer.status_code == 200
            await asyncio.sleep(0.05)


def _heavy_batch(flow_id: str, seq: int) -> bytes:
    """A valid message near 4 MiB that is costly to decode and store: 2,000 rows of 600
    two-character values (1.2 million cells)."""
    columns = [f"c{n}" for n in range(600)]
    return encode(
        ResultBatch(
            flow_id=flow_id, seq=seq, artifact="Test.Count", source="", columns=columns,
            rows=[["ab"] * 600 for _ in range(2000)],
        )
    )  # fmt: skip


class _Rogue(threading.Thread):
    """A rogue host: its own thread and event loop (its 4 MiB sends cost the client CPU that
    would otherwise stall the server's loop, and the API probe with it). It connects, sends
    ``frames`` for ``seconds`` (each send waits once the server stops reading), sets
    ``flooded`` and keeps the connection open until ``release``."""

    def __init__(
        self, deployment: GeneratedConfig, identity: Identity, frames: list[bytes], seconds: float
    ) -> None:
        super().__init__(name="rogue-agent")
        self.deployment, self.identity = deployment, identity
        self.frames, self.seconds = frames, seconds
        self.flooded, self.release = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._flood())
        except BaseException as error:  # raised again in the test by finish()
            self.error = error

    def finish(self) -> None:
        self.release.set()
        self.join()
        if self.error is not None:
            raise self.error

    async def _flood(self) -> None:
        try:
            async with RawAgent(self.deployment, self.identity) as raw:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.seconds):
                        for frame in self.frames:
                            await raw.send(frame)
                self.flooded.set()
                await asyncio.to_thread(self.release.wait)
        finally:
            self.flooded.set()  # a failed connection must not leave the test waiting


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_agent_sending_costly_valid_messages_leaves_the_others_responsive(
    tmp_path: Path, repository: ArtifactRepository
) -> None:
    """A rogue agent (its own thread and loop, as another host) sends valid 4 MiB messages of
    1.2 million cells as fast as it can for 8 s. Its connection budget (250,000 cells a
    second) lets two of them through, and meanwhile another agent's collection finishes
    without a disconnect and the API answers within 1 s. (The rogue shared the server's loop
    before: its own sends, 0.85 s each under asyncio's debug mode, were the API's worst
    answer on a loaded CI machine, 1.65 s.)"""
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "rogue.yaml")

    async def scenario() -> tuple[int, list[float], float]:
        async with running_server_with(deployment.server, repository) as server:
            async with running_agent(agent_config(deployment, tmp_path / "good")) as good:
                await interrogated(server, good.client_id)
                flow_id = await own_flow(server, deployment, identity)
                frames = [_heavy_batch(flow_id, seq) for seq in range(1, 41)]
                latencies: list[float] = []
                took: list[float] = []
                stop = asyncio.Event()
                probe = asyncio.create_task(_probe_api(server, deployment, latencies, stop))
                flow = await start_flow(
                    server, good.client_id, [("Test.Count", {"N": 20_000})], batch_rows=200
                )
                started = time.monotonic()
                finished = asyncio.create_task(server.wait_for_flow(flow.flow_id, FINAL, 60))
                finished.add_done_callback(lambda _: took.append(time.monotonic() - started))
                rogue = _Rogue(deployment, identity, frames, seconds=8)
                rogue.start()
                try:
                    assert await asyncio.to_thread(rogue.flooded.wait, 60), "never connected"
                    record = server.datastore.collections.get(flow_id)
                    assert record is not None
                    stored_in_time = record.rows // 2000
                finally:
                    await asyncio.to_thread(rogue.finish)
                final = await finished
                good_took = took[0]
                stop.set()
                await probe
                assert final.state == "Finished" and final.rows == 20_000
                assert good.sessions == 1, "the good agent was never disconnected"
                return stored_in_time, latencies, good_took

    stored, latencies, good_took = asyncio.run(scenario())
    # 500,000 cells of burst, then 250,000 a second: two of these messages in 8 s.
    assert stored <= 3, f"{stored} messages stored in 8 s: the budget did not hold"
    assert latencies and max(latencies) < 1.0, latencies
    assert good_took < 30, good_took


def test_past_its_budget_a_connection_is_read_slower_and_loses_nothing(
    tmp_path: Path, repository: ArtifactRepository
) -> None:
    """40,000 cells sent at once against a budget of 10,000 a second (20,000 in a burst): the
    server stops reading for the difference, so the last ack comes after about 2 s, and every
    row is stored exactly once."""
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "raw.yaml")
    config = with_limits(deployment, cells_per_second=10_000)

    async def scenario() -> float:
        async with running_server_with(config, repository) as server:
            flow_id = await own_flow(server, deployment, identity)
            async with RawAgent(deployment, identity) as raw:
                assert raw.ws is not None
                started = time.monotonic()
                for seq in range(1, 21):
                    rows = [[n] for n in range((seq - 1) * 2000, seq * 2000)]
                    await raw.send(
                        encode(
                            ResultBatch(
                                flow_id=flow_id,
                                seq=seq,
                                artifact="Test.Count",
                                source="",
                                columns=["n"],
                                rows=rows,
                            )
                        )
                    )
                while True:
                    message = decode_from_server(await asyncio.wait_for(raw.ws.recv(), 20))
                    if isinstance(message, Ack) and message.seq == 20:
                        elapsed = time.monotonic() - started
                        break
            stored = server.filestore.read_rows(
                identity.client_id, flow_id, "Test.Count", "", 0, 100_000
            )
            assert [row["n"] for row in stored] == list(range(40_000))
            return elapsed

    elapsed = asyncio.run(scenario())
    assert 1.5 < elapsed < 6.0, elapsed


# -- item 5: strangers cannot pin memory or every handshake slot --------------------------------


def _declare_big_frame() -> bytes:
    """The header of a masked binary frame of 4 MiB (its payload follows, or never does)."""
    return b"\x82" + bytes([0x80 | 127]) + (4 << 20).to_bytes(8, "big") + os.urandom(4)


def test_strangers_cannot_pin_memory_before_login(tmp_path: Path) -> None:
    """128 connections each start a 4 MiB frame instead of a Hello and send 256 KiB of it:
    each is closed (1009) as soon as it passes the 64 KiB allowed before login, instead of
    being buffered for the whole handshake time-out."""
    deployment = make_deployment(tmp_path / "deploy")

    async def attack() -> ConnectionClosed:
        ws = await stranger(deployment)
        await ws.recv()  # the challenge
        transport = ws.transport
        transport.write(_declare_big_frame())
        for _ in range(16):  # 256 KiB in 16 KiB writes, while the server still reads
            if transport.is_closing():
                break
            transport.write(os.urandom(16 * 1024))
            await asyncio.sleep(0.01)
        return await closed(ws, 5)

    async def scenario() -> list[ConnectionClosed]:
        async with running_server_with(deployment.server) as server:
            results = await asyncio.gather(*(attack() for _ in range(128)))
            assert len(server.connections) == 0
            return results

    started = time.monotonic()
    results = asyncio.run(scenario())
    assert time.monotonic() - started < 10  # before: held until the 30 s handshake time-out
    for result in results:
        assert result.rcvd is not None, result
        assert result.rcvd.code == 1009 and "before login" in result.rcvd.reason


def test_a_silent_stranger_is_closed_at_the_handshake_deadline(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    config = with_limits(deployment, handshake_timeout=1.0)

    async def scenario() -> tuple[float, ConnectionClosed]:
        async with running_server_with(config):
            ws = await stranger(deployment)
            started = time.monotonic()
            await ws.recv()  # the challenge; then nothing
            result = await closed(ws, 10)
            return time.monotonic() - started, result

    elapsed, result = asyncio.run(scenario())
    assert 0.8 < elapsed < 3.0, elapsed
    assert result.rcvd is not None and result.rcvd.code == 1008


def test_logins_beyond_max_handshakes_wait_then_are_refused(tmp_path: Path) -> None:
    """Two agents enrolling hold both handshake slots (their enrollment is held up in the
    datastore): a third connection gets no challenge and is refused with 1013 at its deadline;
    once the two are welcomed, the third logs in."""
    deployment = make_deployment(tmp_path / "deploy")
    config = with_limits(deployment, handshake_timeout=1.5, max_handshakes=2)
    identities = [load_or_create(tmp_path / f"agent{n}.yaml") for n in range(3)]

    async def scenario() -> tuple[ConnectionClosed, list[ServerMessage], ServerMessage]:
        async with running_server_with(config) as server:
            gate, opened = threading.Event(), threading.Event()

            def hold() -> None:
                gate.set()
                assert opened.wait(20)

            server.datastore.group.submit(hold)
            assert await asyncio.to_thread(gate.wait, 10)
            holders = [asyncio.create_task(log_in(deployment, i)) for i in identities[:2]]
            await wait_until(lambda: server.connections.handshakes.locked(), 10)
            third = await stranger(deployment)
            refused = await closed(third, 5)  # no challenge first: recv() only sees the close
            opened.set()
            welcomed = list(await asyncio.gather(*holders))
            return refused, welcomed, await log_in(deployment, identities[2])

    refused, welcomed, reply = asyncio.run(scenario())
    assert refused.rcvd is not None and refused.rcvd.code == 1013
    assert "too many logins" in refused.rcvd.reason
    assert [type(w) for w in welcomed] == [Welcome, Welcome]
    assert isinstance(reply, Welcome)


# -- item 7: enrollment is rate-limited ---------------------------------------------------------


def test_enrollment_is_rate_limited_and_a_refused_agent_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A burst of 2 and one every 5 s: of three new identities at once, the third is refused
    with a reason and a retry time; a real agent refused the same way logs it, backs off,
    and enrolls once a token is back."""
    caplog.set_level(logging.INFO)
    deployment = make_deployment(tmp_path / "deploy")
    config = with_limits(deployment, enrollments_per_second=0.2, enrollment_burst=2)
    identities = [load_or_create(tmp_path / f"id{n}.yaml") for n in range(3)]

    async def scenario() -> tuple[list[ServerMessage], str, int]:
        async with running_server_with(config) as server:
            replies = [await log_in(deployment, identity) for identity in identities]
            again = await log_in(deployment, identities[0])  # enrolled: no token needed
            assert isinstance(again, Welcome)
            async with running_agent(agent_config(deployment, tmp_path / "late")) as late:
                record = server.datastore.clients.get(late.client_id)
                assert record is not None
                return replies, late.client_id, late.sessions

    replies, late_id, sessions = asyncio.run(scenario())
    assert [type(reply) for reply in replies] == [Welcome, Welcome, Rejected]
    refused = replies[2]
    assert isinstance(refused, Rejected)
    assert "too many new clients" in refused.reason
    assert refused.retry_after is not None and 1 < refused.retry_after <= 10.0
    messages = [record.getMessage() for record in caplog.records]
    assert any(f"refused enrollment of {late_id}" in m for m in messages), messages
    assert any("too many new clients" in m and "connection to" in m for m in messages)
    assert sessions == 1  # welcomed once, after the refusals


# -- item 13: announced upload sizes are checked before anything is reserved -------------------


def test_uploads_announced_over_the_limits_are_refused_before_anything_is_reserved(
    tmp_path: Path, repository: ArtifactRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """2**62 bytes (over the server's limit) and 5,000 bytes (over the collection's 1,000):
    each is acknowledged and answered with a refusal the agent can read, the flow's log says
    why, nothing is reserved, and the server never reports its filestore full. 2**63 does not
    even decode (1008)."""
    caplog.set_level(logging.INFO)
    deployment = make_deployment(tmp_path / "deploy")
    identity = load_or_create(tmp_path / "raw.yaml")
    config = with_limits(deployment, max_upload_bytes=1 << 20)
    sha = "0" * 64

    async def scenario() -> tuple[list[UploadResume], ConnectionClosed, Any]:
        async with running_server_with(config, repository) as server:
            async with RawAgent(deployment, identity):
                pass
            flow = await start_flow(
                server, identity.client_id, [("Test.Count", {"N": 1})],
                limits=Limits(max_upload_bytes=1000),
            )  # fmt: skip
            answers: list[UploadResume] = []
            async with RawAgent(deployment, identity) as raw:
                assert raw.ws is not None
                for seq, (upload_id, size) in enumerate(
                    [("huge", 2**62), ("over", 5000), ("fine", 10)], start=1
                ):
                    start = UploadStart(
                        flow_id=flow.flow_id, seq=seq, upload_id=upload_id, path=f"/{upload_id}",
                        size=size, sha256=sha,
                    )  # fmt: skip
                    await raw.send(encode(start))
                    while True:
                        message = decode_from_server(await asyncio.wait_for(raw.ws.recv(), 10))
                        if isinstance(message, UploadResume):
                            answers.append(message)
                            break
                frame = msgspec.msgpack.encode(
                    {**msgspec.to_builtins(start), "seq": 4, "upload_id": "u", "size": 2**63}
                )
                await raw.send(frame)
                too_big = await raw.closed()
            record = server.datastore.collections.get(flow.flow_id)
            logs = server.filestore.read_logs(identity.client_id, flow.flow_id, 0, 10)
            partial = list(Path(config.filestore_dir).rglob("uploads.partial/*.part"))
            assert record is not None and record.last_seq == 3 and record.logs == 2
            return answers, too_big, (logs, partial)

    answers, too_big, (logs, partial) = asyncio.run(scenario())
    huge, over, fine = answers
    assert huge.offset == 2**62 and huge.refused and "limits.max_upload_bytes" in huge.refused
    assert over.offset == 5000 and over.refused and "collection's max_upload_bytes" in over.refused
    assert fine.offset == 0 and fine.refused is None
    assert [entry["message"] for entry in logs] == [huge.refused, over.refused]
    assert [p.name for p in partial] == ["fine.part"]
    assert too_big.rcvd is not None and too_big.rcvd.code == 1008
    assert not [
        r for r in caplog.records if "filestore" in r.getMessage() and "full" in r.getMessage()
    ]


def test_log_batches_count_their_cells() -> None:
    """The session charges a log batch by the fields of its entries (the budget's unit)."""
    from peregrine.server.session import _cells

    entries: list[Any] = [{"time": 1.0, "level": "info", "message": "m"}] * 3
    assert _cells(LogBatch(flow_id="F.1", seq=1, entries=entries)) == 9
    batch = ResultBatch(
        flow_id="F.1", seq=1, artifact="a", source="", columns=["a", "b"], rows=[[1, 2]] * 5
    )
    assert _cells(batch) == 10
