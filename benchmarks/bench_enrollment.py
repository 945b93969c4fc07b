"""Enrollment rate: new simulated agents enrolled per second by one server process.

.venv/bin/python benchmarks/bench_enrollment.py [--clients 3000] [--ramp 2000] [--dir DIR]
    [--workers N] [--profile FILE] [--pin] [--json]

A fresh deployment (or --dir, whose clients must not be enrolled yet) and a server process
(``peregrine server --no-local-agent``); keys are generated before the clock starts (the
simulator caches them, as Velociraptor's pool client does), then every client connects once,
proves its key, enrolls with the secret and is interrogated. Rate = enrolled clients over the
span from the first to the last enrollment, as the simulator saw them; the server's CPU over
that span is measured too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

from fleet_common import (
    PYTHON,
    LoadTest,
    Profiler,
    ServerProcess,
    cleanup,
    cpu_seconds,
    deployment,
    machine,
    probe_machine,
    top_frames,
)
from peregrine.loadtest import KeyStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=3000)
    parser.add_argument("--ramp", type=float, default=2000.0, help="new connections/s offered")
    parser.add_argument("--processes", type=int, default=1, help="simulator processes")
    parser.add_argument("--workers", type=int, default=1, help="server processes, if supported")
    parser.add_argument("--dir", type=Path, help="deployment directory (default: a new one)")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks of the server")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server on CPU 0, this script and the simulator on CPU 1 (the server's own "
        "rate, not the box's)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {1})  # the simulator started later inherits it
    probe_machine(getattr(args, "dir", None))  # before the run loads the machine

    dep = deployment(args.dir)
    keys = KeyStore(dep.key_dir)
    t = time.perf_counter()
    keys.load(args.clients)
    key_seconds = time.perf_counter() - t
    with dep.db() if dep.datastore.exists() else _nothing() as db:
        known = db.execute("SELECT count(*) FROM clients").fetchone()[0] if db else 0
    server = ServerProcess(dep, workers=args.workers)
    fleet = LoadTest(dep, args.clients, processes=args.processes, rows=1, ramp=args.ramp)
    with cleanup(fleet, server):
        server.start()
        if args.pin:
            _pin(server.process.pid, {0})
        time.sleep(1.0)
        profiler = Profiler(args.profile, server.process.pid)
        profiler.start()
        load0 = _loadavg()
        cpu0, t0 = server.cpu(), time.monotonic()
        threads0 = _thread_cpu(server.process.pid)
        fleet.start()
        sims = fleet.procs()
        marks = _watch(dep, known, args.clients, t0, args.timeout)
        cpu1, t1 = server.cpu(), time.monotonic()
        threads = _by_kind(server.process.pid, threads0, _thread_cpu(server.process.pid))
        sim_cpu = cpu_seconds(fleet.procs() or sims)
        load1 = _loadavg()
        profiler.stop()
        rss = server.rss()
        held = server.agent_connections()
        summary = fleet.stop()
    enrolled, interrogated = marks["enrolled"], marks["interrogated"]
    span = (marks.get("enrolled_100") or t1 - t0) - (marks.get("first") or 0.0)
    result = {
        "clients": args.clients,
        "already_enrolled_before": known,
        "key_seconds": round(key_seconds, 2),
        "connected": held,
        "enrolled_in_datastore": enrolled,
        "interrogated": interrogated,
        "enroll_per_second_server": round(enrolled / span, 1) if span > 0 else None,
        "enroll_per_second_sim": summary.get("enroll_per_second"),
        "seconds_to_enroll_all": marks.get("enrolled_100"),
        "seconds_to_interrogate_all": marks.get("interrogated_100"),
        "connect_ms_p50": summary.get("connect_ms_p50"),
        "connect_ms_p99": summary.get("connect_ms_p99"),
        "errors": summary.get("errors_by_kind"),
        "wall_seconds": round(t1 - t0, 1),
        "server_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "server_rss_mb": round(rss / 1e6, 1),
        # CPU per client (enrollment and interrogation) is what stays comparable on a shared
        # box: the rate a core of its own would give is 1000 / ms.
        "server_cpu_ms_per_client": _per_client(cpu1 - cpu0, enrolled),
        "sim_cpu_ms_per_client": _per_client(sim_cpu, enrolled),
        # Where the server's CPU went, by thread kind (ms per client): the event loop (TLS,
        # websockets, sessions), the executor's datastore reads, the group commit, files.
        "server_cpu_ms_per_client_by_thread": {
            kind: _per_client(seconds, enrolled)
            for kind, seconds in sorted(threads.items(), key=lambda kv: -kv[1])
        },
        "loadavg_before_after": [load0, load1],
        "pinned": args.pin,
        "notes": server.notes,
        "machine": machine(),
        "deployment": str(dep.directory),
    }
    if args.profile:
        result["profile_top"] = top_frames(args.profile)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:24} {value}")


def _watch(dep, known: int, want: int, t0: float, timeout: float) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Poll the datastore: when the first client enrolled, when all had, when all were
    interrogated (seconds from t0)."""
    marks: dict = {"enrolled": 0, "interrogated": 0}  # type: ignore[type-arg]
    while time.monotonic() - t0 < timeout:
        time.sleep(0.25)
        if not dep.datastore.exists():
            continue
        with dep.db() as db:
            enrolled = db.execute("SELECT count(*) FROM clients").fetchone()[0] - known
            interrogated = (
                db.execute(
                    "SELECT count(*) FROM clients WHERE interrogated IS NOT NULL"
                ).fetchone()[0]
                - known
            )
        now = round(time.monotonic() - t0, 2)
        marks["enrolled"], marks["interrogated"] = enrolled, interrogated
        if enrolled and "first" not in marks:
            marks["first"] = now
        if enrolled >= want and "enrolled_100" not in marks:
            marks["enrolled_100"] = now
        if interrogated >= want:
            marks["interrogated_100"] = now
            break
    return marks


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of the process on ``cpus`` (threads it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each of the process's threads so far (``/proc/<pid>/task``)."""
    seconds: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the thread ended meanwhile
        seconds[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def _by_kind(pid: int, before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    """Threads' CPU over the run, summed by kind: Python's thread names (from ``py-spy
    dump``; Python 3.11 does not name OS threads) without their digits, so the executor's
    ``asyncio_0`` ... ``asyncio_5`` are one kind; thread ids when py-spy is not installed."""
    names: dict[int, str] = {}
    spy = Path(PYTHON).with_name("py-spy")
    if spy.exists():
        dump = subprocess.run(
            [str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, check=False
        ).stdout
        for match in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', dump, re.MULTILINE):
            names[int(match[1])] = match[2]
    kinds: dict[str, float] = {}
    for tid, seconds in after.items():
        kind = names.get(tid, str(tid)).rstrip("0123456789_")
        kinds[kind] = kinds.get(kind, 0.0) + seconds - before.get(tid, 0.0)
    return kinds


def _per_client(seconds: float, clients: int) -> float | None:
    return round(1000 * seconds / clients, 2) if clients else None


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
