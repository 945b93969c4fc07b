"""Event monitoring under faults, with real processes over TLS: kill -9 of the agent or of the
server while events flow loses no spooled event and doubles none (the stored sequence numbers
are exactly 1..N), and a CPU-hungry event query is throttled without starving the agent."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from peregrine.agent.identity import load_or_create
from peregrine.datastore import open_datastore
from peregrine.filestore import Filestore
from peregrine.filestore.events import EventFiles
from peregrine.protocol.messages import EventRows, decode_from_agent
from tests.server.harness import (
    agent_config,
    agent_process,
    make_deployment,
    port_open,
    repository_with,
    running_agent,
    running_server_with,
    server_process,
    start_flow,
    wait_until,
)
from tests.server.test_events import in_loop

ARTIFACTS = """
name: Test.Events.Fast
description: A row every 20 ms.
type: CLIENT_EVENT
sources:
  - query: SELECT tick FROM clock(0.02)
---
name: Test.Events.Burn
description: Burns CPU for good and never returns a row.
type: CLIENT_EVENT
sources:
  - query: |
      SELECT tick FROM clock(0.5)
      WHERE (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c)
             SELECT count(*) FROM c) < 0
---
name: Test.Quick
description: A normal collection.
sources:
  - query: SELECT 42 AS answer
"""
FAST = "Test.Events.Fast"
STREAM = f"events:{FAST}"
BURN = "Test.Events.Burn"
ALL = frozenset({"EXECVE", "FILESYSTEM_READ"})


def stored_seqs(files: EventFiles, client_id: str) -> list[int]:
    return [int(r["_seq"]) for r in files.iter_rows(client_id, FAST, 0, time.time() + 86400)]


def spooled_up_to(spool_db: Path) -> int:
    """The last sequence number the agent's spool gave out for the stream (0: none)."""
    with sqlite3.connect(spool_db) as db:
        row = db.execute("SELECT next_seq FROM flows WHERE flow_id = ?", (STREAM,)).fetchone()
    return int(row[0]) - 1 if row else 0


def still_spooled(spool_db: Path) -> set[int]:
    """The numbers of the rows still waiting in the agent's spool (sent or not, never
    acknowledged)."""
    with sqlite3.connect(spool_db) as db:
        payloads = db.execute("SELECT payload FROM messages WHERE flow_id = ?", (STREAM,))
        waiting = [decode_from_agent(payload) for (payload,) in payloads]
    return {m.seq + i for m in waiting if isinstance(m, EventRows) for i in range(len(m.rows))}


def assert_exactly_once(seqs: list[int], spooled: int) -> None:
    assert seqs == list(range(1, len(seqs) + 1)), "a gap or a duplicate"
    assert len(seqs) >= spooled, f"{spooled - len(seqs)} spooled events never arrived"


