"""From a real agent to a webhook: an event query runs on the agent, its rows cross TLS, are
stored and published, a rule matches one of them, and the alert is stored once and reaches a
webhook receiver run by the test, within seconds of the event."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from peregrine.config.model import AlertSettings, WebhookSettings
from tests.server.harness import (
    agent_config,
    make_deployment,
    repository_with,
    running_agent,
    running_server_with,
    wait_until,
)

from .conftest import Received

ARTIFACTS = """
name: Test.Events.Clock
description: A row every period.
type: CLIENT_EVENT
parameters:
  - {name: period, type: float, default: 0.1}
sources:
  - query: SELECT tick, time FROM clock(:period)
"""
ALL = frozenset({"EXECVE", "FILESYSTEM_READ"})


@pytest.mark.timeout(120)
def test_an_agents_event_raises_one_alert_that_reaches_the_webhook(
    tmp_path: Path, webhook: tuple[str, Received]
) -> None:
    hook_url, received = webhook
    deployment = make_deployment(tmp_path)
    settings = AlertSettings(webhook=WebhookSettings(url=hook_url), builtin_rules=False)
    config = msgspec.structs.replace(deployment.server, alerts=settings)

    async def run() -> None:
        async with running_server_with(config, repository_with(ARTIFACTS)) as server:
            server.services.alerting.rules.save(
                {
                    "rule_id": "Test.ThirdTick",
                    "artifacts": ["Test.Events.Clock"],
                    "condition": "tick = 3",
                    "severity": "low",
                    "summary_columns": ["tick"],
                },
                "admin",
            )
            await server.services.alerting.rules_changed()
            async with running_agent(agent_config(deployment, tmp_path / "a")) as agent:
                await server.services.event_monitoring.assign(
                    "Test.Events.Clock", {"period": 0.1}, [], "admin", ALL
                )
                await wait_until(lambda: received.bodies, 30)
                body = received.bodies[0]
                assert (body["rule_id"], body["client_id"]) == ("Test.ThirdTick", agent.client_id)
                assert body["rows"][0]["tick"] == 3
                delay = time.time() - body["rows"][0]["time"]
                assert delay < 10, f"the alert came {delay:.1f} s after its event"
                # More ticks arrive (4, 5, ...); none of them is the third again.
                await asyncio.sleep(1.0)
                alerts = server.datastore.alerts.query(rule_id="Test.ThirdTick")
                assert [a.event_seq for a in alerts] == [3]
                assert len(received.bodies) == 1

    asyncio.run(run())
