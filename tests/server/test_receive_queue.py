"""An agent connection's receive queue is a list (``prelogin.FrameList``), not websockets' deque."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from peregrine.config import client_ssl_context, server_ssl_context
from peregrine.server.prelogin import FrameList, limited
from peregrine.server.tls_socket import tls_listener
from tests.server.harness import make_deployment


def test_frame_list_does_what_websockets_does_with_its_deque() -> None:
    """The same operations (websockets' put, get, put_back) give the same order."""
    ours, theirs = FrameList(), collections.deque[Any]()
    for queue in (ours, theirs):
        queue.append(1)
        queue.append(2)
        queue.append(3)
        first = queue.popleft()
        queue.extendleft(reversed([first, "a", "b"]))  # put_back([first, "a", "b"])
        queue.append(4)
    assert list(ours) == list(theirs) == [1, "a", "b", 2, 3, 4]
    assert [ours.popleft() for _ in range(6)] == [theirs.popleft() for _ in range(6)]
    assert len(ours) == len(theirs) == 0


def test_fragmented_and_queued_messages_arrive_whole_and_in_order(tmp_path: Path) -> None:
    """Messages the handler reads only after they all arrived (queued), one of them sent in
    fragments, come out whole and in order through an agent connection's list queue."""
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> tuple[list[Any], str]:
        got: list[Any] = []
        kind = ""

        async def handler(ws: ServerConnection) -> None:
            nonlocal kind
            kind = type(ws.recv_messages.frames.queue).__name__
            while len(ws.recv_messages.frames) < 6:  # every frame queued before one is read
                await asyncio.sleep(0.01)
            for _ in range(4):
                got.append(await ws.recv())
            await ws.send("done")

        listener = tls_listener(server_ssl_context(deployment.server), "127.0.0.1", 0, 100)
        server = await serve(handler, sock=listener, create_connection=limited(64 * 1024))
        url = f"wss://127.0.0.1:{listener.getsockname()[1]}/"
        try:
            async with connect(url, ssl=client_ssl_context(deployment.client)) as ws:
                await ws.send(b"one")
                await ws.send([b"tw", b"o-", b"parts"])  # three frames, one message
                await ws.send("three")
                await ws.send(b"four")
                assert await asyncio.wait_for(ws.recv(), 30) == "done"
        finally:
            server.close()
            await server.wait_closed()
        return got, kind

    got, kind = asyncio.run(scenario())
    assert kind == "FrameList"
    assert got == [b"one", b"two-parts", "three", b"four"]
