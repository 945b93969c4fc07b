"""The agent listener's TLS on the socket itself (``server/tls_socket.py``): websockets over
asyncio's plain socket transport on a non-blocking ``SSLSocket``, with real TLS both ways."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server as WebSocketServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedOK

from peregrine.config import GeneratedConfig, client_ssl_context, server_ssl_context
from peregrine.config.model import AgentLimits
from peregrine.server.tls_socket import NonBlockingTLSSocket, close_listener, tls_listener
from tests.server.harness import (
    agent_config,
    make_deployment,
    running_agent,
    running_server,
    running_server_with,
)

MiB = 1024 * 1024


@contextlib.asynccontextmanager
async def echo_server(deployment: GeneratedConfig) -> AsyncIterator[tuple[WebSocketServer, str]]:
    """websockets' server on a ``tls_listener``, echoing every message; closes on "close"."""

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            if message == "close":
                await ws.close(1000, "bye")
            else:
                await ws.send(message)

    listener = tls_listener(server_ssl_context(deployment.server), "127.0.0.1", 0, 100)
    server = await serve(echo, sock=listener, max_size=8 * MiB, compression=None)
    port = listener.getsockname()[1]
    try:
        yield server, f"wss://127.0.0.1:{port}/"
    finally:
        server.close()
        await server.wait_closed()


def client(deployment: GeneratedConfig, url: str, **options: Any) -> Any:
    return connect(url, ssl=client_ssl_context(deployment.client), compression=None, **options)


def test_agents_connections_are_tls_sockets_under_asyncios_plain_transport(
    tmp_path: Path,
) -> None:
    """A real agent logs in over the frontend's listener, and its connection's transport reads
    a ``NonBlockingTLSSocket`` (OpenSSL on the socket), not asyncio's TLS with memory BIOs."""
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(agent_config(deployment, tmp_path / "agent")) as agent:
                session = server.connections.get(agent.client_id)
                assert session is not None
                transport = session.ws.transport  # type: ignore[attr-defined]
                assert transport.get_extra_info("ssl_object") is None  # no SSLProtocol
                assert isinstance(transport._sock, NonBlockingTLSSocket)
                assert transport._sock.version() == "TLSv1.3"

    asyncio.run(scenario())


def test_large_messages_both_ways_while_the_socket_is_full(tmp_path: Path) -> None:
    """Messages of 1 byte to 5 MiB come back intact and in order, though the client reads
    nothing until all are sent (the server's writes wait on a full socket, then resume)."""
    deployment = make_deployment(tmp_path / "deploy")
    sizes = [1, 100, 16 * 1024 - 1, 16 * 1024 + 1, 70_000, 5 * MiB, 3, 1 * MiB]
    messages = [os.urandom(size) for size in sizes]

    async def scenario() -> list[bytes]:
        async with echo_server(deployment) as (_, url):
            async with client(deployment, url, max_size=8 * MiB) as ws:
                for message in messages:
                    await ws.send(message)
                async with asyncio.timeout(60):
                    return [await ws.recv() for _ in messages]

    assert asyncio.run(scenario()) == messages


def test_close_handshake_from_either_side(tmp_path: Path) -> None:
    """The server's close reaches the agent with its code and reason; the agent's close ends
    the server's connection as a clean close (1000), not an abort."""
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> tuple[Any, Any, Any]:
        async with echo_server(deployment) as (server, url):
            async with client(deployment, url) as ws:
                await ws.send("close")
                async with asyncio.timeout(30):
                    await ws.wait_closed()
                by_server = (ws.close_code, ws.close_reason)
            closed: list[ServerConnection] = []
            async with client(deployment, url) as ws2:
                await ws2.send("ping")
                assert await ws2.recv() == "ping"
                closed = list(server.connections)
            async with asyncio.timeout(30):
                await closed[0].wait_closed()
            return by_server, closed[0].close_code, closed[0].close_reason

    by_server, code, reason = asyncio.run(scenario())
    assert by_server == (1000, "bye")
    assert (code, reason) == (1000, "")


