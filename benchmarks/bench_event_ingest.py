"""Event ingestion through one frontend: events per second stored, acknowledged and published.

.venv/bin/python benchmarks/bench_event_ingest.py [--clients 20] [--batches 50] [--rows 1000]
    [--json]

A real ``Server`` (SQLite datastore, filestore in a temporary directory, default limits) in
this process; ``--clients`` connections in the same event loop, each a real identity over TLS
and the websocket, send ``--batches`` ``EventRows`` of ``--rows`` process-execution-like rows
(pid, ppid, user, exe, cmdline: about 150 bytes as JSON) of one event artifact, at most 32
unacknowledged at a time, as an agent's spool sender would. Each batch is decoded, charged to
its connection's budget, durably appended to its client's day file (fsync), published on the
event stream (one subscriber counts the rows) and acknowledged. Rate = rows over the time from
the first batch sent to the last acknowledgement; the clients' encoding runs in the same
process, so the figure is for the frontend and its load together (a lower bound).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from peregrine.agent.identity import load_or_create
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.config import client_ssl_context, generate
from peregrine.events.stream import EventBatch
from peregrine.protocol.messages import (
    Ack,
    Challenge,
    EventRows,
    Hello,
    Welcome,
    decode_from_server,
    encode,
)
from peregrine.server.app import Server

ARTIFACT = "Bench.Events.Exec"
DEFINITION = f"""
name: {ARTIFACT}
description: Process executions, as a bench sends them.
type: CLIENT_EVENT
sources:
  - query: SELECT tick AS pid FROM clock(1)
"""
COLUMNS = ["pid", "ppid", "user", "exe", "cmdline"]
WINDOW = 32


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def log_in(deployment: Any, home: Path) -> ClientConnection:
    client = deployment.client
    identity = load_or_create(home / "writeback.yaml")
    ws = await connect(client.server_urls[0], ssl=client_ssl_context(client), max_size=None)
    challenge = decode_from_server(await ws.recv())
    assert isinstance(challenge, Challenge)
    cid = identity.client_id
    await ws.send(
        encode(
            Hello(
                client_id=cid, public_key=identity.public_key_bytes,
                signature=identity.sign(challenge.nonce + cid.encode()), agent_version="bench",
                enrollment_secret=client.enrollment_secret,
            )
        )
    )  # fmt: skip
    assert isinstance(decode_from_server(await ws.recv()), Welcome)
    return ws


def batches(count: int, rows: int) -> list[bytes]:
    out = []
    for number in range(count):
        seq = number * rows + 1
        body = [
            [seq + i, 1, "www-data", "/usr/bin/curl", f"curl -s https://example.com/{seq + i}"]
            for i in range(rows)
        ]
        out.append(
            encode(
                EventRows(
                    stream=f"events:{ARTIFACT}", seq=seq, artifact=ARTIFACT, source="",
                    time=time.time(), columns=COLUMNS, rows=body,
                )
            )
        )  # fmt: skip
    return out


async def one_client(ws: ClientConnection, frames: list[bytes], rows: int) -> None:
    """Send every batch, at most WINDOW unacknowledged; return at the last acknowledgement
    (acknowledgements are cumulative: the first seq of the last batch stored)."""
    window = asyncio.Semaphore(WINDOW)
    done = asyncio.Event()
    acked = 0

    async def read() -> None:
        nonlocal acked
        async for frame in ws:
            message = decode_from_server(frame)
            if isinstance(message, Ack):
                now = (message.seq - 1) // rows + 1
                for _ in range(now - acked):
                    window.release()
                acked = max(acked, now)
                if acked == len(frames):
                    done.set()
                    return

    reader = asyncio.create_task(read())
    for frame in frames:
        await window.acquire()
        await ws.send(frame)
    await done.wait()
    reader.cancel()


async def run(clients: int, count: int, rows: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = free_port()
        deployment = generate(
            root / "deploy", [f"wss://127.0.0.1:{port}/agent"], port=port, api_port=0, force=True
        )
        repository = ArtifactRepository.default(forensic=False)
        repository.load_texts([("bench", DEFINITION)])
        server = Server(deployment.server, repository=repository)
        await server.start()
        published = 0

        async def count_rows(batch: EventBatch) -> None:
            nonlocal published
            published += len(batch.rows)

        server.event_stream.subscribe("bench", count_rows)
        try:
            sockets = [await log_in(deployment, root / f"c{i}") for i in range(clients)]
            frames = batches(count, rows)
            size = sum(len(f) for f in frames)
            cpu = os.times()
            started = time.monotonic()
            await asyncio.gather(*(one_client(ws, frames, rows) for ws in sockets))
            elapsed = time.monotonic() - started
            after = os.times()
            for ws in sockets:
                await ws.close()
            total = clients * count * rows
            stored = sum(
                len(list(server.services.event_monitoring.files.iter_rows(
                    load_or_create(root / f"c{i}" / "writeback.yaml").client_id,
                    ARTIFACT, 0, time.time() + 86400,
                )))
                for i in range(min(clients, 2))
            )  # fmt: skip
            assert stored == min(clients, 2) * count * rows, stored
            await asyncio.sleep(0.5)
            return {
                "clients": clients,
                "rows": total,
                "seconds": round(elapsed, 2),
                "events_per_second": round(total / elapsed),
                "mb_per_second_on_the_wire": round(clients * size / elapsed / 1e6, 1),
                "process_cpu_seconds": round(after.user + after.system - cpu.user - cpu.system, 1),
                "published": published,
                "load_average": os.getloadavg()[0],
            }
        finally:
            await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.clients, args.batches, args.rows))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
