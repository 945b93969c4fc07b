"""``peregrine clients delete`` against a real server: asks first, says what went, and refuses a
connected client unless --force."""

from __future__ import annotations

import json
import time

import typer
from typer.testing import CliRunner

from peregrine.cli import remote_cmd
from tests.client.conftest import Live

app = typer.Typer()
remote_cmd.register(app)
runner = CliRunner()


def _offline_client(live: Live, client_id: str) -> str:
    live.server.datastore.clients.enroll(client_id, client_id.encode(), time.time())
    live.run(live.server.collect(client_id, [("Test.Numbers", {"N": 1})], "t"))
    return client_id


def test_clients_delete(live: Live) -> None:
    env = {**live.env(), "COLUMNS": "200", "PEREGRINE_DATA_DIR": "/nonexistent"}
    retired = _offline_client(live, "C.00000000c11d0001")
    unconfirmed = runner.invoke(app, ["clients", "delete", retired], env=env)
    assert unconfirmed.exit_code == 1 and "--yes" in unconfirmed.stderr
    assert live.server.datastore.clients.get(retired) is not None

    done = runner.invoke(app, ["clients", "delete", retired, "--yes"], env=env)
    assert done.exit_code == 0, (done.stdout, done.stderr)
    assert f"deleted {retired}: 1 collections" in done.stdout
    assert live.server.datastore.clients.get(retired) is None

    other = _offline_client(live, "C.00000000c11d0002")
    as_json = runner.invoke(app, ["clients", "delete", other, "-y", "--json"], env=env)
    assert json.loads(as_json.stdout) == {
        "client_id": other,
        "flows": 1,
        "bytes_freed": 0,
        "was_connected": False,
    }

    connected = runner.invoke(app, ["clients", "delete", live.client_id, "--yes"], env=env)
    assert connected.exit_code == 1 and connected.stderr.startswith("Error: ")
    assert "force" in connected.stderr
    assert live.server.datastore.clients.get(live.client_id) is not None
