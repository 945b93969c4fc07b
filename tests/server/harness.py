"""Real servers and agents for tests: throw-away deployments on free loopback ports.

In-process: ``running_server`` / ``running_agent`` (async context managers) for behaviour;
``RawAgent`` for a connection whose frames the test writes itself.
Out of process: ``ServerProcess`` / ``AgentProcess`` (``python -m peregrine ...``) for the
kill -9 tests. Both use real TLS with a deployment CA made for the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import msgspec
import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from peregrine.agent.agent import Agent
from peregrine.agent.identity import Identity
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.cluster import processes
from peregrine.config import (
    ClientConfig,
    GeneratedConfig,
    ServerConfig,
    client_ssl_context,
    generate,
    write_client_config,
)
from peregrine.datastore import FlowRecord
from peregrine.protocol.messages import (
    Challenge,
    CollectionRequest,
    Hello,
    Welcome,
    decode_from_server,
    encode,
)
from peregrine.server.app import Server
from peregrine.services.collections import CollectionService, Limits


def free_port() -> int:
    """A loopback port free now, below the range the kernel gives outgoing connections, and
    not given to this test process lately (``processes.free_port``)."""
    return processes.free_port()


def make_deployment(directory: Path) -> GeneratedConfig:
    port = free_port()
    return generate(
        directory, [f"wss://127.0.0.1:{port}/agent"], port=port, api_port=free_port(), force=True
    )


def agent_config(deployment: GeneratedConfig, home: Path, **changes: object) -> ClientConfig:
    """A client config whose identity and spool live in ``home`` (one per simulated host)."""
    return msgspec.structs.replace(
        deployment.client,
        writeback_path=str(home / "writeback.yaml"),
        spool_dir=str(home / "spool"),
        poll_min=0.2,
        poll_max=1.0,
        **changes,
    )


@contextlib.asynccontextmanager
async def running_server(deployment: GeneratedConfig) -> AsyncIterator[Server]:
    server = Server(deployment.server)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def running_agent(
    config: ClientConfig, connect_timeout: float = 20.0
) -> AsyncIterator[Agent]:
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.wait_for(agent.connected.wait(), connect_timeout)
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        agent.close()


async def wait_until(check, timeout: float = 30.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll ``check()`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


class Process:
    """A ``python -m peregrine`` child that a test can kill -9 and start again."""

    def __init__(self, args: list[str], log: Path, python: list[str] | None = None) -> None:
        self.args = args
        self.log = log
        #: The interpreter (and its options) that runs it: this test's by default.
        self.python = python or [sys.executable]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            [*self.python, "-m", "peregrine", *self.args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        out.close()

    def kill(self) -> None:
        """kill -9, of the whole process group (query workers too)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def server_process(deployment: GeneratedConfig, log: Path) -> Process:
    return Process(
        ["server", "--config", str(deployment.server_config_path), "--no-local-agent"], log
    )


def workers_process(deployment: GeneratedConfig, log: Path, workers: int = 2) -> Process:
    """``peregrine server --workers N`` (not started), logging warnings and worse."""
    return Process(
        ["server", "--config", str(deployment.server_config_path), "--no-local-agent",
         "--workers", str(workers), "--log-level", "WARNING"],
        log,
    )  # fmt: skip


def agent_process(config: ClientConfig, path: Path, log: Path) -> Process:
    write_client_config(config, path)
    return Process(["agent", "--config", str(path)], log)


@contextlib.contextmanager
def served(deployment: GeneratedConfig, log: Path, *options: str) -> Iterator[tuple[Process, str]]:
    """``peregrine server`` (with ``options``, e.g. ``--workers 2``) as a child process, once
    both its ports answer (with ``--workers N``, once every one of the N processes listens on
    both); with the token of the administrator it made for this machine's CLI. Stopped
    afterwards; a failure inside the block carries the server's log."""
    from peregrine.cli.local_login import login_path, read_local_login

    cfg = deployment.server
    server = Process(
        ["server", "--config", str(deployment.server_config_path), "--no-local-agent", *options],
        log,
    )
    workers = int(options[options.index("--workers") + 1]) if "--workers" in options else 1
    server.start()
    try:
        deadline = time.monotonic() + 60
        while not (port_open(cfg.port) and port_open(cfg.api_port)):
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        if workers > 1:
            # The ports answer once one worker listens; agents that connect before the others
            # do all land on that one, and stay (they keep their connection).
            assert server.proc is not None
            ports = (cfg.port, cfg.api_port)
            while listening_workers(server.proc.pid, ports) < workers:
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.05)
        login = read_local_login(login_path(Path(cfg.data_dir)))
        assert login is not None, server.output()
        try:
            yield server, login.token
        except BaseException as exc:
            exc.add_note(f"server log (last 5,000 characters):\n{server.output()[-5000:]}")
            raise
    finally:
        server.stop()


