"""What event monitoring costs an endpoint, and how many events one plugin can carry.

.venv/bin/python benchmarks/bench_events_agent.py [--settle 5] [--window 20] [--rate 200]
    [--lines 200000] [--spawn-seconds 10] [--json]

1. **The default event set** (every ``Linux.Events.*`` artifact, default parameters), each
   source in its own query worker, as the agent runs them (``ArtifactRunner.plan(...,
   events=True)`` then ``run_source`` in a thread each). After ``--settle`` seconds, the
   workers' CPU (% of one core) and memory (RSS and USS, summed) over ``--window`` seconds:
   first on the box as it is (idle), then while a separate process starts ``/bin/true``
   ``--rate`` times a second. Also the rows each artifact produced, and how many of the
   spawned processes Linux.Events.ProcessExecutions reported.
2. **log_lines throughput**: ``--lines`` lines appended to a file as fast as a writer can,
   followed through a worker (``SELECT offset FROM log_lines(...)``): lines per second from the
   first write to the last row read, and the worker's CPU.
3. **process_events capture at full speed**: two spawners start ``/bin/true`` as fast as they
   can for ``--spawn-seconds``; how many starts the worker reported, and with what.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from fleet_common import cpu_seconds as cpu
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.artifacts.runner import ArtifactRunner, SourceOutcome
from peregrine.engine.worker import IsolatedQuery

#: After a worker's header (the query is prepared), time for its plugin to take its first look.
SETTLE = 0.5

SPAWNER = """
import os, sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
start, n = time.monotonic(), 0
while (now := time.monotonic()) - start < seconds:
    pid = os.posix_spawn("/bin/true", ["/bin/true"], {})
    os.waitpid(pid, 0)
    n += 1
    if rate > 0:
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
print(n)
"""


def report(name: str, result: dict[str, Any]) -> None:
    print(f"{name}: {json.dumps(result)}", file=sys.stderr, flush=True)


def workers() -> list[psutil.Process]:
    """This process's query workers."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "peregrine.engine.worker" in " ".join(child.cmdline()):
                found.append(child)
    return found


def memory(procs: list[psutil.Process]) -> tuple[int, int]:
    rss = uss = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            info = p.memory_full_info()
            rss, uss = rss + info.rss, uss + info.uss
    return rss, uss


class EventSet:
    """Every Linux.Events.* artifact running, each in a worker, rows counted as they come."""

    def __init__(self, repo: ArtifactRepository) -> None:
        self.runner = ArtifactRunner(repo, isolated=True)
        self.names = sorted(a.name for a in repo if a.name.startswith("Linux.Events."))
        self.rows: Counter[str] = Counter()
        self.true_seen = 0
        self.unnamed = 0
        self.threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in self.names
        ]

    def _run(self, name: str) -> None:
        planned = self.runner.plan(name, {}, events=True)
        for source in planned.artifact.sources:
            outcome = SourceOutcome(name, source.name)
            for row in self.runner.run_source(planned, source, outcome):
                self.rows[name] += 1
                if name == "Linux.Events.ProcessExecutions":
                    named = dict(zip(outcome.columns, row, strict=True))
                    if named["name"] == "true" or (named["exe"] or "").endswith("/true"):
                        self.true_seen += 1
                    elif named["name"] is None:
                        self.unnamed += 1
            if outcome.error and outcome.status != "cancelled":
                print(f"{name}: {outcome.status}: {outcome.error}", file=sys.stderr)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.runner.cancel()
        for thread in self.threads:
            thread.join(5)


def measure(events: EventSet, window: float) -> dict[str, Any]:
    procs = workers()
    me = psutil.Process()
    rows_before, true_before, unnamed_before = (
        Counter(events.rows),
        events.true_seen,
        events.unnamed,
    )
    cpu_before, own_before = cpu(procs), cpu([me])
    samples = []
    started = time.monotonic()
    while time.monotonic() - started < window:
        samples.append(memory(procs))
        time.sleep(1.0)
    wall = time.monotonic() - started
    rows = Counter(events.rows)
    rows.subtract(rows_before)
    return {
        "workers": len(procs),
        "cpu_percent": round(100 * (cpu(procs) - cpu_before) / wall, 2),
        "reader_cpu_percent": round(100 * (cpu([me]) - own_before) / wall, 2),
        "rss_mb": round(max(s[0] for s in samples) / 2**20, 1),
        "uss_mb": round(max(s[1] for s in samples) / 2**20, 1),
        "rows_per_second": {n: round(c / wall, 1) for n, c in rows.items() if c},
        "true_seen": events.true_seen - true_before,
        "unnamed_starts": events.unnamed - unnamed_before,
        "load_average": os.getloadavg()[0],
        "seconds": round(wall, 1),
    }


