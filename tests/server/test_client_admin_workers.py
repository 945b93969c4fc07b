"""Deleting clients with several frontend processes (``--workers 2``): a forced delete through
either process disconnects the client wherever it is held, and no process's search keeps a
deleted client."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from peregrine.auth.accounts import Accounts
from peregrine.datastore import open_datastore
from peregrine.loadtest import Fleet
from tests.server.harness import make_deployment, port_open, wait_until, workers_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]  # waits add up to about 150 s
CLIENTS = 12


def test_a_forced_delete_disconnects_the_client_in_any_process(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    server = workers_process(deployment, tmp_path / "server.log")
    server.start()
    cfg = deployment.server
    try:
        deadline = time.monotonic() + 60
        while not (port_open(cfg.port) and port_open(cfg.api_port)):
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        with open_datastore(cfg.datastore_url) as datastore:
            accounts = Accounts(datastore)
            accounts.create_user("deleter", None, ["administrator"])
            token = accounts.create_token("deleter", "test").token
            retired = "C.00000000de1e7e00"
            datastore.clients.enroll(retired, b"retired", time.time())
        asyncio.run(_scenario(deployment, token, tmp_path, retired))
    finally:
        server.stop()


async def _scenario(deployment, token: str, tmp_path: Path, retired: str) -> None:  # type: ignore[no-untyped-def]
    cfg = deployment.server
    config = msgspec.structs.replace(deployment.client, poll_min=0.2, poll_max=1.0)
    fleet = Fleet(config, CLIENTS, key_dir=tmp_path / "keys", ramp_per_second=200, rows=1)
    await fleet.start()
    tls = ssl.create_default_context(cafile=cfg.ca_cert_path)
    base = f"https://127.0.0.1:{cfg.api_port}/api/v1"
    headers = {"Authorization": f"Bearer {token}"}
    api = httpx.AsyncClient(base_url=base, verify=tls, headers=headers, timeout=30)
    # A new connection per request: the kernel spreads them over both processes.
    fresh = httpx.AsyncClient(
        base_url=base, verify=tls, headers=headers, timeout=30,
        limits=httpx.Limits(max_keepalive_connections=0),
    )  # fmt: skip

    async def everywhere(check) -> bool:  # type: ignore[no-untyped-def]
        """``check`` holds for the client search of both processes (asked several times)."""
        answers = [await fresh.get("/clients", params={"limit": 1000}) for _ in range(8)]
        return all(check(answer) for answer in answers)

    try:
        await fleet.wait_connected(CLIENTS, timeout=60)
        everyone = set(fleet.client_ids) | {retired}

        def listed(response: httpx.Response) -> set[str]:
            return {c["client_id"] for c in response.json()["items"]}

        await wait_until(lambda: everywhere(lambda r: everyone <= listed(r)), 30, 0.5)
        # An offline client: deleted through whichever process answers, gone from both.
        assert (await api.delete(f"/clients/{retired}")).status_code == 200
        await wait_until(lambda: everywhere(lambda r: retired not in listed(r)), 10, 0.5)
        # Connected clients (held by either process): refused, then forced.
        with open_datastore(cfg.datastore_url) as datastore:
            enrolled = {c: datastore.clients.get(c).first_seen for c in fleet.client_ids}
        for client_id in fleet.client_ids:
            assert (await api.delete(f"/clients/{client_id}")).status_code == 409
            forced = await api.delete(f"/clients/{client_id}", params={"force": "true"})
            assert forced.status_code == 200 and forced.json()["was_connected"]

        def enrolled_again() -> bool:
            # A client comes back as a new one only once its old connection was closed.
            with open_datastore(cfg.datastore_url) as datastore:
                records = {c: datastore.clients.get(c) for c in fleet.client_ids}
            return all(r is not None and r.first_seen > enrolled[c] for c, r in records.items())

        await wait_until(enrolled_again, 60, 0.5)
    finally:
        await api.aclose()
        await fresh.aclose()
        await fleet.stop()
