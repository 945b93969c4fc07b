"""The services and the API run without a frontend: they reach agents only through a ``Fleet``
(``services/fleet.py``), so the process that composes them may give them any. Here a fleet
kept in memory stands in for the agent listener, the API is called in-process (ASGI, no
ports), and what would have reached agents is read back. The real frontend is the ``Fleet`` in
every other server test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from peregrine.api.app import create_app
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.auth.accounts import Accounts
from peregrine.auth.audit import AuditLog, default_audit_path
from peregrine.datastore import open_datastore
from peregrine.filestore import Filestore
from peregrine.protocol.messages import CancelCollection, CollectionRequest, decode_from_server
from peregrine.server.leader import AlwaysLeader
from peregrine.services.app import Services
from peregrine.services.client_admin import DELETED, delete_client
from peregrine.services.hunts import HuntSpec
from tests.server.harness import make_deployment

CLIENTS = [f"C.{i:016x}" for i in range(1, 4)]


class InMemoryFleet:
    """A fleet that holds the clients it is given and keeps what it would send them."""

    def __init__(self, held: Iterable[str]) -> None:
        self.held = set(held)
        self.sent: list[tuple[str, Any]] = []
        self.announced: list[dict[str, Any]] = []
        self.disconnected: list[tuple[str, str]] = []

    def holds(self, client_id: str) -> bool:
        return client_id in self.held

    def held_here(self) -> list[str]:
        return sorted(self.held)

    def is_online(self, client_id: str) -> bool:
        return client_id in self.held

    def online(self) -> set[str]:
        return set(self.held)

    async def push(self, client_id: str, payload: bytes, stored: bool = True) -> bool:
        if client_id not in self.held:
            return False
        self.sent.append((client_id, decode_from_server(payload)))
        return True

    def expect(self, flow_id: str, client_id: str) -> None:
        pass

    async def disconnect(self, client_id: str, reason: str) -> None:
        if client_id in self.held:
            self.held.discard(client_id)
            self.disconnected.append((client_id, reason))

    async def announce(self, kind: str, **fields: Any) -> None:
        self.announced.append({"kind": kind, **fields})

    def degraded(self) -> list[str]:
        return []


@asynccontextmanager
async def services_alone(root: Path, fleet: InMemoryFleet) -> AsyncIterator[Services]:
    """Services over a real SQLite datastore and filestore, with ``CLIENTS`` enrolled."""
    config = make_deployment(root).server
    datastore = open_datastore(config.datastore_url)
    filestore = Filestore(Path(config.filestore_dir), config.min_free_bytes)
    repository = ArtifactRepository.default(forensic=False)
    for client_id in CLIENTS:
        datastore.clients.enroll(client_id, b"k" * 32, time.time())
    services = Services(config, datastore, filestore, repository, fleet, AlwaysLeader())
    await services.load_client_index()
    try:
        yield services
    finally:
        await services.hunts.close()
        datastore.close()


def test_the_api_collects_through_the_services_alone(tmp_path: Path) -> None:
    fleet = InMemoryFleet(held=[CLIENTS[0]])

    async def scenario() -> None:
        async with services_alone(tmp_path, fleet) as services:
            accounts = Accounts(services.datastore)
            audit = AuditLog(services.datastore.audit, default_audit_path(services.config.data_dir))
            accounts.create_user("ana", None, ["investigator"])
            token = accounts.create_token("ana", "test").token
            app = create_app(services, accounts, audit)
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api", headers=headers
            ) as api:
                body = {"client_id": CLIENTS[0], "artifacts": [{"name": "Generic.Client.Info"}]}
                created = await api.post("/api/v1/collections", json=body)
                assert created.status_code == 201, created.text
                flow_id = created.json()["flow_id"]
                ready = await api.get("/readyz")
                assert ready.status_code == 503  # no process behind this app: no traffic
                status = await api.get("/api/v1/status")
                assert status.json()["connected"] == 1
            app.state.ctx.close()
            [(client_id, request)] = fleet.sent
            assert client_id == CLIENTS[0]
            assert isinstance(request, CollectionRequest) and request.flow_id == flow_id
            stored = services.datastore.collections.get(flow_id)
            assert stored is not None and stored.creator == "ana"
            entries = audit.query(action="collection.create", limit=10, offset=0)
            assert [e.target for e in entries] == [f"{CLIENTS[0]}/{flow_id}"]

    asyncio.run(scenario())


def test_a_hunt_reaches_the_clients_its_fleet_holds_and_a_stop_cancels_them(
    tmp_path: Path,
) -> None:
    fleet = InMemoryFleet(held=CLIENTS[:2])

    async def scenario() -> None:
        async with services_alone(tmp_path, fleet) as services:
            spec = HuntSpec(artifacts=[("Generic.Client.Info", {})])
            hunt = await services.hunts.create(spec, "ana")
            await services.hunts.start(hunt.hunt_id)
            async with asyncio.timeout(30):
                while len(fleet.sent) < 2:
                    await asyncio.sleep(0.05)
            assert sorted(c for c, _ in fleet.sent) == CLIENTS[:2]
            assert {"kind": "hunt_started", "hunt_id": hunt.hunt_id} in fleet.announced
            fleet.sent.clear()
            await services.hunts.stop(hunt.hunt_id, cancel_running=True)
            cancels = [(c, m) for c, m in fleet.sent if isinstance(m, CancelCollection)]
            assert sorted(c for c, _ in cancels) == CLIENTS[:2]
            stats = services.datastore.hunts.stats(hunt.hunt_id)
            assert (stats.scheduled, stats.cancelled) == (2, 2)  # the third was never held

    asyncio.run(scenario())


def test_deleting_a_held_client_disconnects_it_through_the_fleet(tmp_path: Path) -> None:
    fleet = InMemoryFleet(held=[CLIENTS[2]])

    async def scenario() -> None:
        async with services_alone(tmp_path, fleet) as services:
            deleted = await delete_client(services, CLIENTS[2], force=True)
            assert deleted.was_connected
            assert fleet.disconnected == [(CLIENTS[2], DELETED)]
            assert CLIENTS[2] not in services.client_index.clients
            assert {"kind": "client_changed", "client_id": CLIENTS[2]} in fleet.announced

    asyncio.run(scenario())
