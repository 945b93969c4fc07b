"""Collections on one client: durable tasks, streaming results, statistics, uploads, errors."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from pathlib import Path

import pytest

from peregrine.artifacts.loader import builtin_files
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.datastore import FlowRecord
from peregrine.protocol.messages import MAX_MESSAGE_BYTES, ArtifactCall, CollectionRequest, encode
from peregrine.services.collections import CollectionError
from tests.server.harness import (
    agent_config,
    make_deployment,
    running_agent,
    running_server,
    wait_until,
)

TEST_ARTIFACTS = """\
name: Test.Numbers
description: Deterministic rows, N of them.
parameters:
  - {name: N, type: int, default: 10, description: How many rows.}
sources:
  - name: numbers
    query: |
      WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :N)
      SELECT n, printf('row %08d', n) AS label FROM c
  - name: broken
    query: SELECT regex_extract('x', '(') AS never
---
name: Test.Upload
description: Uploads one file.
parameters:
  - {name: Path, type: string, description: The file.}
sources:
  - query: SELECT upload(:Path) AS stored
"""


def repository() -> ArtifactRepository:
    repo = ArtifactRepository()
    repo.load_texts(builtin_files())
    repo.load_texts([("test.yaml", TEST_ARTIFACTS)])
    assert not [p for p in repo.problems if p.severity == "error"]
    return repo


@pytest.fixture
def deployment(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_deployment(tmp_path / "deploy")


def test_results_stream_into_storage_with_statistics(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        from peregrine.server.app import Server

        server = Server(deployment.server, repository=repository())
        await server.start()
        try:
            async with running_agent(agent_config(deployment, tmp_path / "h")) as agent:
                flow = await server.collect(agent.client_id, [("Test.Numbers", {"N": 25_000})], "t")
                done = await server.wait_for_flow(flow.flow_id, ["Finished", "Error"], 60)
                # One source fails (a bad regex): the flow reports it, the other keeps its rows.
                assert done.state == "Error" and "regex_extract" in (done.error or "")
                assert done.rows == 25_000
                assert done.bytes > 25_000 * 10
                assert done.logs >= 1
                assert done.sources["Test.Numbers/numbers"]["status"] == "finished"
                assert done.sources["Test.Numbers/numbers"]["rows"] == 25_000
                assert done.sources["Test.Numbers/broken"]["status"] == "error"
                assert done.started is not None and done.finished is not None
                fs = server.filestore
                assert (
                    fs.row_count(agent.client_id, flow.flow_id, "Test.Numbers", "numbers") == 25_000
                )
                page = fs.read_rows(
                    agent.client_id, flow.flow_id, "Test.Numbers", "numbers", 12_345, 3
                )
                assert page == [
                    {"n": 12_346, "label": "row 00012346"},
                    {"n": 12_347, "label": "row 00012347"},
                    {"n": 12_348, "label": "row 00012348"},
                ]
                logs = fs.read_logs(agent.client_id, flow.flow_id, 0, 100)
                assert any("regex_extract" in entry["message"] for entry in logs)
                await wait_until(lambda: agent.spool.size == 0)  # everything acknowledged
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_a_collection_for_an_offline_client_waits_for_it(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = agent_config(deployment, tmp_path / "laptop")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(config) as agent:
                client_id = agent.client_id
                await wait_until(
                    lambda: (c := server.datastore.clients.get(client_id)) and c.interrogated
                )
            # The laptop is away; the analyst asks anyway.
            flow = await server.collect(
                client_id, [("Linux.Sys.Users", {"UserRegex": "^root$"})], "t"
            )
            await asyncio.sleep(0.5)
            assert server.datastore.collections.get(flow.flow_id).state == "Scheduled"
            assert [f for f, _ in server.datastore.tasks.pending(client_id)] == [flow.flow_id]
            async with running_agent(config):
                done = await server.wait_for_flow(flow.flow_id, ["Finished", "Error"], 60)
            assert done.state == "Finished" and done.rows == 1
            assert server.datastore.tasks.pending(client_id) == []

    asyncio.run(scenario())


def test_a_task_survives_a_server_restart(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = agent_config(deployment, tmp_path / "host")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(config) as agent:
                client_id = agent.client_id
            flow = await server.collect(client_id, [("Generic.System.Pslist", {})], "t")
        async with running_server(deployment) as server:
            async with running_agent(config):
                done = await server.wait_for_flow(flow.flow_id, ["Finished", "Error"], 60)
            assert done.state == "Finished" and done.rows > 0

    asyncio.run(scenario())


def test_bad_requests_are_refused_before_anything_is_stored(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(agent_config(deployment, tmp_path / "h")) as agent:
                cid = agent.client_id
                # The interrogation is the only collection so far.
                before = len(
                    await wait_until(lambda: server.datastore.collections.list_for_client(cid))
                )
                cases = [
                    (
                        "C.0000000000000000",
                        [("Linux.Sys.Users", {})],
                        frozenset(),
                        "unknown client",
                    ),
                    (cid, [("No.Such.Artifact", {})], frozenset(), "unknown artifact"),
                    (
                        cid,
                        [("Linux.Sys.Users", {"UserRegex": "("})],
                        frozenset(),
                        "regular expression",
                    ),
                    (cid, [("Linux.Sys.Users", {"Nope": 1})], frozenset(), "unknown parameter"),
                    (cid, [("Linux.Sys.Execve", {"Argv": "id"})], frozenset(), "EXECVE permission"),
                    (cid, [], frozenset(), "at least one artifact"),
                ]
                for client, artifacts, permissions, message in cases:
                    with pytest.raises(CollectionError, match=message):
                        await server.collect(client, artifacts, "t", permissions=permissions)
                assert len(server.datastore.collections.list_for_client(cid)) == before

    asyncio.run(scenario())


def test_uploads_arrive_verified_under_a_safe_name(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    evidence = tmp_path / "evidence dir" / "..weird name.bin"
    evidence.parent.mkdir()
    evidence.write_bytes(bytes(range(256)) * 12_000)  # 3 MB: several chunks

    async def scenario() -> None:
        from peregrine.server.app import Server

        server = Server(deployment.server, repository=repository())
        await server.start()
        try:
            async with running_agent(agent_config(deployment, tmp_path / "h")) as agent:
                flow = await server.collect(
                    agent.client_id, [("Test.Upload", {"Path": str(evidence)})], "t"
                )
                done = await server.wait_for_flow(flow.flow_id, ["Finished", "Error"], 60)
                assert done.state == "Finished", done.error
                assert done.uploads == 1 and done.upload_bytes == evidence.stat().st_size
                [record] = server.filestore.uploads(agent.client_id, flow.flow_id)
                assert record.path == str(evidence)
                assert record.sha256 == hashlib.sha256(evidence.read_bytes()).hexdigest()
                with server.filestore.open_upload(
                    agent.client_id, flow.flow_id, record.stored_name
                ) as f:
                    assert f.read() == evidence.read_bytes()
                flow_dir = server.filestore.flow_dir(agent.client_id, flow.flow_id)
                stored = list((flow_dir / "uploads").rglob("*weird name.bin"))
                assert stored and all(flow_dir in p.resolve().parents for p in stored)
                # The agent cleaned up its copy once the server had it.
                await wait_until(lambda: not agent.spool.incomplete_uploads())
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_several_agents_at_once(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Five endpoints connected together, each collecting a real artifact in parallel."""

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with contextlib.AsyncExitStack() as stack:
                agents = [
                    await stack.enter_async_context(
                        running_agent(agent_config(deployment, tmp_path / f"host{i}"))
                    )
                    for i in range(5)
                ]
                ids = {a.client_id for a in agents}
                assert len(ids) == 5
                await wait_until(lambda: ids <= set(server.connections.client_ids()))
                flows = [
                    await server.collect(a.client_id, [("Linux.Sys.Users", {})], "t")
                    for a in agents
                ]
                done = await asyncio.gather(
                    *(server.wait_for_flow(f.flow_id, ["Finished", "Error"], 60) for f in flows)
                )
                assert [d.state for d in done] == ["Finished"] * 5
                assert len({d.rows for d in done}) == 1  # the same machine: the same users
                assert {d.client_id for d in done} == ids

    asyncio.run(scenario())


