"""An agent asked for a metrics file keeps one current: Prometheus' text format, its rows,
messages, spool, sessions and CPU, readable by node_exporter's textfile collector."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.server.harness import (
    agent_config,
    make_deployment,
    repository_with,
    running_agent,
    running_server_with,
    wait_until,
)

NUMBERS = """\
name: Test.Numbers
description: Deterministic rows.
sources:
  - query: |
      WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 40)
      SELECT n FROM c
"""


def read_metrics(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    return {
        s.name: s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_the_agent_writes_its_metrics_file(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    metrics = tmp_path / "textfile" / "peregrine_agent.prom"
    metrics.parent.mkdir()
    config = agent_config(
        deployment, tmp_path / "agent", metrics_file=str(metrics), metrics_interval=1.0
    )

    async def scenario() -> dict[str, float]:
        repository = repository_with(NUMBERS)
        async with (
            running_server_with(deployment.server, repository) as server,
            running_agent(config) as agent,
        ):
            flow = await server.collect(agent.client_id, [("Test.Numbers", {})], "t")
            done = await server.wait_for_flow(flow.flow_id, ["Finished", "Error"], 60)
            assert done.state == "Finished"
            return await wait_until(
                lambda: (
                    # the 40 rows, and the interrogation's at enrollment
                    (m := read_metrics(metrics)).get("peregrine_agent_rows_collected_total", 0)
                    >= 40
                    and m
                ),
                15,
            )

    found = asyncio.run(scenario())
    assert found["peregrine_agent_connected"] == 1
    assert found["peregrine_agent_sessions_total"] >= 1
    assert found["peregrine_agent_messages_sent_total"] >= 3  # started, rows, source, finished
    assert found["peregrine_agent_cpu_seconds_total"] > 0
    assert "peregrine_agent_spool_bytes" in found
    assert found["peregrine_agent_query_worker_kills_total"] == 0
    assert stat.S_IMODE(metrics.stat().st_mode) == 0o644
    assert not list(metrics.parent.glob(".*.tmp"))  # written by rename, nothing left behind
