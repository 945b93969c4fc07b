"""A development cluster for the tests: the same code as ``scripts/cluster up 3``
(``peregrine.cluster.devcluster``), with its database on the test PostgreSQL server, its own
Redis and HAProxy, and three ``peregrine server`` processes. One per test module: starting
one costs about fifteen seconds on two cores."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from peregrine.client import AsyncPeregrine
from peregrine.cluster.devcluster import DevCluster
from peregrine.config import load_server_config
from peregrine.server.cluster import namespace
from tests.cluster.services import program
from tests.conftest import POSTGRES_URL_VARIABLE, REQUIRE_POSTGRES_VARIABLE, _unavailable


def postgres_server_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        _unavailable(
            REQUIRE_POSTGRES_VARIABLE,
            f"cluster tests need {POSTGRES_URL_VARIABLE} (./scripts/test starts one)",
        )
    return url


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    program("haproxy")
    program("redis-server")
    url = postgres_server_url()
    directory = tmp_path_factory.mktemp("cluster") / "dev"
    running = DevCluster.up(directory, 3, postgres_url=url, timeout=120)
    try:
        yield running
    finally:
        running.down()


def api(cluster: DevCluster, frontend: str | None = None) -> AsyncPeregrine:
    """The API through the balancer, or straight to one frontend."""
    url = cluster.state.api_url
    if frontend is not None:
        spec = cluster.frontend(frontend)
        url = f"https://{spec.host}:{spec.api_port}"
    return AsyncPeregrine(url, cluster.token, ca_cert=cluster.state.ca_cert)


def holders(cluster: DevCluster, leave_out: str = "") -> dict[str, str]:
    """Which frontend holds each connected client, as the frontends told Redis (leaving out
    the lists of ``leave_out``)."""
    config = load_server_config(Path(cluster.state.frontends[0].config))
    prefix = namespace(config)
    with redis.Redis(port=cluster.state.redis_port) as r:
        return {
            client.decode(): f.name
            for f in cluster.state.frontends
            if f.name != leave_out
            for client in r.smembers(f"{prefix}:clients:{f.name}")  # type: ignore[union-attr]
        }
