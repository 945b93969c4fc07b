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
import ssl
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
from peregrine.protocol.messages import (
    MAX_MESSAGE_BYTES,
    CancelCollection,
    ProtocolError,
    decode_from_server,
)
from peregrine.server.api_server import ApiServer
from peregrine.server.bus import Bus
from peregrine.server.client_admin import forget_locally
from peregrine.server.cluster import make_bus, make_leader, make_presence
from peregrine.server.connections import ConnectionRegistry
from peregrine.server.hunts import HuntManager
from peregrine.server.ingest import Ingestor
from peregrine.server.leader import Leader
from peregrine.server.monitor import FlowMonitor
from peregrine.server.prelogin import limited
from peregrine.server.presence import PRESENCE_KINDS, Presence
from peregrine.server.readiness import HEALTH_PATHS, Readiness, answer_on_agent_port
from peregrine.server.seen import SeenWriter
from peregrine.server.session import AgentSession
from peregrine.services.client_index import ClientIndex
from peregrine.services.collections import CollectionService, Limits
from peregrine.services.events import ServerEvents
from peregrine.services.hunt_results import HuntResults

log = logging.getLogger(__name__)

AGENT_PATH = "/agent"
INTERROGATION = "Generic.Client.Info"
INTERROGATOR = "server:interrogation"
#: Every agent is pinged this often; one whose pong has not come after PING_TIMEOUT is closed.
PING_INTERVAL = 60.0
#: Connections the kernel queues before they are accepted (capped by net.core.somaxconn).
LISTEN_BACKLOG = 4096
PING_TIMEOUT = 120.0


