"""``scripts/cluster up / status / down`` as a user runs it: real processes, then none."""

from __future__ import annotations

import json
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.cluster.conftest import postgres_server_url
from tests.cluster.services import program

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cluster"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=200, check=False
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_up_status_and_down(tmp_path: Path) -> None:
    program("haproxy")
    program("redis-server")
    directory = tmp_path / "dev"
    up = _run("--dir", str(directory), "up", "2", "--postgres-url", postgres_server_url())
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "2 frontends behind HAProxy" in up.stdout
        assert f"source {directory}/env" in up.stdout
        state = json.loads((directory / "cluster.json").read_text())
        assert state["api_url"] in up.stdout

        status = _run("--dir", str(directory), "status", "--json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert [f["ready"] for f in report["frontends"].values()] == [True, True]
        assert set(report["haproxy"]["pool"].values()) == {"UP"}
        assert report["redis"]["running"]
        # The balancer answers the API with the deployment's certificate.
        tls = ssl.create_default_context(cafile=state["ca_cert"])
        answer = httpx.get(f"{state['api_url']}/readyz", verify=tls, timeout=10)
        assert answer.status_code == 200

        again = _run("--dir", str(directory), "up", "1")
        assert again.returncode == 1
        assert "cluster down" in again.stderr
    finally:
        down = _run("--dir", str(directory), "down")
    assert down.returncode == 0, down.stderr
    assert not directory.exists()
    pids = [f["pid"] for f in state["frontends"]]
    pids += [state["redis_pid"], state["haproxy_pid"]]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _stat(pid), pid
    assert "no cluster" in _run("--dir", str(directory), "status").stderr


def _stat(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"
