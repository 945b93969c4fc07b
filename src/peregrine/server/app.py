"""The frontend process and its composition root.

``Server`` composes one process: the datastore, the filestore, the bus, presence and leader
election (``cluster.py``), the services (``services/app.py``: collections, hunts, the monitor,
the client index), the frontend (the WebSocket-over-TLS listener for agents, their sessions and
ingestion) and the API (``api_server.py``). It is the services' ``Fleet``: they reach agents
through it. In the embedded mode this process is also the leader, so it runs the singleton work
(the monitor, hunt expiry) itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Coroutine, Iterable, Mapping
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
from peregrine.events.stream import EventStream
from peregrine.filestore import Filestore
from peregrine.metrics.loop_lag import sample_loop_lag
from peregrine.protocol.messages import (
    MAX_MESSAGE_BYTES,
    CancelCollection,
    ProtocolError,
    decode_from_server,
)
from peregrine.server.api_server import ApiServer
from peregrine.server.bus import RESYNC, Bus
from peregrine.server.cluster import make_bus, make_leader, make_presence
from peregrine.server.connections import ConnectionRegistry
from peregrine.server.event_ingest import EventIngestor
from peregrine.server.heap import HeapTrimmer
from peregrine.server.ingest import Ingestor
from peregrine.server.leader import Leader
from peregrine.server.prelogin import AgentConnection, limited
from peregrine.server.presence import PRESENCE_KINDS, Presence
from peregrine.server.readiness import HEALTH_PATHS, Readiness, answer_on_agent_port
from peregrine.server.resync import Resync
from peregrine.server.seen import SeenWriter
from peregrine.server.session import AgentSession
from peregrine.server.tls_socket import close_listener, tls_listener
from peregrine.services.app import Services
from peregrine.services.collections import Limits
from peregrine.services.event_monitoring import NOTICES as EVENT_NOTICES

log = logging.getLogger(__name__)

AGENT_PATH = "/agent"
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
        agent_socket: int | None = None,
    ) -> None:
        self.config = config
        self.workers = workers
        #: The agent port's listening socket the supervisor made for this worker (its fd).
        self.agent_socket = agent_socket
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
        #: Heap pages freed by bursts of handshakes, given back to the system (heap.py).
        self.heap = HeapTrimmer()
        #: This process's clients coming and going, told to the others; theirs, as last heard.
        self.presence: Presence = make_presence(config, self.bus)
        self.readiness = Readiness(self)
        #: After a bus outage: what the dropped notices were about, read from the datastore.
        self.resync = Resync(self)
        self.ingestor = Ingestor(
            self.datastore, self.filestore, max_upload_bytes=config.limits.max_upload_bytes
        )
        #: Event batches once stored here, for alert rules and live followers.
        self.event_stream = EventStream()
        self.services = Services(
            config, self.datastore, self.filestore, self.repository, fleet=self, leader=self.leader,
            stream=self.event_stream,
        )  # fmt: skip
        self.event_ingestor = EventIngestor(self.services.event_monitoring)
        # The services' parts by their own names, for the sessions, the CLI and the tests.
        self.events = self.services.events
        self.collections = self.services.collections
        self.monitor = self.services.monitor
        self.client_index = self.services.client_index
        self.hunts = self.services.hunts
        self.hunt_results = self.services.hunt_results
        self.accounts = Accounts(self.datastore)
        self.audit = AuditLog(self.datastore.audit, default_audit_path(config.data_dir))
        self._listener: WebSocketServer | None = None
        self._api: ApiServer | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._hunt_task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._heap_task: asyncio.Task[None] | None = None
        self.port: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        shrink_tls_read_buffers()  # the API's TLS connections (agents': tls_socket.py)
        await self.bus.start(self._on_notice)
        await self.leader.start()
        # Rules subscribe before any agent can send: no stored batch goes unmatched.
        await self.services.alerting.start(self.event_stream)
        # TLS on the socket itself (tls_socket.py): no SSLProtocol and BIOs per idle agent.
        listener = tls_listener(
            self._agent_tls(),
            self.config.bind_address,
            self.config.port,
            # asyncio's default of 100 pending connections drops SYNs when thousands of
            # agents come back at once (after a restart): they then wait 1, 3, 7 s to retry.
            backlog=LISTEN_BACKLOG,
            reuse_port=self.workers > 1,
            fileno=self.agent_socket,
        )
        self._listener = await serve(
            self._handle,
            sock=listener,
            max_size=MAX_MESSAGE_BYTES,
            # Strangers may send only a few bytes until they log in (AgentSession).
            create_connection=limited(self.config.limits.handshake_bytes),
            # The TLS handshake and the HTTP upgrade, then the login (AgentSession): each
            # within the handshake deadline.
            open_timeout=self.config.limits.handshake_timeout,
            process_request=self._check_path,
            ping_interval=None,  # self.connections.keepalive: one task, not one each
            close_timeout=5,
            compression=None,
        )
        sockets = list(self._listener.sockets)
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        if self.config.api_port:
            self._api = ApiServer(self)
            await self._api.start()
        self._monitor_task = asyncio.create_task(self.monitor.run())
        await self.presence.start(self.connections.client_ids, self.services.clients_appeared)
        await self.services.load_client_index()
        await self.hunts.load()
        self._hunt_task = asyncio.create_task(self.hunts.run(load=False))
        self._lag_task = asyncio.create_task(sample_loop_lag())
        self._heap_task = asyncio.create_task(self.heap.run())
        self._retention_task = asyncio.create_task(
            self.services.event_monitoring.run_retention(self.leader)
        )
        log.info("listening for agents on %s:%s", self.config.bind_address, self.port)

    def _agent_tls(self) -> ssl.SSLContext:
        context = server_ssl_context(self.config)
        # Agents keep one connection and never resume a TLS session: the two session tickets
        # TLS 1.3 sends after every handshake would be CPU and bytes for nothing.
        context.num_tickets = 0
        return context

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
            await close_listener(self._listener)
        await self.connections.shutdown(
            timeout=max(1.0, drain.timeout - (time.monotonic() - started)),
            spread=drain.agents_seconds if self.config.bus_url else 0.0,
        )
        if self._listener is not None:
            await self._listener.wait_closed()
        log.info("drained in %.1f s", time.monotonic() - started)
        if self._api is not None:
            await self._api.stop()
        tasks = (self._monitor_task, self._hunt_task, self._lag_task, self._retention_task)
        for task in (*tasks, self._heap_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.hunts.close()
        await asyncio.to_thread(self.ingestor.close)
        await asyncio.to_thread(self.event_ingestor.close)
        await self.services.alerting.close()
        await self.event_stream.close()
        await self.services.event_monitoring.close()
        await self.resync.close()
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

    def _handle(self, ws: ServerConnection) -> Coroutine[Any, Any, None]:
        """websockets' handler: the session's own coroutine, no frame of ours per agent."""
        if isinstance(ws, AgentConnection):
            ws.forget_handshake()
        return AgentSession(self, ws).run()

    # -- the services' Fleet (services/fleet.py) -----------------------------------------------

    def holds(self, client_id: str) -> bool:
        """Whether the client is connected to this process."""
        return client_id in self.connections

    def held_here(self) -> list[str]:
        """The clients connected to this process."""
        return list(self.connections.client_ids())

    def expect(self, flow_id: str, client_id: str) -> None:
        """A flow was stored for the client: the ingestor knows whose it is without a query."""
        self.ingestor.expect(flow_id, client_id)

    async def disconnect(self, client_id: str, reason: str) -> None:
        """Close the client's connection to this process, if it has one."""
        connection = self.connections.get(client_id)
        if connection is not None:
            await connection.close(1000, reason)

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

    async def announce(self, kind: str, **fields: Any) -> None:
        """Tell the other processes (client changed, hunt started or stopped)."""
        await self.bus.publish({"kind": kind, **fields})

    async def _on_notice(self, notice: dict[str, Any]) -> None:
        kind, client_id = notice.get("kind"), str(notice.get("client_id", ""))
        if kind == "deliver":
            session = self.connections.get(client_id)
            if isinstance(session, AgentSession):
                await session.deliver_pending()
            elif session is None:
                self.connections.missed(client_id)
        elif kind == "send":
            payload = _cancel_only(notice.get("payload"))
            if client_id not in self.connections:
                self.connections.missed(client_id)  # a login's kept tasks are stale now
            elif payload is not None:
                await self.connections.send(client_id, payload)
        elif kind in PRESENCE_KINDS:
            await self.presence.on_notice(notice)
        elif kind == "client_changed":
            await self.services.client_changed_elsewhere(client_id)
        elif kind == "hunt_started":
            await self.hunts.started_elsewhere(str(notice["hunt_id"]))
        elif kind == "hunt_stopped":
            self.hunts.stopped_elsewhere(str(notice["hunt_id"]))
        elif kind in EVENT_NOTICES:
            await self.services.event_monitoring.on_notice(notice)
        elif kind == RESYNC:
            self.resync.request()

    # -- the services, for scripts and tests that hold a Server ------------------------------

    async def collect(
        self,
        client_id: str,
        artifacts: Iterable[tuple[str, Mapping[str, Any]]],
        creator: str,
        permissions: frozenset[str] = ALL_PERMISSIONS,
        limits: Limits | None = None,
    ) -> FlowRecord:
        return await self.services.collect(client_id, artifacts, creator, permissions, limits)

    async def wait_for_flow(
        self, flow_id: str, states: Iterable[str], timeout: float = 60.0
    ) -> FlowRecord:
        return await self.services.wait_for_flow(flow_id, states, timeout)

    async def label(
        self, client_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> list[str]:
        return await self.services.label(client_id, add, remove)


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
