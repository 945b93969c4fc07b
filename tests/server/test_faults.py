"""Faults: kill -9 of either side, hostile or broken agents, a full disk, cancellation,
time-outs and uploads cut off mid-way. Real processes, real TLS, real files; loopback only.

What every test proves in the end is the collection contract: each row is stored exactly once
(no gap, no duplicate) or the flow says why it is incomplete, and no flow is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from peregrine.agent.identity import load_or_create
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.datastore import Datastore, FlowRecord, open_datastore
from peregrine.filestore import Filestore
from peregrine.protocol.messages import (
    MAX_MESSAGE_BYTES,
    Ack,
    Hello,
    LogBatch,
    ResultBatch,
    UploadChunk,
    encode,
)
from peregrine.server import session as session_module
from peregrine.server.app import Server
from peregrine.server.connections import ConnectionRegistry
from peregrine.server.ingest import Outcome
from peregrine.services.collections import CollectionService, Limits
from peregrine.services.monitor import GRACE_SECONDS
from tests.server.harness import (
    RawAgent,
    agent_config,
    agent_process,
    make_deployment,
    port_open,
    query_workers,
    repository_with,
    running_agent,
    running_server_with,
    schedule_flow,
    server_process,
    start_flow,
    wait_until,
)

#: Deterministic test artifacts: numbered rows made by SQLite, numbered lines printed by a
#: program (slow on purpose), and one upload.
ARTIFACTS = """
name: Test.Count
description: Rows 1..N with a label.
type: CLIENT
parameters:
  - name: N
    type: int
    default: 1000
sources:
  - query: |
      WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :N)
      SELECT n, printf('row %08d', n) AS label FROM c
---
name: Test.Lines
description: One row per line a program prints (each line is a number).
type: CLIENT
parameters:
  - name: Argv
    description: The program and its arguments, as a JSON list.
sources:
  - query: SELECT CAST(line AS INTEGER) AS n FROM execve_lines(:Argv, NULL, 120)
---
name: Test.Wide
description: Rows 1..N of 10 kB each, and one row of 5 MB (row Huge), bigger than a message.
type: CLIENT
parameters:
  - name: N
    type: int
    default: 1000
  - name: Huge
    type: int
    default: 0
sources:
  - query: |
      WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :N)
      SELECT n, hex(randomblob(CASE WHEN n = :Huge THEN 2500000 ELSE 5000 END)) AS pad FROM c
---
name: Test.Upload
description: Upload one file.
type: CLIENT
parameters:
  - name: Path
sources:
  - query: SELECT upload(:Path) AS upload
"""

FINAL = ("Finished", "Error", "Cancelled")


@pytest.fixture(scope="module")
def repository() -> ArtifactRepository:
    return repository_with(ARTIFACTS)


def slow_lines(total: int, pause: float = 0.002) -> str:
    """Argv printing 1..total, one line every ``pause`` seconds (or so)."""
    return json.dumps(["sh", "-c", f"for i in $(seq 1 {total}); do echo $i; sleep {pause}; done"])


def numbers(filestore: Filestore, flow: FlowRecord, artifact: str) -> list[int]:
    rows = filestore.read_rows(flow.client_id, flow.flow_id, artifact, "", 0, 10**7)
    return [int(r["n"]) for r in rows]


def flow_of(datastore: Datastore, flow_id: str) -> FlowRecord:
    record = datastore.collections.get(flow_id)
    assert record is not None
    return record


async def interrogated(datastore: Datastore, client_id: str, timeout: float = 30.0) -> None:
    """Wait for enrollment's interrogation to finish, so it does not mix with the test."""

    def done() -> bool:
        flows = datastore.collections.list_for_client(client_id)
        return bool(flows) and all(f.state in FINAL for f in flows)

    await wait_until(done, timeout)


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if marker in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
    return found


