"""Several frontend processes on one host (``peregrine server --workers N``): they share the
ports, and a collection or hunt created through any of them reaches a client held by another."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path

import httpx
import msgspec
import psutil
import pytest

from peregrine.loadtest import Fleet
from tests.server.harness import make_deployment, port_open, served, wait_until, workers_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]  # waits add up to about 330 s
CLIENTS = 30


def test_two_frontend_processes_share_the_ports_and_route_work(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    options = ("--workers", "2", "--log-level", "WARNING")
    with served(deployment, tmp_path / "server.log", *options) as (server, token):
        # The server made an administrator and its token for the CLI on this machine.
        assert server.proc is not None
        asyncio.run(_scenario(deployment, token, tmp_path, server.proc.pid))
    # The workers log at the level the supervisor was given (they used to log at INFO: a line
    # per connection at 50,000 agents).
    assert " INFO " not in server.output()


def agent_peers(worker: psutil.Process, port: int) -> set[int]:
    """The client ports of the agent connections (to ``port``) ``worker`` has accepted."""
    return {
        c.raddr.port
        for c in worker.net_connections("tcp")
        if c.status == "ESTABLISHED" and c.laddr.port == port and c.raddr
    }


def agents_held(supervisor: int, port: int) -> list[int]:
    """Agent connections each frontend process holds."""
    return [len(agent_peers(w, port)) for w in psutil.Process(supervisor).children()]


async def _scenario(deployment, token: str, tmp_path: Path, supervisor: int) -> None:  # type: ignore[no-untyped-def]
    cfg = deployment.server
    config = msgspec.structs.replace(deployment.client, poll_min=0.2, poll_max=1.0)
    fleet = Fleet(config, CLIENTS, key_dir=tmp_path / "keys", ramp_per_second=200, rows=3)
    await fleet.start()
    api = httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{cfg.api_port}/api/v1",
        verify=ssl.create_default_context(cafile=cfg.ca_cert_path),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    try:
        await fleet.wait_connected(CLIENTS, timeout=60)

        async def everyone_connected() -> bool:
            # Any process answers; each counts the clients of both.
            statuses = [(await api.get("/status")).json()["connected"] for _ in range(6)]
            return all(s == CLIENTS for s in statuses)

        await wait_until(everyone_connected, 60, 0.5)
        # Both processes listened before the first agent connected (served() waits for it), and
        # the kernel hands each new connection to one of them by a hash of its addresses: all
        # 30 on one process is a 2 in 2**30 chance. (Agents started while only one listened
        # all went to that one and stayed: the test failed so under load.)
        held = agents_held(supervisor, cfg.port)
        assert len(held) == 2 and all(n > 0 for n in held) and sum(held) == CLIENTS, held
        flows = []
        for client_id in fleet.client_ids:
            body = {"client_id": client_id, "artifacts": [{"name": "Generic.System.Pslist"}]}
            response = await api.post("/collections", json=body)
            assert response.status_code == 201, response.text
            flows.append(response.json()["flow_id"])

        async def all_finished() -> bool:
            states = [(await api.get(f"/collections/{f}")).json()["state"] for f in flows]
            return all(s == "Finished" for s in states)

        await wait_until(all_finished, 60, 0.5)
        hunt = (await api.post("/hunts", json={"artifacts": [{"name": "Linux.Sys.Users"}]})).json()
        await api.post(f"/hunts/{hunt['hunt_id']}/start")

        async def hunt_done() -> bool:
            stats = (await api.get(f"/hunts/{hunt['hunt_id']}/stats")).json()
            return stats["scheduled"] == CLIENTS and stats["finished"] == CLIENTS

        await wait_until(hunt_done, 60, 0.5)
    finally:
        await api.aclose()
        await fleet.stop()


def test_connections_made_while_the_workers_start_are_spread_over_every_worker(
    tmp_path: Path,
) -> None:
    """After a restart the whole fleet reconnects at once. The agent port must not belong to
    whichever worker started first: agents keep their connection, so those that came early
    would all stay on it. The supervisor listens for every worker before starting any."""
    deployment = make_deployment(tmp_path / "deploy")
    cfg = deployment.server
    server = workers_process(deployment, tmp_path / "server.log")
    server.start()
    try:
        assert server.proc is not None
        deadline = time.monotonic() + 60
        while not port_open(cfg.port):
            assert time.monotonic() < deadline and server.proc.poll() is None, server.output()
            time.sleep(0.01)
        # The first moment anyone may connect: 32 connections (they wait, unencrypted, within
        # the handshake deadline of 10 s once a worker takes them).
        early = [socket.create_connection(("127.0.0.1", cfg.port)) for _ in range(32)]
        try:

            def taken() -> list[int]:
                return agents_held(server.proc.pid, cfg.port)  # type: ignore[union-attr]

            while sum(held := taken()) < len(early):
                assert time.monotonic() < deadline, (held, server.output())
                time.sleep(0.05)
            # The kernel spreads connections over the workers' sockets by a hash of their
            # addresses: all 32 on one of two is a 2 in 2**32 chance.
            assert len(held) == 2 and all(n > 0 for n in held), held
        finally:
            for sock in early:
                sock.close()
    finally:
        server.stop()


def test_connections_queued_for_a_worker_that_dies_are_taken_by_the_one_started_for_it(
    tmp_path: Path,
) -> None:
    """A worker killed while connections wait in its backlog: they are not reset, they wait,
    and the worker the supervisor starts in its place takes them. (The supervisor keeps each
    worker's listening socket open; were it the dead worker's alone, the kernel would reset
    everything queued on it.)"""
    deployment = make_deployment(tmp_path / "deploy")
    port = deployment.server.port
    with served(
        deployment, tmp_path / "server.log", "--workers", "2", "--log-level", "WARNING"
    ) as (
        server,
        _,
    ):
        assert server.proc is not None
        supervisor = psutil.Process(server.proc.pid)
        victim, survivor = supervisor.children()
        victim.suspend()  # it accepts nothing: what the kernel gives its socket waits there
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        try:
            ours = {sock.getsockname()[1] for sock in clients}
            time.sleep(1.0)  # the survivor takes its share
            by_survivor = agent_peers(survivor, port)
            # Spread by a hash of the addresses: none for the victim is a 2 in 2**32 chance.
            assert ours - by_survivor, "no connection waited for the stopped worker"
            victim.kill()
            victim.wait(10)
            # Every connection is taken, some by the victim's successor. Counted as seen: a
            # connection that never starts TLS is closed at the handshake deadline (10 s).
            by_successor: set[int] = set()
            deadline = time.monotonic() + 60
            while not (by_successor and ours <= by_survivor | by_successor):
                assert time.monotonic() < deadline, (ours, by_survivor, by_successor)
                by_survivor |= agent_peers(survivor, port)
                for successor in supervisor.children():
                    if successor.pid != survivor.pid:
                        by_successor |= agent_peers(successor, port)
                time.sleep(0.1)
        finally:
            for sock in clients:
                sock.close()
