"""Collections on a real agent, connected over TLS to a real server: what its query workers may
import, and how a cancel stops them (issue 11, items 1 and 11)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import msgspec
import psutil
import pytest

from peregrine.api.routes.collections import flow_out
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.datastore import Datastore, FlowRecord
from peregrine.services.collections import Limits
from tests.engine.test_worker_isolation import markers, plant
from tests.server.harness import (
    agent_config,
    make_deployment,
    query_workers,
    repository_with,
    running_agent,
    running_server_with,
    start_flow,
    wait_until,
)

#: Queries that give no row for hours: a GROUP BY over a program that sleeps (the program is
#: polled, so the cancel token can reach it) and a regular expression backtracking in C, which
#: holds the worker's only thread where no cancel token is ever looked at.
ARTIFACTS = """
name: Test.GroupedSleep
description: Counts the lines of a program, grouped; the program sleeps first.
type: CLIENT
parameters:
  - name: Argv
sources:
  - query: |
      SELECT line, count(*) AS n FROM execve_lines(:Argv, NULL, 3600) GROUP BY line
---
name: Test.Backtracking
description: A regular expression that backtracks for hours.
type: CLIENT
parameters:
  - name: Text
sources:
  - query: SELECT count(*) AS n FROM (SELECT 1) WHERE regexp('^(a+)+$', :Text)
---
name: Test.Noisy
description: 150 warnings (read_file() of a directory warns), then two uploads.
type: CLIENT
parameters:
  - name: Dir
  - name: First
  - name: Second
sources:
  - name: warnings
    query: |
      WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 150)
      SELECT count(*) AS n FROM c JOIN read_file(:Dir || substr(x, 1, 0))
  - name: uploads
    query: SELECT upload(:First) AS first, upload(:Second) AS second
"""

FINAL = ("Finished", "Error", "Cancelled")


@pytest.fixture(scope="module")
def repository() -> ArtifactRepository:
    return repository_with(ARTIFACTS)


def flow_of(datastore: Datastore, flow_id: str) -> FlowRecord:
    record = datastore.collections.get(flow_id)
    assert record is not None
    return record


async def interrogated(datastore: Datastore, client_id: str) -> list[FlowRecord]:
    """Enrollment's interrogation (Generic.Client.Info), once it is over."""

    def done() -> list[FlowRecord] | None:
        flows = datastore.collections.list_for_client(client_id)
        return flows if flows and all(f.state in FINAL for f in flows) else None

    flows: list[FlowRecord] = await wait_until(done, 60)
    return flows