def listening_workers(supervisor: int, ports: tuple[int, ...]) -> int:
    """How many of ``supervisor``'s child processes listen on every one of ``ports``."""
    count = 0
    for worker in psutil.Process(supervisor).children():
        with contextlib.suppress(psutil.Error):
            bound = {c.laddr.port for c in worker.net_connections("tcp") if c.status == "LISTEN"}
            count += bound.issuperset(ports)
    return count


def api_client(deployment: GeneratedConfig, token: str) -> httpx.Client:
    """The REST API of a deployment's server, as the holder of ``token``."""
    cfg = deployment.server
    return httpx.Client(
        base_url=f"https://127.0.0.1:{cfg.api_port}/api/v1",
        verify=ssl.create_default_context(cafile=cfg.ca_cert_path),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def first_client(api: httpx.Client, agent: Process, timeout: float = 60) -> str:
    """The id of the first client to enroll (waiting for it); the agent's log if none does."""
    deadline = time.monotonic() + timeout
    while True:
        page = api.get("/clients").json()
        items = page["items"] if isinstance(page, dict) else page
        if items:
            return str(items[0]["client_id"])
        assert time.monotonic() < deadline, f"the agent did not enroll: {agent.output()[-3000:]}"
        time.sleep(0.3)


def query_workers(agent: Agent | None = None) -> list[psutil.Process]:
    """The query workers this process started (an agent runs in it) that hold a query: the
    agent's spares, waiting warm for one, are left out."""
    children = psutil.Process().children(recursive=True)
    spares = set(agent.spare_pids()) if agent is not None else set()  # after: a new one's known
    return [
        p
        for p in children
        if "peregrine.engine.worker" in " ".join(p.cmdline()) and p.pid not in spares
    ]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# -- fault tests: custom servers, test artifacts, flows with chosen batching ------------------


@contextlib.asynccontextmanager
async def running_server_with(
    config: ServerConfig, repository: ArtifactRepository | None = None
) -> AsyncIterator[Server]:
    """Like ``running_server``, with a changed configuration or artifact repository."""
    server = Server(config, repository=repository)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def repository_with(*texts: str) -> ArtifactRepository:
    """The built-in artifacts (no ForensicArtifacts, for speed) plus test artifacts (YAML)."""
    repository = ArtifactRepository.default(forensic=False)
    loaded = repository.load_texts([(f"test:{i}", text) for i, text in enumerate(texts)])
    assert loaded and not repository.problems, repository.problems
    return repository


def schedule_flow(
    service: CollectionService,
    client_id: str,
    artifacts: list[tuple[str, dict[str, object]]],
    *,
    batch_rows: int = 1000,
    batch_seconds: float = 1.0,
    limits: Limits | None = None,
) -> tuple[FlowRecord, bytes]:
    """Validate and durably store a collection whose rows come in batches of ``batch_rows``.

    Works on any datastore the service holds, including the one a server *process* uses: that
    server delivers the stored task when the agent next connects. Returns the record and the
    request to push to a connected agent (``server.connections.send``)."""
    record, payload = service.prepare(client_id, artifacts, "test", limits=limits)
    request = decode_from_server(payload)
    assert isinstance(request, CollectionRequest)
    payload = encode(
        msgspec.structs.replace(request, batch_rows=batch_rows, batch_seconds=batch_seconds)
    )
    service.store(record, payload)
    return record, payload


async def start_flow(
    server: Server,
    client_id: str,
    artifacts: list[tuple[str, dict[str, object]]],
    **options: object,
) -> FlowRecord:
    """``schedule_flow`` on an in-process server, then push it to the agent if connected."""
    record, payload = await asyncio.to_thread(
        schedule_flow,
        server.collections,
        client_id,
        artifacts,
        **options,  # type: ignore[arg-type]
    )
    await server.connections.send(client_id, payload)
    server.events.flow_changed(record.flow_id)
    return record


class RawAgent:
    """A hand-driven agent connection: a real identity and handshake, then whatever frames the
    test sends."""

    def __init__(self, deployment: GeneratedConfig, identity: Identity) -> None:
        self.deployment = deployment
        self.identity = identity
        self.ws: ClientConnection | None = None

    async def __aenter__(self) -> RawAgent:
        client = self.deployment.client
        self.ws = await connect(client.server_urls[0], ssl=client_ssl_context(client))
        challenge = decode_from_server(await self.ws.recv())
        assert isinstance(challenge, Challenge)
        client_id = self.identity.client_id
        hello = Hello(
            client_id=client_id,
            public_key=self.identity.public_key_bytes,
            signature=self.identity.sign(challenge.nonce + client_id.encode()),
            agent_version="raw",
            enrollment_secret=client.enrollment_secret,
        )
        await self.ws.send(encode(hello))
        welcome = decode_from_server(await self.ws.recv())
        assert isinstance(welcome, Welcome), welcome
        self.welcome = welcome
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.ws is not None
        await self.ws.close()

    async def send(self, frame: bytes | str) -> None:
        assert self.ws is not None
        await self.ws.send(frame)

    async def closed(self, timeout: float = 15.0) -> ConnectionClosed:
        """Read (and drop) what the server sends until it closes the connection."""
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self.ws.recv()
                except ConnectionClosed as closed:
                    return closed
