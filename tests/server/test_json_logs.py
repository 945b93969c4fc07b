"""``--log-format json``: a server and an agent log JSON lines, and a collection's lines carry
its flow id and its client id on both sides (the ids come from context variables set in the
session, the services and the agent's collection thread)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.server.harness import (
    agent_config,
    agent_process,
    api_client,
    first_client,
    make_deployment,
    served,
)

pytestmark = pytest.mark.timeout(120)


def json_lines(path: Path) -> list[dict[str, object]]:
    """The log's lines (the commands' own start-up messages to people are not log lines)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def test_a_collection_logs_json_lines_with_its_flow_and_client(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    agent = agent_process(
        agent_config(deployment, tmp_path / "agent"), tmp_path / "client.yaml", tmp_path / "a.log"
    )
    agent.args += ["--log-format", "json"]
    with served(deployment, tmp_path / "server.log", "--log-format", "json") as (_, token):
        agent.start()
        try:
            with api_client(deployment, token) as api:
                client_id = first_client(api, agent)
                flow = api.post(
                    "/collections",
                    json={"client_id": client_id, "artifacts": [{"name": "Generic.Client.Info"}]},
                ).json()
                flow_id = flow["flow_id"]
                deadline = time.monotonic() + 120
                while api.get(f"/collections/{flow_id}").json()["state"] != "Finished":
                    assert time.monotonic() < deadline, agent.output()
                    time.sleep(0.2)
        finally:
            agent.stop()

    server_lines = json_lines(tmp_path / "server.log")
    agent_lines = json_lines(tmp_path / "a.log")
    for line in server_lines + agent_lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
        assert str(line["time"]).endswith("Z")
    about_flow = [line for line in server_lines if line.get("flow_id") == flow_id]
    messages = [str(line["message"]) for line in about_flow]
    assert any("scheduled" in m for m in messages), server_lines
    assert any("ended: Finished" in m for m in messages), server_lines
    assert all(line["client_id"] == client_id for line in about_flow)
    # The agent: its client id on every line once it has one, the flow id on the collection's.
    named = [line for line in agent_lines if "new agent identity" not in str(line["message"])]
    assert named and all(line["client_id"] == client_id for line in named)
    agent_flow = [str(line["message"]) for line in agent_lines if line.get("flow_id") == flow_id]
    assert any("started" in m for m in agent_flow) and any("ended" in m for m in agent_flow)
