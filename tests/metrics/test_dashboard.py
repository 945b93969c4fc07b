"""The Grafana dashboard in the repository draws only metrics that exist: every series its
queries name is exported by a frontend's ``/metrics`` or by the agent's metrics file."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from peregrine.agent.agent import Agent
from peregrine.agent.metrics_file import render
from peregrine.datastore import open_datastore
from peregrine.metrics.exposition import MetricsPage
from peregrine.metrics.state import FleetStateCollector
from tests.server.harness import agent_config, make_deployment

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "peregrine.json"


def series_names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_every_metric_the_dashboard_uses_is_exported(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bperegrine_[a-z_]+\b", target["expr"])
    }
    assert len(used) >= 20
    # A frontend imports its buses, which label their latency series.
    for module in ("peregrine.server.bus", "peregrine.server.bus_redis"):
        importlib.import_module(module)
    with open_datastore("sqlite://") as datastore:
        server = series_names(
            MetricsPage(FleetStateCollector(datastore.counts.fleet)).render().decode()
        )
    agent = Agent(agent_config(make_deployment(tmp_path / "deploy"), tmp_path / "agent"))
    try:
        exported = server | series_names(render(agent))
    finally:
        agent.close()
    assert used - exported == set()
    # Each panel has a title and reads Prometheus through the dashboard's data source choice.
    for panel in dashboard["panels"]:
        assert panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
