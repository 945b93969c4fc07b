"""A small collection on a real agent over TLS reaches the server whole: its start, rows, source
status and end in one frame, stored as one run and acknowledged once (issue 17), so its end
never waits at the server behind its own rows; the agent's spool stores it in two commits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from peregrine.agent.agent import Agent
from peregrine.protocol.messages import FlowMessage
from tests.agent.test_spare_workers import finished, interrogated_agent
from tests.server.harness import start_flow, wait_until


async def warm_spares(agent: Agent) -> None:
    """Until the agent's spares have warmed up (they wait on their input, using no CPU), so the
    collection's query runs in milliseconds, well within the start's hold."""

    def idle() -> bool:
        pids = agent.spare_pids()
        if len(pids) < agent.config.spare_workers:
            return False
        before = [psutil.Process(pid).cpu_times() for pid in pids]
        time.sleep(0.3)
        return before == [psutil.Process(pid).cpu_times() for pid in pids]

    await wait_until(lambda: idle() or None, 60)


@pytest.mark.timeout(120)
def test_a_collection_ending_within_the_start_hold_is_stored_as_one_run(tmp_path: Path) -> None:
    runs: list[list[str]] = []
    commits: list[int] = []  # the agent's spool commits after the start, messages in each

    async def scenario() -> None:
        async with interrogated_agent(tmp_path) as (server, agent):
            store = server.ingestor.flow_messages

            async def recording(client_id: str, messages: list[FlowMessage]) -> Any:
                runs.append([f"{type(m).__name__} {m.flow_id}" for m in messages])
                return await store(client_id, messages)

            server.ingestor.flow_messages = recording  # type: ignore[method-assign]
            append_all = agent.spool.append_all

            def counting(flow_id: str, factories: list[Any], **options: Any) -> list[int]:
                commits.append(len(factories))
                return append_all(flow_id, factories, **options)

            agent.spool.append_all = counting  # type: ignore[method-assign]
            await warm_spares(agent)
            runs.clear()
            commits.clear()
            flow = await start_flow(server, agent.client_id, [("Generic.System.Pslist", {})])
            assert await finished(server.datastore, flow.flow_id) == "Finished"
            await asyncio.sleep(0.2)  # anything sent after the end would be stored by now
            runs[:] = [[m.split()[0] for m in run if m.endswith(flow.flow_id)] for run in runs]

    asyncio.run(scenario())
    assert [run for run in runs if run] == [
        ["FlowStarted", "ResultBatch", "SourceFinished", "FlowFinished"]
    ]
    assert commits == [3]  # rows, status and end in one fsync (the start went with the flow)
