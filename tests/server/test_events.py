"""Event monitoring from agent to server, with a real agent over TLS: assignments reach the
agent, its event queries run continuously, rows arrive in batches, are stored once and
published, and an unassigned artifact's worker stops."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import psutil
import pytest

from peregrine.agent.agent import Agent
from peregrine.config.model import EventSettings
from peregrine.datastore.events import EventStatus
from peregrine.events.stream import EventBatch
from peregrine.server.app import Server
from tests.server.harness import (
    agent_config,
    make_deployment,
    repository_with,
    running_agent,
    running_server_with,
    wait_until,
)

ARTIFACTS = """
name: Test.Events.Clock
description: A row every period.
type: CLIENT_EVENT
parameters:
  - name: period
    type: float
    default: 0.2
sources:
  - query: SELECT tick, time FROM clock(:period)
---
name: Test.Events.Other
description: Another clock, to show one artifact changing leaves the other running.
type: CLIENT_EVENT
sources:
  - query: SELECT tick FROM clock(0.2)
---
name: Test.Events.Hog
description: Takes 400 MB at once, every time (past the memory limit).
type: CLIENT_EVENT
sources:
  - query: SELECT length(randomblob(400000000)) AS size FROM clock(1)
---
name: Test.Events.Short
description: Ends after two rows, so it is restarted.
type: CLIENT_EVENT
sources:
  - query: SELECT tick FROM clock(0.1) LIMIT 2
---
name: Test.Once
description: Not an event artifact.
type: CLIENT
sources:
  - query: SELECT 1 AS one
