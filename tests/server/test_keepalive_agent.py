"""Dead-peer detection with a real agent: the frontend's keepalive closes the connection of an
agent process that stops answering (SIGSTOP: no pongs, no pings of its own), and the agent
connects again once it runs again."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from peregrine.protocol.keepalive import Keepalive
from peregrine.server.app import Server
from tests.server.harness import agent_config, agent_process, make_deployment, wait_until

INTERVAL, TIMEOUT, TICK = 0.5, 1.0, 0.1


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_stopped_agent_is_closed_by_the_keepalive_and_comes_back(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    config = agent_config(deployment, tmp_path / "agent")
    agent = agent_process(config, tmp_path / "client.yaml", tmp_path / "agent.log")

    async def scenario() -> None:
        server = Server(deployment.server)
        server.connections.keepalive = keepalive = Keepalive(INTERVAL, TIMEOUT, TICK)
        await server.start()
        agent.start()
        assert agent.proc is not None
        try:
            await wait_until(lambda: len(server.connections) == 1, timeout=60)
            first = server.connections.get(server.held_here()[0])
            # A live agent answers the pings it gets (its own come every 30 s): it stays.
            await asyncio.sleep(4 * INTERVAL)
            assert server.connections.get(server.held_here()[0]) is first
            assert keepalive.pings >= 1
            os.killpg(agent.proc.pid, signal.SIGSTOP)
            # Pinged at the second visit after it fell silent at the latest, closed TIMEOUT
            # later (websockets then waits close_timeout, 5 s, for its close frame).
            await wait_until(lambda: len(server.connections) == 0, timeout=30)
            os.killpg(agent.proc.pid, signal.SIGCONT)
            await wait_until(lambda: len(server.connections) == 1, timeout=60)
            assert server.connections.get(server.held_here()[0]) is not first
        finally:
            os.killpg(agent.proc.pid, signal.SIGCONT)
            agent.stop()
            await server.stop()

    asyncio.run(scenario())