def spawn(rate: float, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SPAWNER, str(rate), str(seconds)], stdout=subprocess.PIPE, text=True
    )


def default_set(settle: float, window: float, rate: float) -> dict[str, Any]:
    events = EventSet(ArtifactRepository.default(forensic=False))
    events.start()
    time.sleep(settle)
    try:
        idle = measure(events, window)
        report("default set, idle", idle)
        spawner = spawn(rate, window + 2)
        time.sleep(1)
        busy = measure(events, window)
        spawned = int(spawner.communicate()[0])
        busy["spawned_per_second"] = round(spawned / (window + 2), 1)
        busy["spawned_in_window"] = round(spawned * window / (window + 2))
        report(f"default set, {rate:g} processes/s", busy)
    finally:
        events.stop()
    return {"artifacts": events.names, "idle": idle, "busy": busy}


def log_throughput(lines: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "fast.log"
        log.write_text("")
        query = IsolatedQuery(
            "SELECT offset FROM log_lines(:path, 0, 0.01) LIMIT :n",
            {"path": str(log), "n": lines},
        )
        query.columns  # noqa: B018 (prepared: the worker is starting to follow the file)
        time.sleep(SETTLE)
        line = b"Dec  3 04:00:01 web1 sshd[4243]: Failed password for root from 198.51.100.7\n"

        def write() -> None:
            with open(log, "ab") as f:
                for _ in range(lines // 1000):
                    f.write(line * 1000)
                    f.flush()

        worker = psutil.Process(query.pid)
        cpu_before = cpu([worker])
        started = time.monotonic()
        threading.Thread(target=write, daemon=True).start()
        received = 0
        for _ in query:
            received += 1
            if received == lines:  # the worker is done but not yet reaped: its times still read
                worker_cpu = cpu([worker])
        wall = time.monotonic() - started
    result = {
        "lines": received,
        "seconds": round(wall, 2),
        "lines_per_second": round(received / wall),
        "worker_cpu_seconds": round(worker_cpu - cpu_before, 2),
        "load_average": os.getloadavg()[0],
    }
    report("log_lines throughput", result)
    return result


def process_capture(seconds: float) -> dict[str, Any]:
    query = IsolatedQuery(
        "SELECT name, exe, cmdline, method FROM process_events() WHERE action = 'start'"
    )
    counts: Counter[str] = Counter()

    def read() -> None:
        with contextlib.suppress(Exception):
            for name, exe, cmdline, method in query:
                counts["method:" + method] += 1
                if name == "true" or (exe or "").endswith("/true"):
                    counts["true"] += 1
                    counts["true with command line"] += cmdline is not None
                elif name is None:
                    counts["unnamed"] += 1

    reader = threading.Thread(target=read, daemon=True)
    query.columns  # noqa: B018
    reader.start()
    time.sleep(SETTLE)
    spawners = [spawn(0, seconds) for _ in range(2)]
    spawned = sum(int(s.communicate()[0]) for s in spawners)
    time.sleep(1.0)
    query.stop()
    reader.join(5)
    result = {
        "spawned": spawned,
        "spawned_per_second": round(spawned / seconds),
        "reported": counts["true"],
        "with_command_line": counts["true with command line"],
        "unnamed_starts": counts["unnamed"],
        "method": [k.split(":", 1)[1] for k in counts if k.startswith("method:")],
        "load_average": os.getloadavg()[0],
    }
    report("process_events at full speed", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--spawn-seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {
        "cores": os.cpu_count(),
        "default_set": default_set(args.settle, args.window, args.rate),
        "log_lines": log_throughput(args.lines),
        "process_events": process_capture(args.spawn_seconds),
    }
    print(json.dumps(results, indent=2) if args.json else json.dumps(results))


if __name__ == "__main__":
    main()