def _oversized_users_query() -> dict[str, object]:
    """Parameters that make a collection request larger than one agent message may be."""
    return {"UserRegex": "^(" + "a" * MAX_MESSAGE_BYTES + ")$"}


def test_a_request_too_large_for_the_agent_is_refused_at_creation(
    deployment, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(agent_config(deployment, tmp_path / "h")) as agent:
                cid = agent.client_id
                before = len(
                    await wait_until(lambda: server.datastore.collections.list_for_client(cid))
                )
                with pytest.raises(CollectionError, match=f"over the {MAX_MESSAGE_BYTES:,}-byte"):
                    await server.collect(cid, [("Linux.Sys.Users", _oversized_users_query())], "t")
                assert len(server.datastore.collections.list_for_client(cid)) == before
                assert server.datastore.tasks.pending(cid) == []

    asyncio.run(scenario())


def test_a_stored_request_too_large_for_the_agent_fails_without_blocking_its_queue(
    deployment, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A task stored by an older server that allowed it: delivering it would cut the agent off
    at every reconnect. It ends in Error, and the collection queued after it still runs."""
    config = agent_config(deployment, tmp_path / "h")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(config) as agent:
                cid = agent.client_id
                await wait_until(
                    lambda: (c := server.datastore.clients.get(cid)) and c.interrogated
                )
            # The agent is offline: the oversized task and a normal one wait for it, in order.
            big = FlowRecord("F.00000000000000b1", cid, [], {}, "older-server", time.time())
            request = CollectionRequest(
                flow_id=big.flow_id,
                artifacts=[ArtifactCall("Linux.Sys.Users", _oversized_users_query())],
                definitions=[],
            )
            server.datastore.collections.create(big, task=encode(request))
            later = await server.collect(cid, [("Linux.Sys.Users", {"UserRegex": "^root$"})], "t")
            async with running_agent(config):
                done = await server.wait_for_flow(later.flow_id, ["Finished", "Error"], 30)
            assert done.state == "Finished" and done.rows == 1
            failed = server.datastore.collections.get(big.flow_id)
            assert failed.state == "Error" and failed.finished is not None
            assert "not delivered" in failed.error
            assert f"over the {MAX_MESSAGE_BYTES:,}-byte" in failed.error
            assert server.datastore.tasks.pending(cid) == []

    asyncio.run(scenario())