@pytest.mark.timeout(120)
def test_an_agent_started_in_a_planted_directory_runs_nothing_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Modules planted where the agent was started are not imported by its query workers:
    enrollment's interrogation (every plugin module loads, yara_scan imports yara) finishes,
    and no marker is written."""
    deployment = make_deployment(tmp_path / "deploy")
    planted = plant(tmp_path / "planted")
    monkeypatch.chdir(planted)

    async def scenario() -> None:
        async with running_server_with(deployment.server) as server:
            async with running_agent(agent_config(deployment, tmp_path / "host")) as agent:
                [flow] = await interrogated(server.datastore, agent.client_id)
                assert flow.state == "Finished", flow.error
                assert flow.rows > 0

    asyncio.run(scenario())
    assert markers(planted) == []


@pytest.mark.timeout(120)
def test_a_cancel_kills_a_query_stuck_before_its_first_row(
    tmp_path: Path, repository: ArtifactRepository
) -> None:
    """The flow is Cancelled at once and, within two seconds, the worker (and the program it
    ran) is gone and the agent's job has ended; whether the query was waiting on a program under
    a GROUP BY or stuck in C code that never looks at the cancel token."""
    deployment = make_deployment(tmp_path / "deploy")
    tag = f"{random.randint(100, 999)}.{random.randint(10000, 99999)}"
    sleeping = {"Argv": json.dumps(["sh", "-c", f"exec sleep {tag}"])}
    backtracking = {"Text": "a" * 40 + "!"}

    async def scenario() -> None:
        async with running_server_with(deployment.server, repository) as server:
            async with running_agent(agent_config(deployment, tmp_path / "host")) as agent:
                await interrogated(server.datastore, agent.client_id)
                await wait_until(lambda: not agent.jobs and not query_workers(agent), 10)
                for artifact, parameters in (
                    ("Test.GroupedSleep", sleeping),
                    ("Test.Backtracking", backtracking),
                ):
                    flow = await start_flow(server, agent.client_id, [(artifact, parameters)])
                    await server.wait_for_flow(flow.flow_id, ["In progress"], timeout=20)
                    [worker] = await wait_until(lambda: query_workers(agent), 20)
                    stuck = list(worker.children(recursive=True))
                    await asyncio.sleep(1.0)  # stuck, with no row yet
                    assert worker.is_running()
                    assert flow_of(server.datastore, flow.flow_id).rows == 0
                    started = time.monotonic()
                    assert await server.collections.cancel(flow.flow_id)
                    _, alive = await asyncio.to_thread(psutil.wait_procs, [worker, *stuck], 5)
                    assert not alive, (artifact, alive)
                    await wait_until(lambda f=flow: f.flow_id not in agent.jobs, 5, 0.05)
                    assert time.monotonic() - started < 2.0, artifact
                    final = flow_of(server.datastore, flow.flow_id)
                    assert final.state == "Cancelled" and final.rows == 0
                await wait_until(lambda: agent.spool.size == 0, 10)

    asyncio.run(scenario())


@pytest.mark.timeout(120)
def test_warnings_and_skipped_uploads_show_in_the_collection_status(
    tmp_path: Path, repository: ArtifactRepository
) -> None:
    """A collection that Finished but left things out says so: its warnings are counted in the
    flow (those the agent did not log too), per source and in the API's view; an upload left
    out for the collection's max_upload_bytes counts as a skipped upload, and one refused by
    the server's own limit as a warning of the flow. The log holds a source's first 100
    warnings and how many more there were."""
    deployment = make_deployment(tmp_path / "deploy")
    config = msgspec.structs.replace(
        deployment.server,
        limits=msgspec.structs.replace(deployment.server.limits, max_upload_bytes=1500),
    )
    first, second, large = tmp_path / "first.bin", tmp_path / "second.bin", tmp_path / "large"
    first.write_bytes(b"1" * 600)
    second.write_bytes(b"2" * 600)
    large.write_bytes(b"3" * 2000)
    noisy = {"Dir": str(tmp_path), "First": str(first), "Second": str(second)}

    async def scenario() -> None:
        async with running_server_with(config, repository) as server:
            async with running_agent(agent_config(deployment, tmp_path / "host")) as agent:
                await interrogated(server.datastore, agent.client_id)
                flow = await start_flow(
                    server,
                    agent.client_id,
                    [("Test.Noisy", noisy)],
                    limits=Limits(max_upload_bytes=1000),
                )
                final = await server.wait_for_flow(flow.flow_id, FINAL, timeout=60)
                assert final.state == "Finished", final.error
                assert final.uploads == 1
                assert final.warnings == 151
                assert flow_out(final).warnings == 151
                warned, uploaded = (
                    final.sources["Test.Noisy/warnings"],
                    final.sources["Test.Noisy/uploads"],
                )
                assert (warned["warnings"], warned["uploads_skipped"]) == (150, 0)
                assert (uploaded["warnings"], uploaded["uploads_skipped"]) == (1, 1)
                logs = server.filestore.read_logs(agent.client_id, flow.flow_id, 0, 1000)
                messages = [e["message"] for e in logs if e["level"] == "warning"]
                assert len(messages) == 102
                assert all("is a dir, not a file" in m for m in messages[:100])
                assert messages[100] == (
                    "Test.Noisy/warnings: 50 more warnings were not logged "
                    "(a source logs its first 100)"
                )
                assert "would pass the upload limit of 1000 bytes" in messages[101]

                # No limit of its own: the agent sends what the server's limit refuses.
                refused = await start_flow(
                    server,
                    agent.client_id,
                    [("Test.Noisy", {**noisy, "Second": str(large)})],
                )
                final = await server.wait_for_flow(refused.flow_id, FINAL, timeout=60)
                assert final.state == "Finished", final.error
                assert final.uploads == 1
                assert final.warnings == 150 + 1

    asyncio.run(scenario())