class Server:
    """One frontend process. With ``workers`` > 1 it is one of several on this host: they share
    the listening ports (SO_REUSEPORT), the datastore and the filestore, talk over a Unix-socket
    bus, and one of them (``leader``) does the singleton work. With a ``bus_url`` it is one
    frontend of a cluster (Redis bus and presence, PostgreSQL advisory lock): ``cluster.py``."""

    def __init__(
        self,
        config: ServerConfig,
        repository: ArtifactRepository | None = None,
        workers: int = 1,
    ) -> None:
        self.config = config
        self.workers = workers
        self.bus: Bus = make_bus(config, workers)
        self.leader: Leader = make_leader(config, workers)
        self.enrollment_secret = config.enrollment_secret
        # Custom artifacts added through the API live in <data_dir>/artifacts.
        custom = Path(config.data_dir) / "artifacts"
        directories = configured_directories([custom] if custom.is_dir() else [])
        self.repository = repository or ArtifactRepository.default(directories)
        self.datastore: Datastore = open_datastore(config.datastore_url)
        self.filestore = Filestore(Path(config.filestore_dir), config.min_free_bytes)
        self.connections = ConnectionRegistry(PING_INTERVAL, PING_TIMEOUT, config.limits)
        self.seen = SeenWriter(self.datastore.clients)
        #: This process's clients coming and going, told to the others; theirs, as last heard.
        self.presence: Presence = make_presence(config, self.bus)
        self.events = ServerEvents()
        self.readiness = Readiness(self)
        self.ingestor = Ingestor(
            self.datastore, self.filestore, max_upload_bytes=config.limits.max_upload_bytes
        )
        self.collections = CollectionService(
            self.datastore,
            self.repository,
            self.push,
            default_timeout=config.flows.timeout,
            default_progress_timeout=config.flows.progress_timeout,
            created=lambda flow: self.ingestor.expect(flow.flow_id, flow.client_id),
            default_expiry=config.flows.scheduled_expiry,
        )
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
        await self.bus.start(self._on_notice)
        await self.leader.start()
        self._listener = await serve(
            self._handle,
            self.config.bind_address,
            self.config.port,
            ssl=self._agent_tls(),
            max_size=MAX_MESSAGE_BYTES,
            # Strangers may send only a few bytes until they log in (AgentSession).
            create_connection=limited(self.config.limits.handshake_bytes),
            process_request=self._check_path,
            ping_interval=None,  # self.connections.keepalive: one task, not one each
            close_timeout=5,
            compression=None,
            reuse_port=self.workers > 1,
            # asyncio's default of 100 pending connections drops SYNs when thousands of
            # agents come back at once (after a restart): they then wait 1, 3, 7 s to retry.
            backlog=LISTEN_BACKLOG,
        )
        sockets = list(self._listener.sockets)
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        if self.config.api_port:
            self._api = ApiServer(self)
            await self._api.start()
        self._monitor_task = asyncio.create_task(self.monitor.run())
        await self.presence.start(self.connections.client_ids, self._appeared)
        await self._load_client_index()
        await self.hunts.load()
        self._hunt_task = asyncio.create_task(self.hunts.run(load=False))
        log.info("listening for agents on %s:%s", self.config.bind_address, self.port)

    def _agent_tls(self) -> ssl.SSLContext:
        context = server_ssl_context(self.config)
        # Agents keep one connection and never resume a TLS session: the two session tickets
        # TLS 1.3 sends after every handshake would be CPU and bytes for nothing.
        context.num_tickets = 0
        return context

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
        """Drain, then stop (``config.drain``). ``/readyz`` says "draining" at once; in a
        cluster the balancer is given time to take this frontend out of its pool before
        anything closes, then the agent listener stops and the agents' connections close a
        few at a time, each after what it was storing is acknowledged; the API stops last."""
        drain = self.config.drain
        started = time.monotonic()
        self.connections.accepting = False
        if self.config.bus_url and drain.balancer_seconds > 0:
            await asyncio.sleep(min(drain.balancer_seconds, drain.timeout / 2))
        if self._listener is not None:
            self._listener.close(close_connections=False)
        await self.connections.shutdown(
            timeout=max(1.0, drain.timeout - (time.monotonic() - started)),
            spread=drain.agents_seconds if self.config.bus_url else 0.0,
        )
        if self._listener is not None:
            await self._listener.wait_closed()
        log.info("drained in %.1f s", time.monotonic() - started)
        if self._api is not None:
            await self._api.stop()
        for task in (self._monitor_task, self._hunt_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.hunts.close()
        await asyncio.to_thread(self.ingestor.close)
        await self.presence.close()
        await self.seen.close()
        await self.bus.close()
        await self.leader.close()
        self.datastore.close()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    async def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path in HEALTH_PATHS:  # the balancer's check of the agent port
            return await answer_on_agent_port(self.readiness, connection, request.path)
        if request.path != AGENT_PATH:
            return connection.respond(404, "agents connect to /agent\n")
        if not self.connections.accepting:
            return connection.respond(503, "shutting down\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        # websockets keeps the opening handshake's request and response for the connection's
        # life; nothing reads their headers after it (3.5 KB an agent).
        if ws.request is not None:
            ws.request.headers.clear()
        if ws.response is not None:
            ws.response.headers.clear()
        session = AgentSession(self, ws)
        task = asyncio.current_task()
        if task is not None:
            self.connections.track(task)
        self.connections.keepalive.hold(ws)
        try:
            await session.run()
        finally:
            self.connections.keepalive.release(ws)

    # -- several frontends ---------------------------------------------------------------------

    def is_online(self, client_id: str) -> bool:
        """Whether the client is connected here or (as last shared) to another frontend."""
        return client_id in self.connections or any(
            client_id in clients for clients in self.presence.remote()
        )

    def online(self) -> set[str]:
        """Every client connected to this server, in this process or another."""
        return set(self.connections.client_ids()).union(*self.presence.remote())

    def degraded(self) -> list[str]:
        """What does not work right now and why (the bus, presence, the leader election):
        empty when all is well. Each part recovers by itself."""
        parts = (self.bus, self.presence, self.leader)
        return [r for r in (getattr(part, "degraded_reason", None) for part in parts) if r]

    async def push(self, client_id: str, payload: bytes, stored: bool = True) -> bool:
        """Send to a client wherever it is connected. ``stored``: the payload is also a stored
        task, so another frontend can deliver it from the datastore; otherwise (a cancel) the
        payload itself travels on the bus. Addressed to the frontend that holds the client
        when presence knows it, to every frontend otherwise."""
        if await self.connections.send(client_id, payload):
            return True
        if self.bus.shared:
            holder = self.presence.holder(client_id)
            if stored:
                await self.bus.publish({"kind": "deliver", "client_id": client_id}, to=holder)
            else:
                notice = {"kind": "send", "client_id": client_id, "payload": payload.hex()}
                await self.bus.publish(notice, to=holder)
        return False

    async def _appeared(self, clients: list[str]) -> None:
        """Clients seen on another frontend: one enrolled there is not in our index yet."""
        for client_id in clients:
            if client_id not in self.client_index.clients:
                await self._reindex(client_id)

    async def _reindex(self, client_id: str) -> None:
        record = await asyncio.to_thread(self.datastore.clients.get, client_id)
        if record is None:  # deleted (server/client_admin.py)
            await forget_locally(self, client_id)
        else:
            self.client_index.update(
                client_id, record.labels, record.os, record.hostname, record.ip_addresses,
                record.last_seen,
            )  # fmt: skip

    async def announce(self, kind: str, **fields: Any) -> None:
        """Tell the other processes (client changed, hunt started or stopped)."""
        await self.bus.publish({"kind": kind, **fields})

    async def _on_notice(self, notice: dict[str, Any]) -> None:
        kind, client_id = notice.get("kind"), str(notice.get("client_id", ""))
        if kind == "deliver" and client_id in self.connections:
            session = self.connections.get(client_id)
            if isinstance(session, AgentSession):
                await session.deliver_pending()
        elif kind == "send" and client_id in self.connections:
            payload = _cancel_only(notice.get("payload"))
            if payload is not None:
                await self.connections.send(client_id, payload)
        elif kind in PRESENCE_KINDS:
            await self.presence.on_notice(notice)
        elif kind == "client_changed":
            await self._reindex(client_id)
            if client_id in self.connections:
                await self.hunts.client_checked_in(client_id)
        elif kind == "hunt_started":
            await self.hunts.started_elsewhere(str(notice["hunt_id"]))
        elif kind == "hunt_stopped":
            self.hunts.stopped_elsewhere(str(notice["hunt_id"]))

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

    async def flow_finished(self, client_id: str, record: FlowRecord) -> None:
        """A flow's last message is stored: an interrogation's facts go into the client."""
        if record.creator != INTERROGATOR or record.state != "Finished":
            return
        flow_id = record.flow_id
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
            await self.announce("client_changed", client_id=client_id)

    async def client_connected(self, client_id: str, seen_hunts: Iterable[str] = ()) -> None:
        """A client checked in: it gets every running hunt it matches and has not had."""
        if client_id not in self.client_index.clients:
            await self._reindex(client_id)
        self.client_index.update(client_id, last_seen=time.time())
        await self._interrogate_if_never_done(client_id)
        await self.hunts.client_checked_in(client_id, seen_hunts)

    async def _interrogate_if_never_done(self, client_id: str) -> None:
        """Interrogate a client that never was (it left between its enrollment and its
        Welcome): otherwise it would never match a hunt that targets an OS."""
        entry = self.client_index.clients.get(client_id)
        if entry is None or entry.os is not None:
            return  # deleted meanwhile, or interrogated: no query at most check-ins
        record = await asyncio.to_thread(self.datastore.clients.get, client_id)
        if record is None or record.interrogated is not None:
            return
        pending = self.datastore.collections.has_in_flight
        if not await asyncio.to_thread(pending, client_id, INTERROGATOR):
            log.info("interrogating %s: it has not been interrogated yet", client_id)
            await self.interrogate(client_id)

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
        await self.announce("client_changed", client_id=client_id)
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


def _cancel_only(payload: Any) -> bytes | None:
    """A ``send`` notice's payload if it is a cancel (the only message that travels on the
    bus): whoever can write to the bus cannot make a frontend send an agent anything else."""
    try:
        data = bytes.fromhex(str(payload))
        message = decode_from_server(data)
    except (ValueError, ProtocolError):
        message = None
    if not isinstance(message, CancelCollection):
        log.warning("bus: ignoring a send notice that is not a cancel")
        return None
    return data


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