"""
CLOCK = "Test.Events.Clock"
OTHER = "Test.Events.Other"
ALL = frozenset({"EXECVE", "FILESYSTEM_READ"})


def in_loop(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def event_workers(agent: Agent) -> dict[str, int]:
    """Artifact -> the pid of each running query worker of this agent (children of it)."""
    return {
        name: len(worker._runner._running) if worker._runner is not None else 0
        for name, worker in (agent.events.workers.items() if agent.events else [])
    }


def stored(server: Server, client_id: str, artifact: str) -> list[dict[str, object]]:
    files = server.services.event_monitoring.files
    return list(files.iter_rows(client_id, artifact, 0, time.time() + 86400))


@pytest.mark.timeout(120)
@in_loop
async def test_assigned_event_rows_arrive_and_unassigned_workers_stop(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path)
    async with running_server_with(deployment.server, repository_with(ARTIFACTS)) as server:
        monitoring = server.services.event_monitoring
        published: list[EventBatch] = []

        async def follow(batch: EventBatch) -> None:
            published.append(batch)

        server.event_stream.subscribe("test", follow)
        async with running_agent(agent_config(deployment, tmp_path / "a")) as agent:
            client = agent.client_id
            await monitoring.assign(CLOCK, {"period": 0.1}, [], "alice", ALL)
            started = time.monotonic()
            rows = await wait_until(lambda: len(stored(server, client, CLOCK)) >= 5, 45)
            assert rows
            print(f"5 rows stored {time.monotonic() - started:.1f} s after the assignment")
            # Within seconds: most of it is the worker starting under its 25 % CPU limit
            # (5.6 s at load 6; up to 15 s seen with two cores shared by other test runs).
            assert time.monotonic() - started < 40
            first = stored(server, client, CLOCK)
            seqs = [r["_seq"] for r in first]
            assert seqs == list(range(1, len(seqs) + 1))  # numbered from 1, no gap
            assert [r["tick"] for r in first] == seqs  # one clock: ticks match the numbers
            await wait_until(lambda: published, 5)
            batch = published[0]
            assert (batch.client_id, batch.artifact, batch.first_seq) == (client, CLOCK, 1)
            assert batch.rows[0]["tick"] == 1

            # A second artifact: the first keeps running (its worker is not restarted).
            worker = agent.events.workers[CLOCK]  # type: ignore[union-attr]
            await monitoring.assign(OTHER, {}, [], "alice", ALL)
            await wait_until(lambda: stored(server, client, OTHER), 15)
            assert agent.events.workers[CLOCK] is worker  # type: ignore[union-attr]

            # Status rows say each runs.
            statuses = await wait_until(
                lambda: (
                    {
                        s.artifact: s.state
                        for s in server.datastore.events.statuses(client_id=client)
                        if s.state == "running"
                    }.keys()
                    == {CLOCK, OTHER}
                ),
                10,
            )
            assert statuses

            # Unassign: its worker and query process stop, the other goes on.
            children = {p.pid for p in psutil.Process().children(recursive=True)}
            assert len(children) >= 2
            await monitoring.unassign(CLOCK, "bob")
            await wait_until(lambda: CLOCK not in agent.events.workers, 15)  # type: ignore[union-attr]
            await wait_until(
                lambda: any(
                    s.artifact == CLOCK and s.state == "stopped"
                    for s in server.datastore.events.statuses(client_id=client)
                ),
                10,
            )
            count = len(stored(server, client, CLOCK))
            await asyncio.sleep(1.5)
            assert len(stored(server, client, CLOCK)) == count  # nothing more arrives
            other = len(stored(server, client, OTHER))
            await wait_until(lambda: len(stored(server, client, OTHER)) > other, 10)
            assert sum(event_workers(agent).values()) == 1  # one query worker left


@pytest.mark.timeout(60)
@in_loop
async def test_assignments_are_checked_before_they_are_stored(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path)
    async with running_server_with(deployment.server, repository_with(ARTIFACTS)) as server:
        monitoring = server.services.event_monitoring
        with pytest.raises(ValueError, match="not an event artifact"):
            await monitoring.assign("Test.Once", {}, [], "alice", ALL)
        with pytest.raises(ValueError, match="period"):
            await monitoring.assign(CLOCK, {"period": "often"}, [], "alice", ALL)
        with pytest.raises(ValueError, match="Nope"):
            await monitoring.assign("Nope", {}, [], "alice", ALL)
        assert server.datastore.events.assignments() == (0, [])


@pytest.mark.timeout(90)
@in_loop
async def test_an_agent_gets_its_set_at_login_and_by_its_labels(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path)
    async with running_server_with(deployment.server, repository_with(ARTIFACTS)) as server:
        monitoring = server.services.event_monitoring
        await monitoring.assign(CLOCK, {}, ["watched"], "alice", ALL)  # before it connects
        async with running_agent(agent_config(deployment, tmp_path / "a")) as agent:
            client = agent.client_id
            await asyncio.sleep(1.0)
            assert agent.events is None or not agent.events.workers  # not labelled yet
            await server.label(client, add=["watched"])
            await wait_until(lambda: stored(server, client, CLOCK), 15)
            await server.label(client, remove=["watched"])
            await wait_until(lambda: CLOCK not in agent.events.workers, 15)  # type: ignore[union-attr]
        # The set the agent last had is kept for its next start.
        kept = Path(tmp_path / "a" / "spool" / "event-assignments.msgpack")
        assert kept.exists()
        assert msgspec.msgpack.decode(kept.read_bytes())["artifacts"] == []


@pytest.mark.timeout(120)
@in_loop
async def test_a_worker_over_its_limits_or_ended_is_restarted_with_backoff(tmp_path: Path) -> None:
    """Killed past its memory limit, or ended, an event query is restarted after 1 s, 2 s,
    4 s...: a few restarts in ten seconds, not hundreds, each reported with why. Rows made
    across restarts keep their numbers: no gap, no duplicate."""
    deployment = make_deployment(tmp_path)
    config = msgspec.structs.replace(
        deployment.server, events=EventSettings(max_memory_mb=150, cpu_limit=100)
    )
    async with running_server_with(config, repository_with(ARTIFACTS)) as server:
        monitoring = server.services.event_monitoring
        async with running_agent(agent_config(deployment, tmp_path / "a")) as agent:
            client = agent.client_id
            await monitoring.assign("Test.Events.Hog", {}, [], "alice", ALL)
            await monitoring.assign("Test.Events.Short", {}, [], "alice", ALL)

            def status(artifact: str) -> EventStatus | None:
                found = server.datastore.events.statuses(client_id=client, artifact=artifact)
                return found[0] if found and found[0].restarts >= 3 else None

            started = time.monotonic()
            hog = await wait_until(lambda: status("Test.Events.Hog"), 60)
            short = await wait_until(lambda: status("Test.Events.Short"), 60)
            elapsed = time.monotonic() - started
            assert hog.state in ("restarting", "running")
            assert short.state in ("restarting", "running")
            # Three restarts need at least 1 + 2 s of backoff between them.
            assert elapsed >= 3.0
            await asyncio.sleep(3)
            later = server.datastore.events.statuses(client_id=client, artifact="Test.Events.Short")
            assert later[0].restarts <= 6, "restarted without backing off"
            killed = [
                s.error
                for s in server.datastore.events.statuses(client_id=client)
                if s.artifact == "Test.Events.Hog" and s.error
            ]
            assert killed and "memory" in killed[0].lower(), killed
            seqs = [r["_seq"] for r in stored(server, client, "Test.Events.Short")]
            assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 6
