"""``peregrine loadtest`` and the multi-process runner, against a real in-process server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from peregrine.cli.loadtest_cmd import loadtest
from peregrine.config import write_client_config
from peregrine.loadtest.runner import LoadTestOptions, auto_source_addresses, run_loadtest
from tests.server.harness import make_deployment, running_server, wait_until


def cli_app() -> typer.Typer:
    app = typer.Typer()
    app.command("loadtest")(loadtest)

    @app.command("version")
    def version() -> None:  # a second command, so "loadtest" is a sub-command as in peregrine
        pass

    return app


def test_the_command_runs_for_its_duration_and_reports_json(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    config = tmp_path / "client.yaml"
    write_client_config(deployment.client, config)
    args = [
        "loadtest", "--clients", "20", "--config", str(config), "--duration", "5",
        "--rows", "7", "--os-mix", "linux=1,windows=1", "--json",
    ]  # fmt: skip

    async def scenario() -> None:
        async with running_server(deployment) as server:
            result = await asyncio.to_thread(CliRunner().invoke, cli_app(), args)
            assert result.exit_code == 0, result.output
            summary = json.loads(result.stdout)
            assert summary["clients"] == 20
            assert summary["connected"] == 20 and summary["ever_connected"] == 20
            assert summary["enrolled"] == 20 and summary["errors"] == 0
            assert summary["connect_ms_p50"] is not None
            assert 0 < summary["connect_seconds"] < 5 and summary["connect_per_second"] > 0
            assert summary["flows_answered"] == 20  # the interrogations
            assert 5 <= summary["elapsed_seconds"] < 20
            clients = server.datastore.clients
            await wait_until(lambda: all(r.interrogated for r in clients.list(100)), 30)
            records = clients.list(100)
            assert len(records) == 20
            assert {r.os for r in records} == {"linux", "windows"}
        assert (tmp_path / "loadtest-keys" / "keys.msgpack").exists()

    asyncio.run(scenario())


def test_the_command_refuses_a_frontend_not_in_the_config(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    config = tmp_path / "client.yaml"
    write_client_config(deployment.client, config)
    result = CliRunner().invoke(
        cli_app(),
        ["loadtest", "-n", "5", "-c", str(config), "--server", "wss://192.0.2.1:443/agent"],
    )
    assert result.exit_code == 2
    assert "not a frontend of this deployment" in result.output


def test_processes_share_the_fleet_and_their_views_are_merged(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    options = LoadTestOptions(
        clients=30, key_dir=tmp_path / "keys", processes=3, rows=4, duration=6.0, ramp=0.0,
        source_addresses=["127.0.0.2", "127.0.0.3"],
    )  # fmt: skip
    seen: list[int] = []

    async def scenario() -> None:
        async with running_server(deployment) as server:
            stats = await asyncio.to_thread(
                run_loadtest, deployment.client, options, lambda s: seen.append(s.connected)
            )
            assert stats.clients == 30
            assert stats.connected == 30 and stats.ever_connected == 30
            assert stats.enrolled == 30 and stats.keys_generated == 30
            assert len(stats.connect_latencies) == 30
            assert stats.flows_answered == 30
            # Each slice is its own clients: 30 distinct hosts, from both source addresses.
            clients = server.datastore.clients
            await wait_until(lambda: all(r.interrogated for r in clients.list(100)), 30)
            records = clients.list(100)
            assert sorted(r.hostname or "" for r in records) == [f"sim-{i:05d}" for i in range(30)]
            assert {r.last_address for r in records} == {"127.0.0.2", "127.0.0.3"}
        assert seen and max(seen) == 30

    asyncio.run(scenario())


def test_source_addresses_are_only_chosen_for_a_local_server() -> None:
    assert auto_source_addresses(["wss://127.0.0.1:8000/agent"], 10_000) == []
    assert auto_source_addresses(["wss://127.0.0.1:8000/agent"], 50_000) == [
        "127.0.0.1", "127.0.0.2", "127.0.0.3",
    ]  # fmt: skip
    assert auto_source_addresses(["wss://frontend.example:8000/agent"], 50_000) == []