# -- 1 and 2: kill -9 ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)  # its waits add up to about 140 s
def test_kill_9_of_the_agent_keeps_every_spooled_row_once(
    tmp_path: Path, repository: ArtifactRepository
) -> None:
    """The agent (a process) is killed -9 while rows stream; restarted, it sends what its spool
    still held and reports the flow as interrupted. The stored rows are exactly 1..K (no gap,
    no duplicate), with K at least what the server had stored before the kill."""
    deployment = make_deployment(tmp_path / "deploy")
    config = agent_config(deployment, tmp_path / "host")
    client_id = load_or_create(Path(config.writeback_path)).client_id
    agent = agent_process(config, tmp_path / "client.yaml", tmp_path / "agent.log")
    total = 3000

    async def scenario() -> None:
        async with running_server_with(deployment.server, repository) as server:
            agent.start()
            try:
                await wait_until(lambda: client_id in server.connections, 30)
                await interrogated(server.datastore, client_id)
                # A server slower than the agent, so unacknowledged batches pile up in the
                # spool (what a restarted agent must send again).
                store_messages = server.ingestor.flow_messages

                async def slow_store(client_id: str, messages: Any) -> Any:
                    await asyncio.sleep(0.08 * len(messages))
                    return await store_messages(client_id, messages)

                server.ingestor.flow_messages = slow_store  # type: ignore[method-assign]
                flow = await start_flow(
                    server,
                    client_id,
                    [("Test.Lines", {"Argv": slow_lines(total)})],
                    batch_rows=10,
                    batch_seconds=0.1,
                )
                datastore = server.datastore
                await wait_until(lambda: flow_of(datastore, flow.flow_id).rows >= 200, 30)
                agent.kill()
                stored_before = flow_of(datastore, flow.flow_id).rows
                assert flow_of(datastore, flow.flow_id).state == "In progress"
                await asyncio.sleep(0.5)
                agent.start()
                final = await server.wait_for_flow(flow.flow_id, FINAL, timeout=40)
            finally:
                agent.stop()
            assert final.state == "Error"
            assert final.error is not None and "agent restarted" in final.error
            stored = numbers(server.filestore, final, "Test.Lines")
            assert stored == list(range(1, len(stored) + 1)), "a gap or a duplicate"
            # More than the server had when the agent died: the rest came from its spool.
            assert stored_before < len(stored) < total
            assert final.rows == len(stored)

    asyncio.run(scenario())
    assert "Traceback" not in agent.output()


@pytest.mark.slow
@pytest.mark.timeout(240)  # its waits add up to about 140 s
def test_kill_9_of_the_server_loses_and_doubles_nothing(
    tmp_path: Path, repository: ArtifactRepository
) -> None:
    """The server (a process) is killed -9 while rows stream, then started again on the same
    configuration; the agent reconnects and resends its spool. Every row arrives exactly once.

    The collection is stored straight into the server's SQLite datastore from this process
    (``CollectionService.prepare`` + ``store``, with a repository that has the test artifact;
    the request carries the artifact definitions, so the server process needs no copy). The
    server delivers it as a pending task when the agent next connects, so the agent is started
    (again) after the collection is stored.
    """
    deployment = make_deployment(tmp_path / "deploy")
    config = agent_config(deployment, tmp_path / "host")
    server = server_process(deployment, tmp_path / "server.log")
    total = 30_000

    async def scenario(datastore: Datastore, filestore: Filestore) -> None:
        async with running_agent(config) as agent:
            client_id = agent.client_id
            await interrogated(datastore, client_id)
        service = CollectionService(datastore, repository, ConnectionRegistry())
        flow, _ = schedule_flow(
            service, client_id, [("Test.Count", {"N": total})], batch_rows=50, batch_seconds=5
        )
        async with running_agent(config) as agent:
            await wait_until(lambda: flow_of(datastore, flow.flow_id).rows >= 2000, 30, 0.02)
            server.kill()
            at_kill = flow_of(datastore, flow.flow_id)
            assert at_kill.state == "In progress" and at_kill.rows < total
            await wait_until(lambda: not agent.connected.is_set(), 10)
            assert agent.spool.size > 0, "the unacknowledged batches wait in the spool"
            server.start()
            final = await wait_until(
                lambda: (r := flow_of(datastore, flow.flow_id)).state in FINAL and r, 60
            )
            await wait_until(lambda: agent.spool.size == 0, 10)
            assert agent.sessions >= 2
        assert final.state == "Finished", final.error
        assert final.rows == total
        assert numbers(filestore, final, "Test.Count") == list(range(1, total + 1))
        assert filestore.row_count(client_id, flow.flow_id, "Test.Count", "") == total

    server.start()
    try:
        port = int(deployment.server.port)
        deadline = time.monotonic() + 30
        while not port_open(port):
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
        datastore = open_datastore(deployment.server.datastore_url)
        try:
            filestore = Filestore(Path(deployment.server.filestore_dir), 0)
            asyncio.run(scenario(datastore, filestore))
        finally:
            datastore.close()
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()[-3000:]


