"""Deleting clients (issue 11 item 7): everything kept of a client goes, hunt statistics stay
exact, a connected client is refused unless forced, and a forced one is disconnected."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from peregrine.config import GeneratedConfig
from peregrine.server.app import Server
from peregrine.services.client_admin import ClientConnected, UnknownClient, delete_client
from peregrine.services.hunts import HuntSpec
from tests.server.harness import (
    agent_config,
    make_deployment,
    running_agent,
    running_server,
    wait_until,
)

USERS = ("Linux.Sys.Users", {"UserRegex": "^root$"})


@pytest.fixture
def deployment(tmp_path: Path) -> GeneratedConfig:
    return make_deployment(tmp_path / "deploy")


async def _interrogated(server: Server, client_id: str) -> None:
    await wait_until(lambda: (c := server.datastore.clients.get(client_id)) and c.interrogated)


def test_deleting_a_client_removes_everything_kept_of_it(
    deployment: GeneratedConfig, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with running_server(deployment) as server:
            store = server.datastore
            async with (
                running_agent(agent_config(deployment, tmp_path / "a")) as a,
                running_agent(agent_config(deployment, tmp_path / "b")) as b,
            ):
                gone, kept = a.client_id, b.client_id
                await _interrogated(server, gone)
                await _interrogated(server, kept)
                await server.label(gone, add=["retired"])
                hunt = await server.hunts.create(HuntSpec(artifacts=[USERS]), creator="t")
                await server.hunts.start(hunt.hunt_id)
                await wait_until(lambda: store.hunts.stats(hunt.hunt_id).finished == 2, 60)
                flow = await server.collect(gone, [("Generic.System.Pslist", {})], "t")
                await server.wait_for_flow(flow.flow_id, ["Finished"], 60)
            # Offline now; one more collection waits for it (a task).
            waiting = await server.collect(gone, [USERS], "t")
            gone_flows = [f.flow_id for f in store.collections.list_for_client(gone)]
            assert len(gone_flows) == 4 and waiting.flow_id in gone_flows  # + interrogation
            kept_dir = server.filestore.root / "clients" / kept
            kept_files = sorted(p for p in kept_dir.rglob("*") if p.is_file())
            assert (server.filestore.root / "clients" / gone).is_dir()

            deleted = await delete_client(server.services, gone)

            assert (deleted.client_id, deleted.flows, deleted.was_connected) == (gone, 4, False)
            assert deleted.bytes_freed > 0
            assert store.clients.get(gone) is None
            assert all(store.collections.get(flow_id) is None for flow_id in gone_flows)
            assert store.tasks.pending(gone) == []
            assert store.hunts.scheduled_hunts(gone) == set()
            assert not (server.filestore.root / "clients" / gone).exists()
            assert server.client_index.search(f"client:{gone}")[0] == 0
            assert server.client_index.search("label:retired")[0] == 0
            # The hunt counts the client left, exactly: statistics come from stored state.
            [entry] = store.hunts.clients(hunt.hunt_id)
            stats = store.hunts.stats(hunt.hunt_id)
            assert entry.client_id == kept
            assert (stats.scheduled, stats.finished, stats.rows) == (1, 1, 1)
            # The other client lost nothing.
            assert sorted(p for p in kept_dir.rglob("*") if p.is_file()) == kept_files
            assert store.clients.get(kept) is not None
            with pytest.raises(UnknownClient):
                await delete_client(server.services, gone)

    asyncio.run(scenario())


def test_a_connected_client_is_deleted_only_when_forced(
    deployment: GeneratedConfig, tmp_path: Path
) -> None:
    """Refused while connected; forced, it is disconnected and removed, and its agent (still
    running with the enrollment secret) comes back as a new client with nothing of the old."""

    async def scenario() -> None:
        async with running_server(deployment) as server:
            store = server.datastore
            async with running_agent(agent_config(deployment, tmp_path / "a")) as agent:
                cid = agent.client_id
                await _interrogated(server, cid)
                [old_flow] = store.collections.list_for_client(cid)
                with pytest.raises(ClientConnected, match="force"):
                    await delete_client(server.services, cid)
                assert store.clients.get(cid) is not None
                assert store.collections.get(old_flow.flow_id) is not None
                sessions = agent.sessions
                before = time.time()

                deleted = await delete_client(server.services, cid, force=True)

                assert deleted.was_connected and deleted.flows == 1
                assert store.collections.get(old_flow.flow_id) is None
                await wait_until(lambda: agent.sessions > sessions, 20)
                again = await wait_until(lambda: store.clients.get(cid), 20)
                assert again.first_seen >= before and again.labels == []
                await _interrogated(server, cid)
                assert old_flow.flow_id not in {
                    f.flow_id for f in store.collections.list_for_client(cid)
                }

    asyncio.run(scenario())
