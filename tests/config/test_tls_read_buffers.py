"""asyncio TLS connections reading into one buffer per thread (``shrink_tls_read_buffers``):
real TLS echo connections on 127.0.0.1 with the deployment PKI, several at once."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from peregrine.config import (
    GeneratedConfig,
    client_ssl_context,
    generate,
    load_client_config,
    load_server_config,
    server_ssl_context,
    shrink_tls_read_buffers,
)
from peregrine.config.tls import TLS_READ_BUFFER


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> GeneratedConfig:
    return generate(tmp_path_factory.mktemp("dep") / "conf", ["wss://127.0.0.1:8443/agent"])


@pytest.fixture
def shrunk() -> Iterator[int]:
    previous = shrink_tls_read_buffers()
    yield previous
    shrink_tls_read_buffers(previous)


async def echo_many(dep: GeneratedConfig, clients: int, size: int) -> list[bytearray]:
    """``clients`` TLS connections at once each send ``size`` random bytes to an echo server
    and read them back; returns the read buffer of every connection's two ends."""
    server_ctx = server_ssl_context(load_server_config(Path(dep.directory) / "server.yaml"))
    client_ctx = client_ssl_context(load_client_config(Path(dep.directory) / "client.yaml"))
    buffers: list[bytearray] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffers.append(writer.transport._ssl_protocol._ssl_buffer)  # type: ignore[attr-defined]
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def client() -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="127.0.0.1"
        )
        buffers.append(writer.transport._ssl_protocol._ssl_buffer)  # type: ignore[attr-defined]
        sent = os.urandom(size)

        async def send() -> None:
            for i in range(0, size, 7001):  # odd pieces: records and reads do not line up
                writer.write(sent[i : i + 7001])
                await writer.drain()

        sending = asyncio.create_task(send())
        received = await reader.readexactly(size)
        await sending
        assert received == sent
        # Every write went through the backlog, kept in a list instead of a deque.
        assert type(writer.transport._ssl_protocol._write_backlog) is list  # type: ignore[attr-defined]
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await asyncio.gather(*(client() for _ in range(clients)))
    return buffers


def test_connections_of_a_thread_share_one_read_buffer_and_data_stays_intact(
    deployment: GeneratedConfig, shrunk: int
) -> None:
    buffers = asyncio.run(echo_many(deployment, clients=8, size=300_000))
    assert len(buffers) == 16  # both ends of each connection
    assert all(b is buffers[0] for b in buffers)
    assert len(buffers[0]) == TLS_READ_BUFFER


def test_each_thread_has_its_own_read_buffer(deployment: GeneratedConfig, shrunk: int) -> None:
    here = asyncio.run(echo_many(deployment, clients=2, size=50_000))
    there: list[bytearray] = []
    thread = threading.Thread(
        target=lambda: there.extend(asyncio.run(echo_many(deployment, clients=2, size=50_000)))
    )
    thread.start()
    thread.join(60)
    assert len(here) == len(there) == 4
    assert all(b is there[0] for b in there)
    assert there[0] is not here[0]  # recv_into releases the GIL: threads must not share


def test_the_read_size_is_set_and_restored() -> None:
    previous = shrink_tls_read_buffers(4096)
    try:
        assert shrink_tls_read_buffers(8192) == 4096
        assert asyncio.sslproto.SSLProtocol.max_size == 8192
    finally:
        shrink_tls_read_buffers(previous)
    assert asyncio.sslproto.SSLProtocol.max_size == previous