def test_garbage_instead_of_tls_is_dropped_and_the_listener_keeps_serving(
    tmp_path: Path,
) -> None:
    """Plain HTTP sent to the TLS port gets the connection closed; the next agent is served."""
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> bytes:
        async with echo_server(deployment) as (_, url):
            port = int(url.rsplit(":", 1)[1].strip("/"))
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(30):
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read() == b""
            writer.close()
            ws: ClientConnection
            async with client(deployment, url) as ws:
                await ws.send(b"still here")
                answer = await ws.recv()
                assert isinstance(answer, bytes)
                with contextlib.suppress(ConnectionClosedOK):
                    await ws.close()
                return answer

    assert asyncio.run(scenario()) == b"still here"


def test_a_connection_reset_before_it_is_accepted_is_closed_at_once(tmp_path: Path) -> None:
    """An agent killed while its connection waits in the backlog: ``accept`` closes it and
    says "nothing to accept" (it used to leave an unclosed socket to the garbage collector,
    a ResourceWarning that fails the test)."""
    context = server_ssl_context(make_deployment(tmp_path / "deploy").server)
    with tls_listener(context, "127.0.0.1", 0, backlog=8) as listener:
        with socket.create_connection(listener.getsockname()) as peer:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.1)  # closed with a reset, which reaches the queued connection
        with pytest.raises(BlockingIOError):
            listener.accept()
        gc.collect()  # nothing left unclosed


@pytest.mark.timeout(120)
def test_closing_the_listener_while_agents_connect_leaves_no_socket_unclosed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener closed while connections pour in (a frontend stopping as its fleet comes
    back): every connection it accepted is closed by the time it has closed, none is left to
    the garbage collector. Before ``close_listener``, a connection accepted in the step before
    the close lost its transport to asyncio's ``Server._attach`` assertion; 3 stops in 10
    leaked, so this stops 10 times (one CI run failed on such a leak)."""
    context = server_ssl_context(make_deployment(tmp_path / "deploy").server)
    leaked: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: leaked.append(repr(u.object)))

    async def ignore(ws: ServerConnection) -> None:
        await ws.wait_closed()

    def hammer(port: int, stop: threading.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()

    async def one_stop() -> None:
        listener = tls_listener(context, "127.0.0.1", 0, 1024)
        server = await serve(ignore, sock=listener, open_timeout=5)
        stop = threading.Event()
        threads = [
            threading.Thread(target=hammer, args=(listener.getsockname()[1], stop))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        try:
            await asyncio.sleep(0.2)
            await close_listener(server)
            await server.wait_closed()
        finally:
            stop.set()
            for thread in threads:
                thread.join()

    for _ in range(10):
        asyncio.run(one_stop())
        gc.collect()
    assert leaked == []


def test_a_connection_that_never_starts_tls_is_closed_at_the_handshake_deadline(
    tmp_path: Path,
) -> None:
    """The TLS handshake now runs inside websockets' opening time-out, which the frontend sets
    to ``limits.handshake_timeout``: a TCP connection that sends nothing is closed then (it
    was asyncio's 60 s TLS handshake time-out)."""
    deployment = make_deployment(tmp_path / "deploy")
    config = msgspec.structs.replace(deployment.server, limits=AgentLimits(handshake_timeout=1.0))

    async def scenario() -> tuple[float, bytes]:
        async with running_server_with(config) as server:
            assert server.port is not None
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            started = time.monotonic()
            async with asyncio.timeout(30):
                try:
                    data = await reader.read()
                except ConnectionResetError:
                    data = b""
            writer.close()
            return time.monotonic() - started, data

    elapsed, data = asyncio.run(scenario())
    assert data == b""
    assert 0.8 < elapsed < 5.0, elapsed
