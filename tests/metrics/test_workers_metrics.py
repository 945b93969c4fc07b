"""Under ``peregrine server --workers 2`` every scrape answers for both processes, whichever of
them the kernel hands the connection to (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from peregrine.loadtest import Fleet
from tests.server.harness import make_deployment, served, wait_until
from tests.server.test_workers import agents_held

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
CLIENTS = 24


def test_each_scrape_sums_every_worker(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    cfg = deployment.server
    options = ("--workers", "2", "--log-level", "WARNING")
    with served(deployment, tmp_path / "server.log", *options) as (server, token):
        assert server.proc is not None
        asyncio.run(_scenario(deployment, token, tmp_path, server.proc.pid))
    # The supervisor gave the workers one directory for their values.
    assert list((Path(cfg.data_dir) / "metrics").glob("*.db"))


async def _scenario(deployment, token: str, tmp_path: Path, supervisor: int) -> None:  # type: ignore[no-untyped-def]
    cfg = deployment.server
    config = msgspec.structs.replace(deployment.client, poll_min=0.2, poll_max=1.0)
    fleet = Fleet(config, CLIENTS, key_dir=tmp_path / "keys", ramp_per_second=200, rows=3)
    await fleet.start()
    tls = ssl.create_default_context(cafile=cfg.ca_cert_path)
    try:
        await fleet.wait_connected(CLIENTS, timeout=60)
        # Both processes hold agents, so no single process's count is the total.
        held = await wait_until(lambda: all(agents_held(supervisor, cfg.port)), 30)
        assert held
        seen = []
        for _ in range(10):  # a new connection each time: the kernel picks a worker each time
            async with httpx.AsyncClient(verify=tls, timeout=30) as http:
                response = await http.get(
                    f"https://127.0.0.1:{cfg.api_port}/metrics",
                    headers={"Authorization": f"Bearer {token}"},
                )
            assert response.status_code == 200, response.text
            values = {
                s.name: s.value
                for family in text_string_to_metric_families(response.text)
                for s in family.samples
                if not s.labels
            }
            seen.append(values["peregrine_agents_connected"])
            assert values["peregrine_enrollments_total"] == CLIENTS
        assert seen == [CLIENTS] * 10, (seen, agents_held(supervisor, cfg.port))
    finally:
        await fleet.stop()