@pytest.mark.slow
@pytest.mark.timeout(180)  # its waits add up to about 90 s
@in_loop
async def test_kill_9_of_the_agent_loses_and_doubles_no_event(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    config = agent_config(deployment, tmp_path / "host")
    client_id = load_or_create(Path(config.writeback_path)).client_id
    spool_db = Path(config.spool_dir) / "spool.db"
    agent = agent_process(config, tmp_path / "client.yaml", tmp_path / "agent.log")
    async with running_server_with(deployment.server, repository_with(ARTIFACTS)) as server:
        files = server.services.event_monitoring.files
        await server.services.event_monitoring.assign(FAST, {}, [], "test", ALL)
        agent.start()
        try:
            await wait_until(lambda: len(stored_seqs(files, client_id)) >= 100, 60)
            agent.kill()  # the agent and its query workers, mid-stream
            at_kill = spooled_up_to(spool_db)
            stored_then = len(stored_seqs(files, client_id))
            await asyncio.sleep(0.5)
            agent.start()  # it resumes watching from its kept set, then sends its spool
            await wait_until(lambda: len(stored_seqs(files, client_id)) >= at_kill + 100, 60)
            await server.services.event_monitoring.unassign(FAST, "test")
            await asyncio.sleep(3)  # the last batches in flight land
            spooled = spooled_up_to(spool_db)
            await wait_until(lambda: len(stored_seqs(files, client_id)) >= spooled, 30)
        finally:
            agent.stop()
        seqs = stored_seqs(files, client_id)
        assert_exactly_once(seqs, spooled)
        assert stored_then <= at_kill < len(seqs)
    assert "Traceback" not in agent.output(), agent.output()[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_of_the_server_loses_and_doubles_no_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is a process with the test artifacts in a directory of its own; the
    assignment is stored into its datastore before it starts, so it is sent at login."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "test.yaml").write_text(ARTIFACTS)
    monkeypatch.setenv("PEREGRINE_ARTIFACT_DIRS", str(artifacts))
    deployment = make_deployment(tmp_path / "deploy")
    config = agent_config(deployment, tmp_path / "host")
    server = server_process(deployment, tmp_path / "server.log")
    root = Path(deployment.server.filestore_dir)

    async def scenario(files: EventFiles) -> None:
        async with running_agent(config) as agent:
            client_id = agent.client_id
            await wait_until(lambda: len(stored_seqs(files, client_id)) >= 100, 60)
            server.kill()
            await wait_until(lambda: not agent.connected.is_set(), 10)
            await asyncio.sleep(1.0)  # events go on into the spool meanwhile
            assert agent.spool.size > 0, "the unacknowledged batches wait in the spool"
            server.start()
            await wait_until(agent.connected.is_set, 30)
            spooled = spooled_up_to(Path(config.spool_dir) / "spool.db")
            await wait_until(lambda: len(stored_seqs(files, client_id)) >= spooled + 50, 60)
            assert agent.sessions >= 2
        # The agent stopped: every row it numbered is stored or still in its spool (for its
        # next connection), never lost; none is stored twice.
        spool_db = Path(config.spool_dir) / "spool.db"
        spooled, waiting = spooled_up_to(spool_db), still_spooled(spool_db)
        seqs = stored_seqs(files, client_id)
        assert seqs == list(range(1, len(seqs) + 1)), "a gap or a duplicate"
        assert set(range(1, spooled + 1)) <= set(seqs) | waiting, "an event was lost"

    datastore = open_datastore(deployment.server.datastore_url)
    try:
        datastore.events.assign(FAST, {}, [], sorted(ALL), time.time(), "test")
    finally:
        datastore.close()
    server.start()
    try:
        deadline = time.monotonic() + 30
        while not port_open(int(deployment.server.port)):
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
        filestore = Filestore(root, 0)
        asyncio.run(scenario(EventFiles(filestore.root, filestore.check_space)))
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(180)
@in_loop
async def test_a_cpu_hungry_event_query_is_throttled_and_the_agent_stays_responsive(
    tmp_path: Path,
) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    async with running_server_with(deployment.server, repository_with(ARTIFACTS)) as server:
        monitoring = server.services.event_monitoring
        async with running_agent(agent_config(deployment, tmp_path / "a")) as agent:
            await monitoring.assign(BURN, {}, [], "test", ALL)

            def query_pid() -> int | None:
                worker = agent.events.workers.get(BURN) if agent.events else None
                running = list(worker._runner._running) if worker and worker._runner else []
                return running[0].pid if running else None  # type: ignore[attr-defined]

            burner = psutil.Process(await wait_until(query_pid, 30))
            await asyncio.sleep(4)  # past its start-up
            before = burner.cpu_times()
            started = time.monotonic()
            await asyncio.sleep(5)
            after = burner.cpu_times()
            share = (after.user + after.system - before.user - before.system) / (
                time.monotonic() - started
            )
            print(f"event worker CPU: {share:.0%} of a core (limit 25%)")
            assert share < 0.40  # the default events.cpu_limit, 25 %, with slack for sampling
            # A normal collection still runs to its end meanwhile.
            flow = await start_flow(server, agent.client_id, [("Test.Quick", {})])
            final = await server.wait_for_flow(flow.flow_id, {"Finished", "Error"}, 60)
            assert final.state == "Finished", final.error
            assert final.rows == 1
