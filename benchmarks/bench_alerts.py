"""Alert rules on one frontend: events per second matched against 20 rules, and the delay from
a stored batch's publication to its alert stored and to its webhook POST received.

The real components of a frontend's alerting: an ``EventStream``, the ``AlertEngine`` with its
sandboxed matcher, the datastore (SQLite file by default, or ``--datastore postgresql://…``)
and a ``WebhookSink`` posting to an HTTP server in this process. Batches are what the event
ingest publishes: ``--batch`` rows of process executions from ``--clients`` simulated clients
(the rows an agent's process-execution artifact sends). 20 rules read them: 16 per-event
conditions (LIKE, IN, comparisons, an OR of three paths), one windowed fleet-wide rule, and 3
rules on other artifacts (they cost nothing here: rules are picked by artifact). About 1 row in
1,000 matches.

Throughput: the batches are published as fast as the engine takes them (the stream's queue
bounds the backlog) and timed from the first publication to the last batch matched and its
alerts stored. Delay: a single-row batch that matches, published once the engine is idle, 50
times; "stored" is when the alert's row is visible to another connection (polled every 1 ms),
"webhook" when the receiver got the POST.

    .venv/bin/python benchmarks/bench_alerts.py [--events 500000] [--batch 100] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from peregrine.alerts.engine import AlertEngine
from peregrine.alerts.forward import Forwarding
from peregrine.alerts.rulebook import RuleBook
from peregrine.alerts.webhook import WebhookSink
from peregrine.datastore import open_datastore
from peregrine.events.stream import EventBatch, EventStream

PROCESSES = "Linux.Events.ProcessExecution"
COLUMNS = {
    PROCESSES: ("pid", "ppid", "exe", "cmdline", "username", "uid", "cwd"),
    "Linux.Events.Logins": ("user", "success", "address", "service"),
    "Linux.Events.KernelModules": ("name", "action"),
    "Linux.Events.ListeningSockets": ("port", "name", "exe", "action"),
}
CONDITIONS = [
    "exe LIKE '/tmp/%' OR exe LIKE '/var/tmp/%' OR exe LIKE '/dev/shm/%'",
    "exe IN ('/usr/bin/nc', '/bin/nc', '/usr/bin/ncat', '/usr/bin/socat')",
    "cmdline LIKE '%base64 -d%'",
    "cmdline LIKE '%curl % | sh%' OR cmdline LIKE '%wget % | sh%'",
    "username = 'www-data' AND exe IN ('/bin/sh', '/bin/bash')",
    "uid = 0 AND ppid = 1 AND exe LIKE '/home/%'",
    "exe LIKE '%/.%'",
    "cmdline LIKE '%/dev/tcp/%'",
    "exe = '/usr/bin/chattr' AND cmdline LIKE '%+i%'",
    "exe = '/usr/sbin/insmod'",
    "cmdline LIKE '%LD_PRELOAD=%'",
    "exe LIKE '/usr/bin/python%' AND cmdline LIKE '%pty.spawn%'",
    "cwd LIKE '/tmp/%' AND exe LIKE '/usr/bin/gcc%'",
    "exe = '/usr/bin/crontab' AND username <> 'root'",
    "cmdline LIKE '%xmrig%' OR cmdline LIKE '%stratum+tcp%'",
    "exe = '/usr/bin/ssh-keygen' AND uid = 0",
]


def rules() -> list[dict[str, Any]]:
    found = [
        {"rule_id": f"Bench.P{n:02d}", "artifacts": [PROCESSES], "condition": c}
        for n, c in enumerate(CONDITIONS)
    ]
    found.append(
        {
            "rule_id": "Bench.Spray",
            "artifacts": [PROCESSES],
            "condition": "exe = '/usr/bin/sudo' AND username = 'nobody'",
            "window": {"seconds": 60, "threshold": 50},
        }
    )
    found += [
        {
            "rule_id": "Bench.Logins",
            "artifacts": ["Linux.Events.Logins"],
            "condition": "success = 0",
        },
        {"rule_id": "Bench.Mods", "artifacts": ["Linux.Events.KernelModules"], "condition": "1"},
        {
            "rule_id": "Bench.Ports",
            "artifacts": ["Linux.Events.ListeningSockets"],
            "condition": "port < 1024",
        },
    ]
    return found


def row(n: int) -> dict[str, Any]:
    """An ordinary process start; one in 1,000 runs from /tmp (matches the first rule)."""
    exe = "/tmp/.x/payload" if n % 1000 == 999 else f"/usr/bin/tool{n % 97}"
    return {
        "pid": 1000 + n % 30000, "ppid": 1 + n % 50, "exe": exe,
        "cmdline": f"{exe} --opt {n % 13} --file /var/lib/data/{n % 1009}.db",
        "username": f"user{n % 20}", "uid": 1000 + n % 20, "cwd": f"/home/user{n % 20}",
    }  # fmt: skip


class Receiver:
    """A webhook receiver in this process: when each alert's POST arrived."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        arrived = self.arrived

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                arrived[json.loads(body)["alert_id"]] = time.perf_counter()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


