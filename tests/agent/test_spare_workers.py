"""The agent's warm query workers (issue 17), with a real server and agent over TLS: a
collection takes the spare and a new one replaces it, and no spare outlives the agent, whether
it stops or is killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from peregrine.agent.agent import Agent
from peregrine.datastore import Datastore
from peregrine.server.app import Server
from tests.agent.test_collection import interrogated
from tests.server.harness import (
    agent_config,
    agent_process,
    make_deployment,
    running_agent,
    running_server_with,
    start_flow,
    wait_until,
)

FINAL = ("Finished", "Error", "Cancelled")


def gone(pid: int) -> bool:
    """Not running, and not left a zombie: reaped."""
    return not psutil.pid_exists(pid)


async def finished(datastore: Datastore, flow_id: str) -> str:
    def state() -> str | None:
        record = datastore.collections.get(flow_id)
        return record.state if record is not None and record.state in FINAL else None

    result: str = await wait_until(state, 60)
    return result


@contextlib.asynccontextmanager
async def interrogated_agent(
    tmp_path: Path, **config: object
) -> AsyncIterator[tuple[Server, Agent]]:
    """A server and an in-process agent configured with ``config``, once it is interrogated."""
    deployment = make_deployment(tmp_path / "deploy")
    async with running_server_with(deployment.server) as server:
        async with running_agent(agent_config(deployment, tmp_path / "host", **config)) as agent:
            [flow] = await interrogated(server.datastore, agent.client_id)
            assert flow.state == "Finished", flow.error
            yield server, agent


@pytest.mark.timeout(120)
def test_a_collection_takes_the_spare_and_the_stopped_agent_leaves_none(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with interrogated_agent(tmp_path, spare_worker_idle=0.0) as (server, agent):
            await wait_until(lambda: len(agent.spare_pids()) == 2, 20)
            before = set(agent.spare_pids())
            flow = await start_flow(server, agent.client_id, [("Generic.System.Pslist", {})])
            assert await finished(server.datastore, flow.flow_id) == "Finished"
            # One spare ran the query (they never expire here), and ended with it; the agent
            # has two spares again.
            [used] = await wait_until(lambda: [p for p in before if gone(p)], 10)
            await wait_until(lambda: len(agent.spare_pids()) == 2, 20)
            after = set(agent.spare_pids())
            assert used not in after and len(after - before) == 1
        assert all(gone(pid) for pid in after)

    asyncio.run(scenario())


@pytest.mark.timeout(120)
def test_an_agent_configured_without_spares_keeps_none(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with interrogated_agent(tmp_path, spare_workers=0) as (_, agent):
            assert agent.spare_pids() == []
            assert not [
                p
                for p in psutil.Process().children(recursive=True)
                if "peregrine.engine.worker" in " ".join(p.cmdline())
            ]

    asyncio.run(scenario())


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_spare_of_an_agent_killed_with_sigkill_exits(tmp_path: Path) -> None:
    """kill -9 of the agent process alone (not its process group): its spares, waiting for a
    request, read the end of their input and exit."""
    deployment = make_deployment(tmp_path / "deploy")
    config = agent_config(deployment, tmp_path / "host")
    agent = agent_process(config, tmp_path / "client.yaml", tmp_path / "agent.log")

    def spares() -> list[psutil.Process]:
        assert agent.proc is not None
        return [
            p
            for p in psutil.Process(agent.proc.pid).children()
            if "peregrine.engine.worker" in " ".join(p.cmdline())
        ]

    async def scenario() -> None:
        async with running_server_with(deployment.server) as server:
            agent.start()
            try:
                client_id = await wait_until(
                    lambda: [c.client_id for c in server.datastore.clients.list()], 60
                )
                await interrogated(server.datastore, client_id[0])
                waiting = await wait_until(lambda: len(spares()) == 2 and spares(), 30)
                await asyncio.sleep(1.0)  # spares that have warmed up and wait
                assert agent.proc is not None
                os.kill(agent.proc.pid, signal.SIGKILL)
                agent.proc.wait()
                _, alive = await asyncio.to_thread(psutil.wait_procs, waiting, 30)
                assert not alive
            finally:
                agent.stop()

    asyncio.run(scenario())
