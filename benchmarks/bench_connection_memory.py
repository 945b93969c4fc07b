"""Memory one process spends per idle TLS connection, by connection stack.

Which per-connection stack would let a frontend hold an idle agent in less memory, measured
before building it. A server process (``--serve STACK``) listens on loopback; a client process
opens ``--connections`` connections to it (pinned TLS, a WebSocket upgrade where the stack has
one, then two small messages each way, as a login does) and keeps them open; the server then
reports its RSS, what tracemalloc sees (Python objects), what glibc's malloc has in use
(``mallinfo2``: OpenSSL's state and Python's large objects), the RSS after ``malloc_trim(0)``,
and OpenSSL's session cache, each minus the same figure taken before the first connection.

Stacks:

* ``asyncio-websockets`` the agent listener before the third round: websockets' asyncio server
  over asyncio's TLS (``SSLProtocol``, two memory BIOs), configured as ``server/app.py`` does
  (shared TLS read buffer, ``limited`` connections, no per-connection keepalive, the
  handshake forgotten, idle on one future), a handler task per connection
* ``sslsocket-websockets`` the same websockets server over asyncio's plain socket transport
  on a non-blocking ``SSLSocket`` (``server/tls_socket.py``): no ``SSLProtocol``, no BIOs
  (today's agent listener)
* ``asyncio-sansio`` websockets' Sans-I/O ``ServerProtocol`` driven by a plain
  ``asyncio.Protocol`` over asyncio's TLS, a handler task per connection
* ``sslsocket-sansio`` a non-blocking ``SSLSocket`` read by the event loop (``add_reader``),
  OpenSSL on the socket itself (no BIOs), the Sans-I/O protocol, a handler task per connection
* ``asyncio-tls-echo`` asyncio's TLS with an echo protocol: no WebSocket, no task
* ``sslsocket-echo`` the floor: an ``SSLSocket`` echo read by the event loop

    .venv/bin/python benchmarks/bench_connection_memory.py [--connections 5000]
        [--stacks asyncio-websockets,...] [--no-tracemalloc] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from fleet_common import probe_machine
from peregrine.config.pki import create_ca, issue_server_cert
from peregrine.config.tls import pinned_ssl_context, shrink_tls_read_buffers
from peregrine.protocol.messages import MAX_MESSAGE_BYTES
from peregrine.server.prelogin import AgentConnection, limited
from peregrine.server.tls_socket import tls_listener

STACKS = (
    "asyncio-websockets",
    "sslsocket-websockets",
    "asyncio-sansio",
    "sslsocket-sansio",
    "asyncio-tls-echo",
    "sslsocket-echo",
)
WEBSOCKET_STACKS = STACKS[:4]
MESSAGE = b"x" * 200  # about a Hello
READ_SIZE = 16 * 1024
_libc = ctypes.CDLL(None)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


_libc.mallinfo2.restype = _MallInfo2


def malloc_in_use() -> int:
    """Bytes glibc's malloc has handed out and not had back (OpenSSL allocates through it)."""
    info = _libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def server_context(pair: tuple[Path, Path]) -> ssl.SSLContext:
    """What ``server_ssl_context`` and ``Server._agent_tls`` make."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.load_cert_chain(*pair)
    ctx.num_tickets = 0
    return ctx


# -- the stacks (server side) ------------------------------------------------------------------


class Inbox:
    """Frames for a handler task that awaits them, as ``AgentSession`` awaits ``recv``."""

    __slots__ = ("frames", "waiter")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None

    def put(self, data: bytes) -> None:
        self.frames.append(data)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def get(self) -> bytes:
        while not self.frames:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None
        return self.frames.pop(0)


class SansIO:
    """websockets' ``ServerProtocol`` fed bytes by whoever reads the connection; ``write``
    sends what it has to send."""

    __slots__ = ("inbox", "protocol", "task", "write")

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.protocol = ServerProtocol(max_size=MAX_MESSAGE_BYTES)
        self.inbox = Inbox()
        self.write = write
        self.task: asyncio.Task[None] | None = None

    def received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Request):
                # The Sans-I/O protocol keeps neither the request nor the response.
                self.protocol.send_response(self.protocol.accept(event))
                self.task = asyncio.get_running_loop().create_task(self.handle())
            elif isinstance(event, Frame) and event.opcode == Opcode.BINARY:
                self.inbox.put(event.data)
        self.flush()

    def flush(self) -> None:
        out = self.protocol.data_to_send()
        if out:
            self.write(b"".join(out))

    async def handle(self) -> None:
        while True:
            self.protocol.send_binary(await self.inbox.get())
            self.flush()


class SansIOProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.ws = SansIO(transport.write)

    def data_received(self, data: bytes) -> None:
        self.ws.received(data)


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class TlsSocket:
    """A non-blocking ``SSLSocket`` read by the event loop: OpenSSL reads the socket itself."""

    __slots__ = ("backlog", "loop", "on_data", "sock")
    buffer = bytearray(READ_SIZE)  # shared: a read is copied out before the next one

    def __init__(self, sock: ssl.SSLSocket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.on_data: Callable[[bytes], None] = self.write
        self.backlog = b""
        loop.add_reader(sock.fileno(), self.handshake)

    def handshake(self) -> None:
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            return
        except (ssl.SSLError, OSError):
            self.close()
            return
        self.loop.remove_reader(self.sock.fileno())
        self.loop.add_reader(self.sock.fileno(), self.readable)

    def readable(self) -> None:
        view = memoryview(self.buffer)
        while True:
            try:
                n = self.sock.recv_into(view)
            except ssl.SSLWantReadError:
                return
            except (ssl.SSLError, OSError):
                n = 0
            if n == 0:
                self.close()
                return
            self.on_data(bytes(view[:n]))

    def write(self, data: bytes) -> None:
        if self.backlog:
            self.backlog += data
            return
        try:
            sent = self.sock.send(data)
        except (ssl.SSLWantWriteError, BlockingIOError):
            sent = 0
        if sent < len(data):
            self.backlog = data[sent:]
            self.loop.add_writer(self.sock.fileno(), self.writable)

    def writable(self) -> None:
        data, self.backlog = self.backlog, b""
        self.loop.remove_writer(self.sock.fileno())
        self.write(data)

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


async def serve_sslsocket(ctx: ssl.SSLContext, websocket: bool, held: list[Any]) -> int:
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    listener.setblocking(False)

    def accept() -> None:
        for _ in range(64):
            try:
                raw, _addr = listener.accept()
            except BlockingIOError:
                return
            raw.setblocking(False)
            sock = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            conn = TlsSocket(sock, loop)
            if websocket:
                ws = SansIO(conn.write)
                conn.on_data = ws.received
                held.append(ws)
            held.append(conn)

    loop.add_reader(listener.fileno(), accept)
    held.append(listener)
    return int(listener.getsockname()[1])


async def start_stack(stack: str, ctx: ssl.SSLContext, held: list[Any]) -> int:
    """Listen on a free loopback port with ``stack``; returns the port."""
    loop = asyncio.get_running_loop()
    if stack.startswith("asyncio-"):
        shrink_tls_read_buffers()  # as Server.start does
    if stack in ("asyncio-websockets", "sslsocket-websockets"):

        async def handler(ws: ServerConnection) -> None:
            assert isinstance(ws, AgentConnection)
            ws.forget_handshake()
            first = True
            while True:  # idle as AgentSession._serve is: on one future, not in recv()
                while (arrival := ws.arrival()) is not None:
                    await arrival
                try:
                    message = await ws.recv()
                except ConnectionClosed:
                    return
                if first:
                    ws.logged_in()
                    first = False
                await ws.send(message)

        where: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "ssl": ctx, "backlog": 4096}
        if stack == "sslsocket-websockets":  # as Server.start does
            where = {"sock": tls_listener(ctx, "127.0.0.1", 0, 4096)}
        server = await serve(
            handler, max_size=MAX_MESSAGE_BYTES, create_connection=limited(64 * 1024),
            ping_interval=None, close_timeout=5, compression=None, **where,
        )  # fmt: skip
        held.append(server)
        return int(next(iter(server.sockets)).getsockname()[1])
    if stack in ("asyncio-sansio", "asyncio-tls-echo"):
        factory = SansIOProtocol if stack == "asyncio-sansio" else EchoProtocol
        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=ctx, backlog=4096)
        held.append(server)
        return int(server.sockets[0].getsockname()[1])
    return await serve_sslsocket(ctx, stack == "sslsocket-sansio", held)


def figures(trace: bool) -> dict[str, Any]:
    gc.collect()
    out: dict[str, Any] = {"rss": rss_bytes(), "malloc": malloc_in_use()}
    if trace:
        out["traced"] = tracemalloc.get_traced_memory()[0]
    return out


async def run_server(stack: str, pair: tuple[Path, Path], trace: bool) -> None:
    """Listen, print the port, and answer "measure" lines on stdin with JSON."""
    if trace:
        tracemalloc.start()
    ctx = server_context(pair)
    held: list[Any] = []
    port = await start_stack(stack, ctx, held)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await asyncio.sleep(0.5)
    before = figures(trace)
    print(json.dumps({"port": port}), flush=True)
    while line := (await reader.readline()).strip():
        if line == b"measure":
            await asyncio.sleep(2.0)  # the last messages answered
            after = figures(trace)
            _libc.malloc_trim(0)
            after["rss_trimmed"] = rss_bytes()
            before.setdefault("rss_trimmed", before["rss"])
            delta = {k: after[k] - before[k] for k in after}
            delta["sessions_cached"] = ctx.session_stats()["number"]
            print(json.dumps(delta), flush=True)


# -- the client --------------------------------------------------------------------------------


async def run_client(stack: str, port: int, count: int, ca_pem: str) -> None:
    """Open ``count`` connections, exchange two messages on each, print "ready", hold."""
    shrink_tls_read_buffers()
    ctx = pinned_ssl_context(ca_pem)
    gate = asyncio.Semaphore(50)
    held: list[Any] = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with gate:
            for _attempt in range(5):
                try:
                    held.append(await asyncio.wait_for(exchange(), 30))
                    return
                except (OSError, TimeoutError, ssl.SSLError, EOFError):
                    failures += 1
                    await asyncio.sleep(0.5)

    async def exchange() -> Any:
        if stack in WEBSOCKET_STACKS:
            ws = await connect(
                f"wss://127.0.0.1:{port}/agent", ssl=ctx, server_hostname="localhost",
                compression=None, ping_interval=None, max_size=MAX_MESSAGE_BYTES,
            )  # fmt: skip
            for _ in range(2):
                await ws.send(MESSAGE)
                await ws.recv()
            return ws
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
        )
        for _ in range(2):
            writer.write(MESSAGE)
            await reader.readexactly(len(MESSAGE))
        return writer

    await asyncio.gather(*(one() for _ in range(count)))
    print(json.dumps({"ready": len(held), "failures": failures}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# -- the driver --------------------------------------------------------------------------------


def measure(stack: str, count: int, trace: bool, certs: Path, ca_pem: str) -> dict[str, Any]:
    script, python = str(Path(__file__).resolve()), sys.executable
    common = [python, script, "--certs", str(certs)]
    server = subprocess.Popen(
        [*common, "--serve", stack, *([] if trace else ["--no-tracemalloc"])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdin is not None and server.stdout is not None
    client = None
    try:
        port = json.loads(server.stdout.readline())["port"]
        client = subprocess.Popen(
            [*common, "--client", stack, "--port", str(port), "--connections", str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert client.stdout is not None
        started = time.monotonic()
        ready = json.loads(client.stdout.readline())
        seconds = time.monotonic() - started
        server.stdin.write("measure\n")
        server.stdin.flush()
        delta = json.loads(server.stdout.readline())
    finally:
        for proc in (client, server):
            if proc is not None:
                proc.kill()
                proc.wait()
    held = ready["ready"]
    per = {k: round(v / held) for k, v in delta.items() if k != "sessions_cached"}
    return {
        "stack": stack,
        "held": held,
        "client_retries": ready["failures"],
        "connect_seconds": round(seconds, 1),
        "rss_per_connection": per["rss"],
        "rss_after_malloc_trim": per["rss_trimmed"],
        "malloc_per_connection": per["malloc"],
        "tracemalloc_per_connection": per.get("traced"),
        "sessions_cached": delta["sessions_cached"],
    }


def write_certs(directory: Path) -> str:
    ca = create_ca()
    pair = issue_server_cert(ca, ["localhost"])
    (directory / "cert.pem").write_text(pair.cert_pem)
    (directory / "key.pem").write_text(pair.key_pem)
    (directory / "ca.pem").write_text(ca.cert_pem)
    return ca.cert_pem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument("--no-tracemalloc", action="store_true", help="RSS runs only")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--certs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve", choices=STACKS, help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=STACKS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        pair = (args.certs / "cert.pem", args.certs / "key.pem")
        asyncio.run(run_server(args.serve, pair, not args.no_tracemalloc))
        return
    if args.client:
        ca_pem = (args.certs / "ca.pem").read_text()
        asyncio.run(run_client(args.client, args.port, args.connections, ca_pem))
        return
    probes = probe_machine()
    with tempfile.TemporaryDirectory() as tmp:
        ca_pem = write_certs(Path(tmp))
        rows = []
        for stack in args.stacks.split(","):
            # RSS without tracemalloc (it costs memory of its own); Python objects with it.
            row = measure(stack, args.connections, False, Path(tmp), ca_pem)
            if not args.no_tracemalloc:
                traced = measure(stack, args.connections, True, Path(tmp), ca_pem)
                row["tracemalloc_per_connection"] = traced["tracemalloc_per_connection"]
            rows.append(row)
            if not args.json:
                print(json.dumps(row), flush=True)
    result = {"connections": args.connections, "rows": rows, "probes": probes,
              "loadavg": os.getloadavg()}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(json.dumps({"probes": probes, "loadavg": result["loadavg"]}))


if __name__ == "__main__":
    main()