async def settle(engine: AlertEngine, batches: int) -> None:
    while engine.batches < batches:
        await asyncio.sleep(0.001)


async def throughput(
    engine: AlertEngine, stream: EventStream, events: int, size: int, clients: int
) -> dict[str, Any]:
    pool = [row(n) for n in range(50_000)]  # reused: building rows is not what is measured
    batches = events // size
    started = time.perf_counter()
    for n in range(batches):
        client = f"C.{n % clients:016x}"
        start = (n * size) % (len(pool) - size)
        chunk = pool[start : start + size]
        while n - engine.batches > 512:
            await asyncio.sleep(0.001)  # keep under the stream's backlog: nothing dropped
        stream.publish(EventBatch(client, PROCESSES, "", n * size, chunk, time.time()))
        if n % 64 == 0:
            await asyncio.sleep(0)
    await settle(engine, batches)
    elapsed = time.perf_counter() - started
    return {
        "events": batches * size,
        "batch_rows": size,
        "seconds": round(elapsed, 3),
        "events_per_second": round(batches * size / elapsed),
        "alerts_raised": engine.raised,
        "dropped": stream.dropped["alerts"],
    }


async def delays(
    engine: AlertEngine, stream: EventStream, receiver: Receiver, datastore: Any, runs: int
) -> dict[str, Any]:
    stored: list[float] = []
    hooked: list[float] = []
    for n in range(runs):
        await asyncio.sleep(0.05)
        last = datastore.alerts.query(limit=1)
        after = last[0].alert_id if last else 0
        taken = engine.batches
        batch = EventBatch("C.00000000000de1a7", PROCESSES, "", 10_000_000 + n,
                           [row(999)], time.time())  # fmt: skip
        published = time.perf_counter()
        stream.publish(batch)
        while True:
            found = await asyncio.to_thread(datastore.alerts.query, after=after, limit=1)
            if found:
                stored.append(time.perf_counter() - published)
                break
            await asyncio.sleep(0.001)
        alert_id = found[0].alert_id
        while alert_id not in receiver.arrived:
            await asyncio.sleep(0.001)
        hooked.append(receiver.arrived[alert_id] - published)
        assert engine.batches == taken + 1
    return {"runs": runs, "stored_ms": summary(stored), "webhook_ms": summary(hooked)}


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(v * 1000 for v in values)
    return {
        "median": round(statistics.median(ordered), 2),
        "p95": round(ordered[int(len(ordered) * 0.95) - 1], 2),
        "max": round(ordered[-1], 2),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="peregrine-bench-alerts-"))
    url = args.datastore or f"sqlite:///{directory}/peregrine.db"
    datastore = open_datastore(url)
    book = RuleBook(datastore, COLUMNS.get)
    for rule in rules():
        book.save(rule, "bench")
    receiver = Receiver()
    stream = EventStream()
    engine = AlertEngine(
        datastore, stream, Forwarding([WebhookSink(receiver.url)]), columns=COLUMNS.get
    )
    await engine.start()
    result: dict[str, Any] = {"datastore": url.split(":")[0], "rules": len(rules())}
    result["throughput"] = await throughput(engine, stream, args.events, args.batch, args.clients)
    print(json.dumps(result["throughput"]), file=sys.stderr)
    result["delay"] = await delays(engine, stream, receiver, datastore, args.runs)
    await engine.forwarding.drain()
    await engine.close()
    await stream.close()
    receiver.server.shutdown()
    datastore.close()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=100, help="rows per published batch")
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50, help="single-event delay samples")
    parser.add_argument("--datastore", default="", help="a datastore URL (default: SQLite file)")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    outcome = asyncio.run(main(options))
    print(json.dumps(outcome, indent=None if options.json else 2))
