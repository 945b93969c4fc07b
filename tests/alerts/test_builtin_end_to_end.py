"""A built-in rule on a real endpoint: the agent runs the library's process-execution event
artifact, a program started from /tmp raises Linux.ProcessFromTmp once, with its path and
command line, and the alert reaches a webhook receiver run by the test."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from peregrine.artifacts.loader import builtin_files
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.config.model import AlertSettings, WebhookSettings
from tests.server.harness import (
    agent_config,
    make_deployment,
    running_agent,
    running_server_with,
    wait_until,
)

from .conftest import Received

ALL = frozenset({"EXECVE", "FILESYSTEM_READ"})


@pytest.mark.timeout(120)
def test_a_program_started_from_tmp_raises_the_built_in_alert_once(
    tmp_path: Path, webhook: tuple[str, Received]
) -> None:
    hook_url, received = webhook
    assert str(tmp_path).startswith("/tmp/"), "the program must start from /tmp"
    program = tmp_path / "dropper"
    shutil.copy("/bin/sleep", program)
    deployment = make_deployment(tmp_path / "deploy")
    config = msgspec.structs.replace(
        deployment.server, alerts=AlertSettings(webhook=WebhookSettings(url=hook_url))
    )
    repository = ArtifactRepository()
    repository.load_texts(builtin_files())

    def ours() -> list[dict[str, object]]:
        """Alerts about our program (other programs may start from /tmp meanwhile)."""
        return [b for b in received.bodies if b["rows"][0].get("exe") == str(program)]

    async def run() -> None:
        async with running_server_with(config, repository) as server:
            async with running_agent(agent_config(deployment, tmp_path / "agent")) as agent:
                await server.services.event_monitoring.assign(
                    "Linux.Events.ProcessExecutions",
                    {"Mode": "poll", "PollPeriod": 0.2},
                    [], "admin", ALL,
                )  # fmt: skip
                files = server.services.event_monitoring.files

                async def watching() -> bool:
                    """Rows of a program started from elsewhere (a quiet machine may start none
                    by itself) show the agent's look at /proc is running."""
                    await asyncio.to_thread(subprocess.run, ["sleep", "0.5"], check=False)
                    return bool(list(files.iter_rows(
                        agent.client_id, "Linux.Events.ProcessExecutions", 0, time.time() + 60
                    )))  # fmt: skip

                await wait_until(watching, 60)
                started = time.time()
                process = await asyncio.to_thread(subprocess.Popen, [str(program), "30"])
                try:
                    await wait_until(ours, 30)
                finally:
                    process.kill()
                    await asyncio.to_thread(process.wait)
                delay = time.time() - started
                body = ours()[0]
                assert (body["rule_id"], body["severity"]) == ("Linux.ProcessFromTmp", "high")
                row = body["rows"][0]
                assert row["pid"] == process.pid
                assert str(row["cmdline"]).endswith("dropper 30")
                assert str(program) in str(body["summary"])
                await asyncio.sleep(1.0)  # later looks at /proc see it again: no new alert
                alerts = server.datastore.alerts.query(rule_id="Linux.ProcessFromTmp")
                assert len([a for a in alerts if a.rows[0]["exe"] == str(program)]) == 1
                assert len(ours()) == 1
                assert delay < 10, f"{delay:.1f} s from the program's start to the webhook"

    asyncio.run(run())
