"""``peregrine server`` as a new user meets it: it says where its API, CA certificate and login
are; the CLI on the same machine then works with no settings; a used port is one line."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from peregrine.auth import Accounts
from peregrine.cli.local_login import LOGIN_FILE
from peregrine.datastore import open_datastore
from tests.server.harness import Process, make_deployment

NO_SETTINGS = ("PEREGRINE_URL", "PEREGRINE_TOKEN", "PEREGRINE_CA_CERT")


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m peregrine ARGS`` with no connection settings, on this data directory."""
    env = {k: v for k, v in os.environ.items() if k not in NO_SETTINGS}
    env |= {"PEREGRINE_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "peregrine", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def wait_for(process: Process, text: str, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while text not in (out := process.output()):
        assert process.proc is not None and process.proc.poll() is None, out
        assert time.monotonic() < deadline, out
        time.sleep(0.2)
    return out


def test_the_server_says_where_it_is_and_the_local_cli_logs_in_by_itself(tmp_path: Path) -> None:
    data = tmp_path / "data"
    deployment = make_deployment(data)  # the server.yaml a first start would make, on free ports
    server = Process(["server", "--data-dir", str(data), "--no-local-agent"], tmp_path / "log")
    server.start()
    try:
        out = wait_for(server, "login (elsewhere)")
        api = f"https://127.0.0.1:{deployment.server.api_port}"
        assert f"{api}/api/v1" in out and f"{api}/api/docs" in out
        assert f"{api}/ui/" in out and "peregrine users passwd admin" in out
        assert str(deployment.server.ca_cert_path) in out
        login = data / LOGIN_FILE
        assert str(login) in out and "peregrine users token NAME" in out
        assert stat.S_IMODE(login.stat().st_mode) == 0o600
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert json.loads(login.read_text())["url"] == api

        done = cli(data, "clients", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["total"] == 0
    finally:
        server.stop()
    with open_datastore(deployment.server.datastore_url) as store:
        assert "administrator" in Accounts(store).require_user("admin").roles
        actions = [e.action for e in store.audit.query(limit=10)]
    assert "user.create" in actions and "token.create" in actions

    # The next start keeps the login it made: the same token, no new one.
    before = login.read_text()
    server.start()
    try:
        wait_for(server, "login (elsewhere)")
    finally:
        server.stop()
    assert login.read_text() == before


def test_without_a_local_login_the_cli_says_where_to_get_one(tmp_path: Path) -> None:
    done = cli(tmp_path, "clients")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "PEREGRINE_URL" in done.stderr and str(tmp_path / LOGIN_FILE) in done.stderr


def _second_server(tmp_path: Path, taken: str) -> tuple[subprocess.CompletedProcess[str], int]:
    deployment = make_deployment(tmp_path / "deploy")
    port = deployment.server.port if taken == "agent" else deployment.server.api_port
    with socket.socket() as holder:  # the first server
        holder.bind(("127.0.0.1", port))
        holder.listen()
        done = cli(
            tmp_path,
            "server", "--config", str(deployment.server_config_path), "--no-local-agent",
        )  # fmt: skip
    return done, port


def test_a_used_agent_port_is_one_line_saying_which_and_what_to_do(tmp_path: Path) -> None:
    done, port = _second_server(tmp_path, "agent")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(done.stderr.splitlines()) <= 2 and len(errors) == 1, done.stderr
    assert f"agent port 127.0.0.1:{port} is already in use" in errors[0]
    assert "set another port in" in errors[0]


def test_a_used_api_port_is_one_line_too(tmp_path: Path) -> None:
    done, port = _second_server(tmp_path, "API")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"API port 127.0.0.1:{port} is already in use" in done.stderr
    assert "api_port" in done.stderr
