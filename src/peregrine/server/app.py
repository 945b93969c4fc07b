"""The embedded server: one process holding agent connections, the datastore and the filestore.

``Server`` wires the parts together (datastore, filestore, artifacts, connection registry,
collection service, ingestion) and runs the WebSocket-over-TLS listener for agents plus the flow
monitor. In the embedded mode this process is also the leader, so it runs the singleton work
(the monitor) itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server as WebSocketServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from peregrine.artifacts.repository import ArtifactRepository, configured_directories
from peregrine.auth.accounts import Accounts
from peregrine.auth.audit import AuditLog, default_audit_path
from peregrine.config import ServerConfig, server_ssl_context, shrink_tls_read_buffers
from peregrine.datastore import Datastore, FlowRecord, open_datastore
from peregrine.engine.context import ALL_PERMISSIONS
from peregrine.filestore import Filestore
from peregrine.protocol.messages import MAX_MESSAGE_BYTES
from peregrine.server.api_server import ApiServer
from peregrine.server.client_index import ClientIndex
from peregrine.server.collections import CollectionService, Limits
from peregrine.server.connections import ConnectionRegistry
from peregrine.server.events import ServerEvents
from peregrine.server.hunt_results import HuntResults
from peregrine.server.hunts import HuntManager
from peregrine.server.ingest import Ingestor
from peregrine.server.monitor import FlowMonitor
from peregrine.server.session import AgentSession

log = logging.getLogger(__name__)

AGENT_PATH = "/agent"
INTERROGATION = "Generic.Client.Info"
INTERROGATOR = "server:interrogation"


class Server:
    def __init__(self, config: ServerConfig, repository: ArtifactRepository | None = None) -> None:
        self.config = config
        self.enrollment_secret = config.enrollment_secret
        # Custom artifacts added through the API live in <data_dir>/artifacts.
        custom = Path(config.data_dir) / "artifacts"
        directories = configured_directories([custom] if custom.is_dir() else [])
        self.repository = repository or ArtifactRepository.default(directories)
        self.datastore: Datastore = open_datastore(config.datastore_url)
        self.filestore = Filestore(Path(config.filestore_dir), config.min_free_bytes)
        self.connections = ConnectionRegistry()
        self.events = ServerEvents()
        self.collections = CollectionService(
            self.datastore,
            self.repository,
            self.connections,
            default_timeout=config.flows.timeout,
            default_progress_timeout=config.flows.progress_timeout,
        )
        self.ingestor = Ingestor(self.datastore, self.filestore)
        self.monitor = FlowMonitor(self)
        self.client_index = ClientIndex()
        self.hunts = HuntManager(self)
        self.hunt_results = HuntResults(self.datastore, self.filestore)
        self.accounts = Accounts(self.datastore)
        self.audit = AuditLog(self.datastore.audit, default_audit_path(config.data_dir))
        self._listener: WebSocketServer | None = None
        self._api: ApiServer | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._hunt_task: asyncio.Task[None] | None = None
        self.port: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        shrink_tls_read_buffers()  # a frontend holds thousands of idle TLS connections
        self._listener = await serve(
            self._handle,
            self.config.bind_address,
            self.config.port,
            ssl=server_ssl_context(self.config),
            max_size=MAX_MESSAGE_BYTES,
            process_request=self._check_path,
            ping_interval=60,
            ping_timeout=120,
            close_timeout=5,
            compression=None,
        )
        sockets = list(self._listener.sockets)
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        if self.config.api_port:
            self._api = ApiServer(self)
            await self._api.start()
        self._monitor_task = asyncio.create_task(self.monitor.run())
        await self._load_client_index()
        await self.hunts.load()
        self._hunt_task = asyncio.create_task(self.hunts.run(load=False))
        log.info("listening for agents on %s:%s", self.config.bind_address, self.port)

    async def _load_client_index(self) -> None:
        after: str | None = None
        while True:
            page = await asyncio.to_thread(self.datastore.clients.all_for_index, after, 5000)
            self.client_index.load(page)
            if len(page) < 5000:
                return
            after = page[-1].client_id

    @property
    def api_port(self) -> int | None:
        return self._api.port if self._api is not None else None

    async def stop(self) -> None:
        if self._api is not None:
            await self._api.stop()
        if self._listener is not None:
            self._listener.close()
        await self.connections.shutdown()
        if self._listener is not None:
            await self._listener.wait_closed()
        for task in (self._monitor_task, self._hunt_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.hunts.close()
        self.datastore.close()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path != AGENT_PATH:
            return connection.respond(404, "agents connect to /agent\n")
        if not self.connections.accepting:
            return connection.respond(503, "shutting down\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        session = AgentSession(self, ws)
        task = asyncio.current_task()
        if task is not None:
            self.connections.track(task)
        await session.run()

    # -- services -----------------------------------------------------------------------------

    async def collect(
        self,
        client_id: str,
        artifacts: Iterable[tuple[str, Mapping[str, Any]]],
        creator: str,
        permissions: frozenset[str] = ALL_PERMISSIONS,
        limits: Limits | None = None,
    ) -> FlowRecord:
        record = await self.collections.create(client_id, artifacts, creator, permissions, limits)
        self.events.flow_changed(record.flow_id)
        return record

    async def wait_for_flow(
        self, flow_id: str, states: Iterable[str], timeout: float = 60.0
    ) -> FlowRecord:
        wanted = set(states)

        async def check() -> FlowRecord | None:
            record = await asyncio.to_thread(self.datastore.collections.get, flow_id)
            return record if record is not None and record.state in wanted else None

        return await self.events.wait_for(check, timeout)

    async def interrogate(self, client_id: str) -> None:
        """Collect the client-info artifact; its result fills the client record."""
        if self.repository.find(INTERROGATION) is None:
            log.warning("no %s artifact: clients are not interrogated", INTERROGATION)
            return
        await self.collect(client_id, [(INTERROGATION, {})], creator=INTERROGATOR)

    async def flow_finished(self, client_id: str, flow_id: str) -> None:
        record = await asyncio.to_thread(self.datastore.collections.get, flow_id)
        if record is None or record.creator != INTERROGATOR or record.state != "Finished":
            return
        info = await asyncio.to_thread(self._apply_interrogation, client_id, flow_id)
        self.events.flow_changed(flow_id)
        if info is not None:
            # The OS is known now: hunts that target it may apply to this client.
            await self.hunts.client_changed(
                client_id,
                os=info["os"],
                hostname=info["hostname"],
                ip_addresses=info["ip_addresses"],
            )

    async def client_connected(self, client_id: str, seen_hunts: Iterable[str] = ()) -> None:
        """A client checked in: it gets every running hunt it matches and has not had."""
        if client_id not in self.client_index.clients:
            record = await asyncio.to_thread(self.datastore.clients.get, client_id)
            if record is not None:
                self.client_index.update(
                    client_id, record.labels, record.os, record.hostname, record.ip_addresses
                )
        self.client_index.update(client_id, last_seen=time.time())
        await self.hunts.client_checked_in(client_id, seen_hunts)

    async def label(
        self, client_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> list[str]:
        """Change a client's labels; a hunt that now matches it is scheduled on it."""
        labels: list[str] = []
        if add:
            labels = await asyncio.to_thread(
                self.datastore.clients.add_labels, client_id, list(add)
            )
        if remove:
            labels = await asyncio.to_thread(
                self.datastore.clients.remove_labels, client_id, list(remove)
            )
        await self.hunts.client_changed(client_id, labels=labels)
        return labels

    def _apply_interrogation(self, client_id: str, flow_id: str) -> dict[str, Any] | None:
        host = self.filestore.read_rows(client_id, flow_id, INTERROGATION, "host", 0, 1)
        users = self.filestore.read_rows(client_id, flow_id, INTERROGATION, "users", 0, 10_000)
        if not host:
            return None
        facts = dict(host[0])
        info = {
            "hostname": facts.get("hostname"),
            "fqdn": facts.get("fqdn"),
            "os": facts.get("os"),
            "release": facts.get("platform_version") or facts.get("platform_name"),
            "kernel": facts.get("kernel_release"),
            "arch": facts.get("arch"),
            "ip_addresses": _json_list(facts.get("ip_addresses")),
            "mac_addresses": _json_list(facts.get("mac_addresses")),
            "users": [u["username"] for u in users if u.get("username")],
            "agent_version": facts.get("agent_version"),
            "boot_time": facts.get("boot_time"),
        }
        self.datastore.clients.set_info(client_id, info, time.time())
        return info


def _json_list(value: Any) -> list[str]:
    import json

    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return [value]
        return [str(v) for v in parsed] if isinstance(parsed, list) else [value]
    return []
