"""``peregrine server`` with its local agent (the README's first command): the agent enrolls,
and SIGTERM stops server and agent cleanly, with one frontend process or several."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from peregrine.datastore import open_datastore
from tests.server.harness import Process, make_deployment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # waits: 60 + 30 + 15 s


@pytest.mark.parametrize("workers", [1, 2])
def test_the_local_agent_enrolls_and_stops_with_the_server(tmp_path: Path, workers: int) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    args = ["server", "--config", str(deployment.server_config_path), "--log-level", "WARNING"]
    server = Process([*args, "--workers", str(workers)] if workers > 1 else args, tmp_path / "log")
    server.start()
    assert server.proc is not None
    try:
        deadline = time.monotonic() + 60
        while True:
            with open_datastore(deployment.server.datastore_url) as datastore:
                if datastore.clients.all_for_index(None, 10):
                    break
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0, server.output()
    finally:
        server.stop()
    assert "Traceback" not in server.output()