def test_the_server_loads_artifact_directories_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``$PEREGRINE_ARTIFACT_DIRS`` works for a server (process) as for the CLI, so custom
    artifacts can be collected from it."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "test.yaml").write_text(ARTIFACTS)
    monkeypatch.setenv("PEREGRINE_ARTIFACT_DIRS", f"{tmp_path / 'missing'}{os.pathsep}{artifacts}")
    deployment = make_deployment(tmp_path / "deploy")
    server = Server(deployment.server)
    try:
        assert server.repository.find("Test.Count") is not None
        assert server.repository.find("Generic.Client.Info") is not None
    finally:
        server.datastore.close()


# -- 3 and 4: hostile and broken agents ---------------------------------------------------------


def raw_frame(**fields: Any) -> bytes:
    return msgspec.msgpack.encode(fields)


def test_malformed_and_oversized_messages_close_only_that_connection(
    tmp_path: Path, repository: ArtifactRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """Each bad frame closes its sender's connection with a reason (1008, or 1009 for a frame
    over the limit) and is logged; an agent connected at the same time finishes a collection
    without ever being disconnected."""
    caplog.set_level(logging.INFO, logger="peregrine.server")
    deployment = make_deployment(tmp_path / "deploy")
    raw_identity = load_or_create(tmp_path / "raw.yaml")
    cid = raw_identity.client_id
    total = 20_000

    async def scenario() -> None:
        async with running_server_with(deployment.server, repository) as server:
            async with running_agent(agent_config(deployment, tmp_path / "good")) as good:
                await interrogated(server.datastore, good.client_id)
                async with RawAgent(deployment, raw_identity):
                    pass  # enrolls the raw client (it never answers its interrogation)
                own = await start_flow(server, cid, [("Test.Count", {"N": 3})])
                hello = Hello(
                    client_id=cid,
                    public_key=raw_identity.public_key_bytes,
                    signature=b"x" * 64,
                    agent_version="raw",
                )
                rows = dict(artifact="Test.Count", source="", columns=["n"])
                cases: list[tuple[str, bytes | str, int, str]] = [
                    ("garbage", b"\x93\x01\xff not msgpack at all", 1008, "malformed"),
                    ("text frame", "hello", 1008, "text frames"),
                    ("oversized", b"\x00" * (MAX_MESSAGE_BYTES + 1), 1009, ""),
                    ("a second hello", encode(hello), 1008, "unexpected Hello"),
                    ("a server-only kind", encode(Ack(flow_id=own.flow_id, seq=1)), 1008, ""),
                    (
                        "a field of the wrong type",
                        raw_frame(kind="rows", flow_id=own.flow_id, seq="one", **rows, rows=[]),
                        1008,
                        "malformed",
                    ),
                    (
                        "rows wider than their columns",
                        encode(ResultBatch(flow_id=own.flow_id, seq=1, **rows, rows=[[1, 2]])),
                        1008,
                        "",
                    ),
                ]
                flow = await start_flow(
                    server, good.client_id, [("Test.Count", {"N": total})], batch_rows=200
                )

                async def attack(frame: bytes | str) -> ConnectionClosed:
                    async with RawAgent(deployment, raw_identity) as raw:
                        await raw.send(frame)
                        return await raw.closed()

                # One at a time: two live connections with one client id would be a clone.
                results = [await attack(frame) for _, frame, _, _ in cases]
                for (what, _, code, reason), closed in zip(cases, results, strict=True):
                    assert closed.rcvd is not None, what
                    assert closed.rcvd.code == code, (what, closed.rcvd)
                    assert reason in closed.rcvd.reason, (what, closed.rcvd)
                final = await server.wait_for_flow(flow.flow_id, FINAL, timeout=30)
                assert final.state == "Finished"
                assert numbers(server.filestore, final, "Test.Count") == list(range(1, total + 1))
                assert good.sessions == 1 and good.connected.is_set()
                assert flow_of(server.datastore, own.flow_id).rows == 0
                assert server.filestore.row_count(cid, own.flow_id, "Test.Count", "") == 0

    asyncio.run(scenario())
    closing = [
        r.getMessage()
        for r in caplog.records
        if r.name == "peregrine.server.session" and r.levelno >= logging.WARNING
    ]
    assert sum(cid in m for m in closing) >= 7, closing


def test_writing_to_a_flow_that_is_not_ones_own_is_refused(
    tmp_path: Path, repository: ArtifactRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """Another client's flow, a made-up flow and a path-like flow id: the connection is closed
    (1008), the refusal logged, and nothing is stored anywhere."""
    caplog.set_level(logging.INFO, logger="peregrine.server")
    deployment = make_deployment(tmp_path / "deploy")
    raw_identity = load_or_create(tmp_path / "raw.yaml")
    cid = raw_identity.client_id

    async def scenario() -> None:
        async with running_server_with(deployment.server, repository) as server:
            async with running_agent(agent_config(deployment, tmp_path / "victim")) as victim:
                await interrogated(server.datastore, victim.client_id)
                theirs = await start_flow(server, victim.client_id, [("Test.Count", {"N": 10})])
                theirs = await server.wait_for_flow(theirs.flow_id, ["Finished"], timeout=20)
                async with RawAgent(deployment, raw_identity):
                    pass
                made_up = "F.00000000deadbeef"
                rows = dict(artifact="Test.Count", source="", columns=["n", "label"])
                frames = [
                    encode(ResultBatch(flow_id=theirs.flow_id, seq=99, **rows, rows=[[11, "x"]])),
                    encode(ResultBatch(flow_id=made_up, seq=1, **rows, rows=[[1, "x"]])),
                    encode(
                        UploadChunk(flow_id=theirs.flow_id, upload_id="u1", offset=0, data=b"x")
                    ),
                    encode(LogBatch(flow_id="../../../../tmp/x", seq=1, entries=[{"a": 1}])),
                ]
                for frame in frames:
                    async with RawAgent(deployment, raw_identity) as raw:
                        await raw.send(frame)
                        closed = await raw.closed()
                    assert closed.rcvd is not None and closed.rcvd.code == 1008
                    assert "not its own" in closed.rcvd.reason
                after = flow_of(server.datastore, theirs.flow_id)
                assert (after.rows, after.last_seq, after.state, after.uploads) == (
                    10, theirs.last_seq, "Finished", 0,
                )  # fmt: skip
                assert numbers(server.filestore, after, "Test.Count") == list(range(1, 11))
                assert server.datastore.collections.get(made_up) is None
                root = Path(deployment.server.filestore_dir)
                assert not list(root.rglob(made_up))
                assert not (root / "clients" / cid).exists()
                assert not list(root.rglob("uploads.partial"))

    asyncio.run(scenario())
    refused = [
        r.getMessage()
        for r in caplog.records
        if r.name == "peregrine.server.session" and "not its own" in r.getMessage()
    ]
    assert len(refused) == 4, refused


def test_rows_too_big_for_one_message_do_not_block_the_agent(
    tmp_path: Path, repository: ArtifactRepository
) -> None:
    """1000 rows of 10 kB (10 MB at the default 1000 rows a batch) are cut into batches that
    fit a message; a single 5 MB row, which fits no message, is left out with an error in the
    flow's log. Before, the server refused the oversized frame and the agent sent it again
    after every reconnect, for ever."""
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server_with(deployment.server, repository) as server:
            async with running_agent(agent_config(deployment, tmp_path / "host")) as agent:
                await interrogated(server.datastore, agent.client_id)
                flow = await start_flow(
                    server, agent.client_id, [("Test.Wide", {"N": 1000, "Huge": 500})]
                )
                final = await server.wait_for_flow(flow.flow_id, FINAL, timeout=30)
                assert final.state == "Finished", final.error
                assert numbers(server.filestore, final, "Test.Wide") == [
                    n for n in range(1, 1001) if n != 500
                ]
                assert agent.sessions == 1, "never disconnected"
                logs = server.filestore.read_logs(agent.client_id, flow.flow_id, 0, 100)
                assert any("over the" in e["message"] and e["level"] == "error" for e in logs)

    asyncio.run(scenario())


# -- 5: disk full -------------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs to fill up (needs root and mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path, leave: int) -> Path:
    """Write a filler file until only about ``leave`` bytes are free."""
    filler = directory / "filler"
    free = Filestore(directory, 0).free_bytes()
    with open(filler, "wb") as out:
        out.write(b"\0" * max(0, free - leave))
        out.flush()
        os.fsync(out.fileno())
    return filler


def test_a_full_filestore_holds_results_in_the_spool_until_space_returns(
    tmp_path: Path,
    small_tmpfs: Path,
    repository: ArtifactRepository,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="peregrine.server")
    monkeypatch.setattr(session_module, "STORAGE_RETRY_SECONDS", 1.0)
    deployment = make_deployment(tmp_path / "deploy")
    reserve = 1 << 20
    server_config = msgspec.structs.replace(
        deployment.server, filestore_dir=str(small_tmpfs / "filestore"), min_free_bytes=reserve
    )
    total = 20_000

    async def scenario() -> None:
        async with running_server_with(server_config, repository) as server:
            async with running_agent(agent_config(deployment, tmp_path / "host")) as agent:
                await interrogated(server.datastore, agent.client_id)
                filler = fill(small_tmpfs, reserve // 2)
                flow = await start_flow(
                    server, agent.client_id, [("Test.Count", {"N": total})], batch_rows=500
                )
                # The agent produces everything, is told to hold it, and keeps it.
                await wait_until(lambda: agent._paused_until > time.monotonic(), 20)
                await wait_until(lambda: flow.flow_id not in agent.jobs, 30)
                await asyncio.sleep(3)  # several refused retries
                held = flow_of(server.datastore, flow.flow_id)
                assert held.state == "In progress", held
                assert held.rows == 0
                assert agent.spool.size > 0
                assert (
                    server.filestore.row_count(agent.client_id, flow.flow_id, "Test.Count", "") == 0
                )
                filler.unlink()
                final = await server.wait_for_flow(flow.flow_id, FINAL, timeout=30)
                assert final.state == "Finished", final.error
                assert final.rows == total
                assert numbers(server.filestore, final, "Test.Count") == list(range(1, total + 1))
                await wait_until(lambda: agent.spool.size == 0, 10)

    asyncio.run(scenario())
    assert any("filestore full" in r.getMessage() for r in caplog.records)


# -- 6: cancellation ----------------------------------------------------------------------------


def test_cancelling_stops_the_query_on_the_agent(
    tmp_path: Path, repository: ArtifactRepository
) -> None:
    """A cancelled flow is Cancelled at once, and within seconds its query worker and the
    program it ran are gone; also when the cancel comes while the query is still starting."""
    deployment = make_deployment(tmp_path / "deploy")
    tag = f"{random.randint(100, 999)}.{random.randint(10000, 99999)}"
    running, starting = f"sleep {tag}1", f"sleep {tag}2"

    def sleeper(command: str) -> dict[str, object]:
        return {"Argv": json.dumps(["sh", "-c", f"echo 1; exec {command}"])}

    async def scenario() -> None:
        async with running_server_with(deployment.server, repository) as server:
            async with running_agent(agent_config(deployment, tmp_path / "host")) as agent:
                await interrogated(server.datastore, agent.client_id)
                await wait_until(lambda: not agent.jobs, 10)
                flow = await start_flow(
                    server, agent.client_id, [("Test.Lines", sleeper(running))], batch_seconds=0.2
                )
                await server.wait_for_flow(flow.flow_id, ["In progress"], timeout=20)
                [program] = await wait_until(lambda: processes_with(running), 20)
                [worker] = query_workers(agent)
                started = time.monotonic()
                assert await server.collections.cancel(flow.flow_id)
                assert flow_of(server.datastore, flow.flow_id).state == "Cancelled"
                _, alive = await asyncio.to_thread(psutil.wait_procs, [program, worker], 5)
                assert not alive, alive
                await wait_until(lambda: flow.flow_id not in agent.jobs, 5)
                assert time.monotonic() - started < 5

                # Cancelled as soon as the agent says it started: its worker is still starting.
                early = await start_flow(
                    server, agent.client_id, [("Test.Lines", sleeper(starting))]
                )
                await server.wait_for_flow(early.flow_id, ["In progress"], timeout=20)
                started = time.monotonic()
                assert await server.collections.cancel(early.flow_id)
                await wait_until(lambda: early.flow_id not in agent.jobs, 5, 0.05)
                assert time.monotonic() - started < 5
                assert not processes_with(starting) and not query_workers(agent)

                await wait_until(lambda: agent.spool.size == 0, 10)
                for cancelled in (flow, early):
                    final = flow_of(server.datastore, cancelled.flow_id)
                    assert final.state == "Cancelled"
                    assert final.error == "cancelled by a user"
                assert flow_of(server.datastore, flow.flow_id).rows == 1

    try:
        asyncio.run(scenario())
    finally:
        for proc in processes_with(f"sleep {tag}"):
            proc.kill()


# -- 7: time-outs -------------------------------------------------------------------------------


def test_no_flow_stays_in_flight_forever(tmp_path: Path, repository: ArtifactRepository) -> None:
    """With an injected clock: a flow for an offline client stays Scheduled (it is delivered
    when the client connects); a silent flow of a connected agent fails; one whose agent left
    becomes Unresponsive, then fails at its time-out; a flow past its time-out fails."""
    deployment = make_deployment(tmp_path / "deploy")
    sleeping = {"Argv": json.dumps(["sh", "-c", "echo 1; exec sleep 40"])}

    async def scenario() -> None:
        async with running_server_with(deployment.server, repository) as server:
            store = server.datastore
            async with running_agent(agent_config(deployment, tmp_path / "gone")) as leaving:
                gone = leaving.client_id
                await interrogated(store, gone)
                left = await start_flow(server, gone, [("Test.Lines", sleeping)])
                await server.wait_for_flow(left.flow_id, ["In progress"], timeout=20)
            await wait_until(lambda: gone not in server.connections, 10)
            waiting = await start_flow(server, gone, [("Test.Count", {})])
            async with running_agent(agent_config(deployment, tmp_path / "here")) as agent:
                here = agent.client_id
                await interrogated(store, here)
                silent = await start_flow(server, here, [("Test.Lines", sleeping)])
                slow = await start_flow(
                    server,
                    here,
                    [("Test.Lines", sleeping)],
                    limits=Limits(timeout=20, progress_timeout=10_000),
                )
                for flow in (silent, slow):
                    await server.wait_for_flow(flow.flow_id, ["In progress"], timeout=20)
                t0 = time.time()
                assert await server.monitor.check_once(now=t0) == []

                changed = await server.monitor.check_once(now=t0 + 300 + 5)
                assert sorted(changed) == sorted([left.flow_id, silent.flow_id, slow.flow_id])
                states = {f: flow_of(store, f) for f in changed}
                assert states[left.flow_id].state == "Unresponsive"
                assert states[silent.flow_id].state == "Error"
                assert "no progress" in (states[silent.flow_id].error or "")
                assert states[slow.flow_id].state == "Error"
                assert "timed out" in (states[slow.flow_id].error or "")
                # The agent is told to stop what the server gave up on.
                await wait_until(lambda: not (agent.jobs.keys() & {silent.flow_id}), 10)
                await wait_until(lambda: not (agent.jobs.keys() & {slow.flow_id}), 10)

                later = t0 + 600 + GRACE_SECONDS + 5
                assert await server.monitor.check_once(now=later) == [left.flow_id]
                gave_up = flow_of(store, left.flow_id)
                assert gave_up.state == "Error" and "timed out" in (gave_up.error or "")
                assert flow_of(store, waiting.flow_id).state == "Scheduled"
                in_flight = await asyncio.to_thread(store.collections.in_flight)
                assert [f.flow_id for f in in_flight] == [waiting.flow_id]
                for flow in (silent, slow):  # a late "cancelled" from the agent changes nothing
                    assert flow_of(store, flow.flow_id).state == "Error"

    asyncio.run(scenario())


# -- 8: uploads resume --------------------------------------------------------------------------


def test_an_upload_cut_off_mid_way_resumes_from_the_stored_offset(
    tmp_path: Path, repository: ArtifactRepository
) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    evidence = tmp_path / "evidence"
    (evidence / "sub").mkdir(parents=True)
    content = random.randbytes(9 * 1024 * 1024 + 12345)
    (evidence / "big\x01file.bin").write_bytes(content)
    # A path with "..", and a control character in the name: the server must sanitise both.
    agent_path = f"{evidence}/sub/../big\x01file.bin"

    async def scenario() -> None:
        async with running_server_with(deployment.server, repository) as server:
            async with running_agent(agent_config(deployment, tmp_path / "host")) as agent:
                await interrogated(server.datastore, agent.client_id)
                loop = asyncio.get_running_loop()
                original_chunk = server.ingestor.upload_chunk
                original_start = server.filestore.start_upload
                starts: list[int] = []
                after_resume: list[int] = []
                state = {"stored": 0, "dropping": False}

                def start_upload(*args: Any) -> int:
                    offset = original_start(*args)
                    starts.append(offset)
                    state["dropping"] = False
                    return offset

                def upload_chunk(client_id: str, chunk: UploadChunk) -> Any:
                    if state["dropping"]:
                        return Outcome()  # lost on the dying connection
                    if len(starts) >= 2:
                        after_resume.append(chunk.offset)
                    outcome = original_chunk(client_id, chunk)
                    state["stored"] += 1
                    if state["stored"] == 3 and len(starts) == 1:
                        state["dropping"] = True
                        connection = server.connections.get(client_id)
                        assert connection is not None
                        asyncio.run_coroutine_threadsafe(
                            connection.close(1001, "test: connection lost"), loop
                        )
                    return outcome

                server.ingestor.upload_chunk = upload_chunk  # type: ignore[method-assign]
                server.filestore.start_upload = start_upload  # type: ignore[method-assign]
                flow = await start_flow(
                    server, agent.client_id, [("Test.Upload", {"Path": agent_path})]
                )
                final = await server.wait_for_flow(flow.flow_id, FINAL, timeout=40)
                assert final.state == "Finished", final.error
                assert agent.sessions >= 2, "the connection was cut"
                assert starts[0] == 0
                resumed = starts[1]
                assert 0 < resumed < len(content)
                assert resumed == 3 * 1024 * 1024
                assert after_resume[0] == resumed, after_resume
                assert 0 not in after_resume, "it started over"
                [record] = server.filestore.uploads(agent.client_id, flow.flow_id)
                assert record.sha256 == hashlib.sha256(content).hexdigest()
                assert record.size == len(content) == final.upload_bytes
                assert final.uploads == 1
                assert record.path == agent_path
                parts = record.stored_name.split("/")
                assert ".." not in parts and all("\x01" not in p for p in parts)
                flow_dir = server.filestore.flow_dir(agent.client_id, flow.flow_id)
                stored = (flow_dir / "uploads" / record.stored_name).resolve()
                assert stored.is_relative_to((flow_dir / "uploads").resolve())
                with server.filestore.open_upload(
                    agent.client_id, flow.flow_id, record.stored_name
                ) as handle:
                    assert hashlib.sha256(handle.read()).hexdigest() == record.sha256
                await wait_until(lambda: not agent.spool.incomplete_uploads(), 10)

    asyncio.run(scenario())
