"""Two frontends of one cluster, in two processes, over a real Redis and PostgreSQL.

Frontend "a" is a ``peregrine server`` process holding an agent; frontend "b" runs in the test.
A collection created on "b" reaches the agent through an addressed ``deliver`` notice; "b"
sees the agent as online through Redis presence. Then "a" is killed with SIGKILL: its agent
drops out of "b"'s presence within seconds, and "b" becomes the leader within 10 s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import psycopg
import pytest
from sqlalchemy import make_url

from peregrine.config import GeneratedConfig, ServerConfig
from peregrine.config.model import save_config
from peregrine.server.app import Server
from tests.conftest import RedisServer
from tests.server.harness import (
    Process,
    agent_config,
    free_port,
    make_deployment,
    port_open,
    running_agent,
    wait_until,
)

pytestmark = pytest.mark.slow

#: Presence: a 5 s time-to-live, read every second, plus a margin for a loaded machine.
PRESENCE_GONE_SECONDS = 8.0
TAKEOVER_SECONDS = 10.0


def cluster_config(
    deployment: GeneratedConfig, directory: Path, name: str, database: str, bus: str, port: int
) -> ServerConfig:
    """One frontend of the deployment's cluster: shared database, bus and filestore."""
    return msgspec.structs.replace(
        deployment.server,
        data_dir=str(directory / name),
        filestore_dir=str(directory / "shared-filestore"),
        datastore_url=database,
        bus_url=bus,
        frontend_name=name,
        port=port,
        api_port=0,
    )


def leader_name(database: str) -> str | None:
    """The frontend whose leader connection holds an advisory lock, from PostgreSQL's view."""
    url = make_url(database).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
        ).fetchone()
    return None if row is None else str(row[0]).removeprefix("peregrine leader ")


@pytest.mark.timeout(240)
def test_two_frontend_processes_share_work_presence_and_the_lead(
    tmp_path: Path, redis_server: RedisServer, postgres_database: str
) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    a_config = cluster_config(
        deployment, tmp_path, "a", postgres_database, redis_server.url, deployment.server.port
    )
    b_config = cluster_config(
        deployment, tmp_path, "b", postgres_database, redis_server.url, free_port()
    )
    Path(a_config.data_dir).mkdir(parents=True)
    save_config(a_config, tmp_path / "a.yaml")
    a = Process(
        ["server", "--config", str(tmp_path / "a.yaml"), "--no-local-agent", "--log-level",
         "WARNING"],
        tmp_path / "a.log",
    )  # fmt: skip
    a.start()
    try:
        deadline = time.monotonic() + 60
        while not (port_open(a_config.port) and leader_name(postgres_database) == "a"):
            assert a.proc is not None and a.proc.poll() is None, a.output()
            assert time.monotonic() < deadline, a.output()
            time.sleep(0.2)
        asyncio.run(_scenario(deployment, b_config, a, tmp_path, postgres_database))
    finally:
        a.stop()


async def _scenario(
    deployment: GeneratedConfig, b_config: ServerConfig, a: Process, tmp_path: Path, db: str
) -> None:
    b = Server(b_config)
    await b.start()
    try:
        assert b.degraded() == []
        await asyncio.sleep(2)
        assert not b.leader.is_leader  # "a" holds the lock

        async with running_agent(agent_config(deployment, tmp_path / "agent")) as agent:
            client_id = agent.identity.client_id
            # Enrolled on "a"; "b" hears of it through Redis and indexes it.
            await wait_until(lambda: b.is_online(client_id), 15)
            assert b.presence.holder(client_id) == "a"
            assert client_id not in b.connections
            await wait_until(lambda: client_id in b.client_index.clients, 10)

            # Created on "b", delivered by "a" (a deliver notice addressed to it).
            flow = await b.collect(client_id, [("Generic.Client.Info", {})], creator="test")

            async def finished() -> bool:
                record = await asyncio.to_thread(b.datastore.collections.get, flow.flow_id)
                return record is not None and record.state == "Finished"

            await wait_until(finished, 90, interval=0.3)

            a.kill()
            killed = time.monotonic()

            async def seconds_until(condition) -> float:  # type: ignore[no-untyped-def]
                await wait_until(condition, 20, interval=0.05)
                return time.monotonic() - killed

            gone, takeover = await asyncio.gather(
                seconds_until(lambda: not b.is_online(client_id)),
                seconds_until(lambda: b.leader.is_leader),
            )
            assert leader_name(db) == "b"
        print(f"presence gone after {gone:.1f} s, leader after {takeover:.1f} s")
        assert gone < PRESENCE_GONE_SECONDS
        assert takeover < TAKEOVER_SECONDS
    finally:
        await b.stop()
