"""One keepalive task for every websocket: pings at the interval, waits for the pong, closes a
silent connection with 1011; real websockets servers and raw clients that answer pings or not."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from peregrine.protocol.keepalive import Keepalive
from peregrine.server.prelogin import limited

INTERVAL, TIMEOUT, TICK = 0.2, 0.4, 0.05


class RawClient:
    """A websocket client on a bare TCP stream: sees every frame the server sends, and answers
    pings only when told to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pings: list[float] = []
        self.close_code: int | None = None
        self.close_reason = ""

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def run(self, answer: bool) -> None:
        """Read frames until the server closes; pong each ping if ``answer``."""
        while True:
            try:
                first, second = await self.reader.readexactly(2)
            except asyncio.IncompleteReadError:
                return
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            payload = await self.reader.readexactly(length)
            opcode = first & 0x0F
            if opcode == 0x9:
                self.pings.append(time.monotonic())
                if answer:
                    self.send(0xA, payload)
            elif opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0]
                self.close_reason = payload[2:].decode()
                self.send(0x8, payload[:2])
                return

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def with_server(
    keepalive: Keepalive,
    scenario: Callable[[int], Awaitable[None]],
    create_connection: Any = None,
) -> None:
    """A websockets server whose connections ``keepalive`` holds, for ``scenario(port)``;
    with ``create_connection`` (e.g. the agent listener's ``limited``), of that class."""

    async def handler(ws: ServerConnection) -> None:
        keepalive.hold(ws)
        try:
            await ws.wait_closed()
        finally:
            keepalive.release(ws)

    extra = {"create_connection": create_connection} if create_connection else {}
    async with serve(
        handler, "127.0.0.1", 0, ping_interval=None, close_timeout=1, **extra
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        await scenario(port)
    await keepalive.stop()


def test_an_answering_connection_is_pinged_every_interval_and_stays() -> None:
    keepalive = Keepalive(INTERVAL, TIMEOUT, TICK)
    client: RawClient | None = None

    async def scenario(port: int) -> None:
        nonlocal client
        client = await RawClient.connect(port)
        reading = asyncio.create_task(client.run(answer=True))
        await asyncio.sleep(INTERVAL * 6)
        assert not reading.done()  # still connected
        assert len(keepalive) == 1
        await client.close()
        await asyncio.wait_for(reading, 5)

    asyncio.run(with_server(keepalive, scenario))
    assert client is not None and client.close_code is None
    assert 4 <= len(client.pings) <= 7, client.pings
    gaps = [b - a for a, b in zip(client.pings, client.pings[1:], strict=False)]
    assert all(INTERVAL - TICK <= gap <= INTERVAL + 3 * TICK for gap in gaps), gaps


def test_a_silent_connection_gets_one_ping_then_is_closed_with_1011() -> None:
    keepalive = Keepalive(INTERVAL, TIMEOUT, TICK)
    client: RawClient | None = None
    held_after = -1

    async def scenario(port: int) -> None:
        nonlocal client, held_after
        client = await RawClient.connect(port)
        connected = time.monotonic()
        await asyncio.wait_for(client.run(answer=False), 5)
        closed = time.monotonic() - connected
        # first ping after INTERVAL, closed at the first visit TIMEOUT after it
        assert INTERVAL + TIMEOUT - TICK <= closed <= INTERVAL + TIMEOUT + INTERVAL + 4 * TICK
        await client.close()
        await asyncio.sleep(0.1)  # the handler ends and releases it
        held_after = len(keepalive)

    asyncio.run(with_server(keepalive, scenario))
    assert client is not None
    assert len(client.pings) == 1  # no second ping while the first is unanswered
    assert (client.close_code, client.close_reason) == (1011, "keepalive ping timeout")
    assert held_after == 0


def test_a_released_connection_is_not_pinged() -> None:
    keepalive = Keepalive(INTERVAL, TIMEOUT, TICK)
    client: RawClient | None = None

    async def handler(ws: ServerConnection) -> None:
        keepalive.hold(ws)
        keepalive.release(ws)
        await ws.wait_closed()

    async def scenario() -> None:
        nonlocal client
        async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            client = await RawClient.connect(port)
            reading = asyncio.create_task(client.run(answer=False))
            await asyncio.sleep(INTERVAL + TIMEOUT + INTERVAL)
            assert not reading.done()
            await client.close()
            await asyncio.wait_for(reading, 5)
        await keepalive.stop()

    asyncio.run(scenario())
    assert client is not None and client.pings == [] and client.close_code is None
    assert len(keepalive) == 0


async def pinging(client: RawClient, period: float, seconds: float) -> None:
    """Send a ping every ``period`` for ``seconds``, as agents do (every 30 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client.send(0x9, b"agent")
        await asyncio.sleep(period)


async def with_agent_server(
    keepalive: Keepalive, scenario: Callable[[int], Awaitable[None]]
) -> None:
    """A server of the agent listener's connections (``AgentConnection``: they note when
    their peer was heard from), each held by ``keepalive``."""
    await with_server(keepalive, scenario, limited(64 * 1024))


def test_an_agent_that_pings_is_not_pinged_and_is_pinged_again_once_it_stops() -> None:
    keepalive = Keepalive(INTERVAL, TIMEOUT, TICK)
    client: RawClient | None = None
    stopped_pinging = 0.0

    async def scenario(port: int) -> None:
        nonlocal client, stopped_pinging
        client = await RawClient.connect(port)
        reading = asyncio.create_task(client.run(answer=True))
        await pinging(client, INTERVAL / 3, INTERVAL * 5)
        assert client.pings == []  # heard from every interval: never pinged
        stopped_pinging = time.monotonic()
        await asyncio.sleep(INTERVAL * 4)
        assert not reading.done()  # answers the pings it now gets
        await client.close()
        await asyncio.wait_for(reading, 5)

    asyncio.run(with_agent_server(keepalive, scenario))
    assert client is not None and client.close_code is None
    assert client.pings, "a silent agent must be pinged again"
    # the first visit after it stopped may still count its last ping; the next one pings
    assert client.pings[0] - stopped_pinging <= 2 * INTERVAL + 3 * TICK
    assert keepalive.skipped >= 3


def test_an_agent_that_stops_pinging_and_answering_is_closed_with_1011() -> None:
    keepalive = Keepalive(INTERVAL, TIMEOUT, TICK)
    client: RawClient | None = None

    async def scenario(port: int) -> None:
        nonlocal client
        client = await RawClient.connect(port)
        reading = asyncio.create_task(client.run(answer=False))
        await pinging(client, INTERVAL / 3, INTERVAL * 3)
        silent = time.monotonic()
        await asyncio.wait_for(reading, 5)
        closed = time.monotonic() - silent
        assert closed <= 2 * INTERVAL + TIMEOUT + 4 * TICK
        await client.close()

    asyncio.run(with_agent_server(keepalive, scenario))
    assert client is not None
    assert len(client.pings) == 1
    assert (client.close_code, client.close_reason) == (1011, "keepalive ping timeout")
