"""The ``analysis:`` configuration section sets the engine's limits, and a collection's result
sets get their Parquet copies when it finishes, through a real agent and server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from peregrine.analysis import AnalysisLimits
from peregrine.analysis.columnar import current_copy, finished_result_sets
from peregrine.config import ConfigError
from peregrine.config.model import AnalysisSettings, ServerConfig, parse_config
from peregrine.filestore import Filestore
from peregrine.filestore.names import result_set_name
from peregrine.filestore.rowlog import read_json
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
description: N deterministic rows.
parameters:
  - {name: N, type: int, default: 10, description: How many rows.}
sources:
  - query: |
      WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :N)
      SELECT n, printf('row %05d', n) AS label FROM c
"""


def test_the_analysis_section_sets_every_limit() -> None:
    settings = AnalysisSettings(timeout=5, memory_mb=256, max_rows=10, threads=1, concurrent=3)
    limits = AnalysisLimits.from_settings(settings)
    assert (limits.timeout, limits.memory_mb, limits.max_rows, limits.threads) == (5, 256, 10, 1)
    assert limits.concurrent == 3


def test_a_misspelt_analysis_setting_is_refused(tmp_path: Path) -> None:
    data = msgspec.to_builtins(make_deployment(tmp_path).server)
    data["analysis"] = {"max_row": 5}
    with pytest.raises(ConfigError, match="max_row"):
        parse_config(ServerConfig, data, "server.yaml")


def test_a_finished_collection_gets_its_parquet_copy_and_the_configured_row_limit(
    tmp_path: Path,
) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    config = msgspec.structs.replace(
        deployment.server, analysis=AnalysisSettings(max_rows=7, timeout=30)
    )

    async def scenario() -> None:
        async with running_server_with(config, repository_with(NUMBERS)) as server:
            async with running_agent(agent_config(deployment, tmp_path / "h")) as agent:
                flow = await server.collect(agent.client_id, [("Test.Numbers", {"N": 500})], "t")
                done = await server.wait_for_flow(flow.flow_id, ["Finished", "Error"], 60)
                assert done.state == "Finished", done.error
                engine = server.services.analysis
                stem = (
                    server.filestore.flow_dir(agent.client_id, flow.flow_id)
                    / "results"
                    / result_set_name("Test.Numbers", "")
                )
                meta = read_json(stem.with_name(stem.name + ".meta"))
                assert meta is not None
                # Made at the flow's end: no query has read this result set yet. In the
                # background: the copy is scheduled after the flow's end is stored, which is
                # when wait_for_flow returns (it failed 1 run in 13 waiting on the copies'
                # queue alone, before anything was in it).
                await wait_until(lambda: current_copy(stem, int(meta["length"])), 30)
                permissions = frozenset({"ANALYZE", "READ_RESULTS"})
                sql = f"SELECT n FROM flow('{flow.flow_id}', 'Test.Numbers') ORDER BY n"
                with engine.run(sql, permissions) as result:
                    rows = [r for batch in result for r in batch.to_pylist()]
                    assert result.truncated
                assert rows == [{"n": n} for n in range(1, 8)]

    asyncio.run(scenario())


def test_only_result_sets_of_enough_rows_are_copied_when_their_flow_finishes(
    tmp_path: Path,
) -> None:
    """A hunt's one-row answers are left to the first query; a real result set is copied."""
    store = Filestore(tmp_path / "fs", min_free_bytes=0)
    client, flow = "C.0123456789abcdef", "F.0123456789ABCDEF"
    store.append_rows(client, flow, "Small", "", 1, ["n"], [[n] for n in range(99)])
    store.append_rows(client, flow, "Big", "", 1, ["n"], [[n] for n in range(100)])
    flow_dir = store.flow_dir(client, flow)
    results = flow_dir / "results"
    assert finished_result_sets(flow_dir, 100) == [results / result_set_name("Big", "")]
    assert sorted(finished_result_sets(flow_dir)) == sorted(
        results / result_set_name(name, "") for name in ("Big", "Small")
    )
    assert AnalysisSettings().parquet_on_finish_rows == 100
