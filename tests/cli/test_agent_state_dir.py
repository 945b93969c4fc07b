"""``peregrine agent --state-dir DIR``: the identity and spool live in DIR whatever the client
configuration says, so a package keeps the configuration read-only in /etc."""

from __future__ import annotations

import time
from pathlib import Path

from peregrine.config import write_client_config
from tests.server.harness import Process, make_deployment


def test_the_identity_and_spool_go_to_the_state_dir(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    etc = tmp_path / "etc"
    etc.mkdir()
    write_client_config(deployment.client, etc / "client.yaml")
    state = tmp_path / "state"
    agent = Process(
        ["agent", "--config", str(etc / "client.yaml"), "--state-dir", str(state)],
        tmp_path / "agent.log",
    )
    agent.start()
    try:
        deadline = time.monotonic() + 30
        while not (state / "spool" / "spool.db").exists():
            assert agent.proc is not None and agent.proc.poll() is None, agent.output()
            assert time.monotonic() < deadline, agent.output()
            time.sleep(0.1)
        assert (state / "writeback.yaml").exists()
    finally:
        agent.stop()
    # Nothing beside the configuration (without --state-dir: etc/agent/writeback.yaml...).
    assert sorted(p.name for p in etc.iterdir()) == ["client.yaml"]
