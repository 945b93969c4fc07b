"""``/healthz`` and ``/readyz``: what the balancer polls, on the API port and the agent port.

A real server (its API over HTTPS, its agent listener over TLS); each fault is made for real:
the filestore replaced by a file, the PostgreSQL database dropped under the server, the
server draining.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import time
import uuid
from pathlib import Path

import httpx
import msgspec
import pytest
from sqlalchemy import Engine, text

from peregrine.config import GeneratedConfig
from peregrine.config.model import DrainSettings
from peregrine.server.app import Server
from peregrine.server.readiness import CACHE_SECONDS
from tests.datastore.conftest import postgres_admin  # noqa: F401 (a fixture)
from tests.server.harness import free_port, make_deployment, running_server_with, wait_until


def _client(deployment: GeneratedConfig) -> httpx.AsyncClient:
    tls = ssl.create_default_context(cafile=deployment.server.ca_cert_path)
    return httpx.AsyncClient(verify=tls, timeout=10)


def _api(server: Server, path: str) -> str:
    return f"https://127.0.0.1:{server.api_port}{path}"


def _agent_port(server: Server, path: str) -> str:
    return f"https://127.0.0.1:{server.port}{path}"


async def _ready_state(http: httpx.AsyncClient, url: str) -> tuple[int, dict[str, object]]:
    response = await http.get(url)
    return response.status_code, response.json()


def test_a_healthy_server_is_alive_and_ready_on_both_ports_without_credentials(
    tmp_path: Path,
) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server_with(deployment.server) as server, _client(deployment) as http:
            for url in (_api(server, "/healthz"), _agent_port(server, "/healthz")):
                response = await http.get(url)
                assert response.status_code == 200, url
                assert response.json() == {"status": "alive"}
            for url in (_api(server, "/readyz"), _agent_port(server, "/readyz")):
                response = await http.get(url)
                assert response.status_code == 200, url
                assert response.json() == {
                    "status": "ready",
                    "checks": {
                        "datastore": "ok",
                        "filestore": "ok",
                        "bus": "ok",
                        "accepting": "ok",
                    },
                }
                # Nothing about the deployment: no paths, no URLs, no secrets.
                for secret in (
                    deployment.server.data_dir,
                    deployment.server.enrollment_secret,
                    deployment.server.datastore_url,
                ):
                    assert secret not in response.text
            # Other paths of the agent port are still refused; agents still connect at /agent.
            assert (await http.get(_agent_port(server, "/other"))).status_code == 404
            # The probe file is removed again: nothing is left in the filestore.
            assert not [p for p in Path(server.filestore.root).iterdir() if p.name.startswith(".")]

    asyncio.run(scenario())


def test_an_unwritable_filestore_makes_the_frontend_not_ready_until_it_is_back(
    tmp_path: Path,
) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server_with(deployment.server) as server, _client(deployment) as http:
            root = Path(server.filestore.root)
            assert (await http.get(_api(server, "/readyz"))).status_code == 200
            # The mount went away and something else sits where it was: writes fail.
            shutil.rmtree(root)
            root.write_text("not a directory")
            await asyncio.sleep(CACHE_SECONDS)
            for url in (_api(server, "/readyz"), _agent_port(server, "/readyz")):
                status, body = await _ready_state(http, url)
                assert status == 503
                assert body["status"] == "not ready"
                assert body["checks"] == {
                    "datastore": "ok",
                    "filestore": "unavailable",
                    "bus": "ok",
                    "accepting": "ok",
                }
            # Still alive: the balancer's liveness and readiness are different questions.
            assert (await http.get(_api(server, "/healthz"))).status_code == 200
            root.unlink()
            root.mkdir(mode=0o700)

            async def ready_again() -> bool:
                return (await http.get(_api(server, "/readyz"))).status_code == 200

            await wait_until(ready_again, timeout=10)

    asyncio.run(scenario())


def test_readiness_is_checked_at_most_once_a_second_however_often_it_is_asked(
    tmp_path: Path,
) -> None:
    """The endpoints are unauthenticated: a flood of probes must not become a flood of
    datastore queries and filestore writes. A second answer inside the second is the first
    one again, even though the filestore broke in between."""
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server_with(deployment.server) as server, _client(deployment) as http:
            await asyncio.sleep(CACHE_SECONDS)
            asked = time.monotonic()
            assert (await http.get(_api(server, "/readyz"))).status_code == 200
            root = Path(server.filestore.root)
            shutil.rmtree(root)
            root.write_text("not a directory")
            answers = [await http.get(_api(server, "/readyz")) for _ in range(5)]
            assert time.monotonic() - asked < CACHE_SECONDS, "too slow to show the cache"
            assert {a.status_code for a in answers} == {200}
            await asyncio.sleep(CACHE_SECONDS)
            assert (await http.get(_api(server, "/readyz"))).status_code == 503

    asyncio.run(scenario())


def test_a_draining_frontend_is_not_ready(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server_with(deployment.server) as server, _client(deployment) as http:
            assert (await http.get(_agent_port(server, "/readyz"))).status_code == 200
            await asyncio.sleep(CACHE_SECONDS)
            await server.connections.shutdown(timeout=1)  # what a graceful stop starts with
            status, body = await _ready_state(http, _api(server, "/readyz"))
            assert status == 503
            assert body["checks"]["accepting"] == "draining"  # type: ignore[index]

    asyncio.run(scenario())


def test_an_unreachable_datastore_makes_the_frontend_not_ready(
    tmp_path: Path,
    postgres_admin: Engine,  # noqa: F811
) -> None:
    name = f"peregrine_health_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_admin.url.set(database=name).render_as_string(hide_password=False)
    deployment = make_deployment(tmp_path / "deploy")
    config = msgspec.structs.replace(deployment.server, datastore_url=url)

    async def scenario() -> None:
        async with running_server_with(config) as server, _client(deployment) as http:
            assert (await http.get(_api(server, "/readyz"))).status_code == 200
            with postgres_admin.connect() as conn:  # the database goes away under the server
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            await asyncio.sleep(CACHE_SECONDS)
            status, body = await _ready_state(http, _api(server, "/readyz"))
            assert status == 503
            assert body["checks"]["datastore"] == "unavailable"  # type: ignore[index]
            assert name not in str(body)

    try:
        asyncio.run(scenario())
    finally:
        with postgres_admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_frontend_whose_bus_is_down_stays_ready_and_says_it_is_degraded(
    tmp_path: Path,
    postgres_admin: Engine,  # noqa: F811
) -> None:
    """Agents' sessions and results do not need Redis: a frontend whose bus does not answer
    keeps its place in the balancer's pool (200), and says what is wrong."""
    name = f"peregrine_health_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_admin.url.set(database=name).render_as_string(hide_password=False)
    deployment = make_deployment(tmp_path / "deploy")
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    config = msgspec.structs.replace(
        deployment.server, datastore_url=url, bus_url=nobody, frontend_name="a",
        drain=DrainSettings(balancer_seconds=0, agents_seconds=0),  # no balancer to wait for
    )  # fmt: skip

    async def scenario() -> None:
        async with running_server_with(config) as server, _client(deployment) as http:
            for where in (_api(server, "/readyz"), _agent_port(server, "/readyz")):
                status, body = await _ready_state(http, where)
                assert (status, body) == (200, {
                    "status": "degraded",
                    "checks": {"datastore": "ok", "filestore": "ok", "bus": "unavailable",
                               "accepting": "ok"},
                }), where  # fmt: skip

    try:
        asyncio.run(scenario())
    finally:
        with postgres_admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.parametrize("path", ["/readyz", "/healthz"])
def test_health_endpoints_are_not_in_the_versioned_api_document(path: str) -> None:
    from peregrine.api.app import create_app

    document = create_app(None, None, None).openapi()  # type: ignore[arg-type]
    assert path not in document["paths"]
