"""``peregrine server --workers N`` starts its frontend processes isolated from the directory it
was started from (issue 11, item 1): ``python -m`` would put that directory first on their
``sys.path``, where a planted ``msgspec.py`` would run inside the server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.engine.test_worker_isolation import markers, plant
from tests.server.harness import make_deployment


def listening(proc: psutil.Process) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN for c in proc.net_connections("tcp"))
    except psutil.Error:
        return False


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_frontend_processes_import_nothing_from_the_starting_directory(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    planted = plant(tmp_path / "planted")
    script = Path(sys.executable).parent / "peregrine"
    args = ["server", "--config", str(deployment.server_config_path), "--workers", "2"]
    log = tmp_path / "log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(script), *args, "--no-local-agent", "--log-level", "WARNING"],
            cwd=planted,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        supervisor = psutil.Process(server.pid)
        deadline = time.monotonic() + 60
        while True:
            frontends = supervisor.children()
            if len(frontends) == 2 and all(listening(p) for p in frontends):
                break
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(30)
    assert markers(planted) == []
