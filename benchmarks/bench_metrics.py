"""The cost of one ``/metrics`` scrape on a frontend holding many agents.

.venv/bin/python benchmarks/bench_metrics.py [--clients 10000] [--processes 2] [--ramp 1000]
    [--scrapes 60] [--dir DIR] [--json]

Clients are seeded into the datastore, the server starts, the simulator connects all of them
and they stay idle. Then, with the fleet connected: the server's CPU over an idle spell (the
baseline), ``--scrapes`` sequential scrapes of ``/metrics`` (wall time each, and the server's
CPU over them less the baseline for the same time, per scrape), then scrapes 6 s apart so each
misses the 5 s cache of the datastore's counts (each then reads the datastore: the worst case).
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from fleet_common import (
    LoadTest,
    ServerProcess,
    api_token,
    cleanup,
    deployment,
    fleet_options,
    machine,
    print_result,
    probe_machine,
    seed_clients,
    wait_connections,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    fleet_options(parser, clients=10_000)
    parser.add_argument("--scrapes", type=int, default=60)
    parser.add_argument("--misses", type=int, default=5, help="scrapes past the state cache")
    parser.add_argument(
        "--stall", type=float, default=20.0, help="stop waiting once no agent joined for this long"
    )
    args = parser.parse_args()
    probe_machine(getattr(args, "dir", None))  # before the run loads the machine

    dep = deployment(args.dir)
    seed_clients(dep, args.clients)
    token = api_token(dep)
    server = ServerProcess(dep)
    fleet = LoadTest(dep, args.clients, processes=args.processes, ramp=args.ramp)
    with cleanup(fleet, server):
        server.start()
        fleet.start()
        held, connect_seconds = wait_connections(
            server, args.clients, args.timeout, stall=args.stall
        )
        time.sleep(5.0)  # check-ins still under way
        with httpx.Client(
            base_url=f"https://127.0.0.1:{dep.api_port}",
            headers={"Authorization": f"Bearer {token}"},
            verify=str(dep.directory / "ca.pem"),
            timeout=60,
        ) as http:
            first = http.get("/metrics")
            first.raise_for_status()
            reported = _value(first.text, "peregrine_agents_connected")
            cpu0, t0 = server.cpu(), time.monotonic()
            time.sleep(10.0)
            idle_rate = (server.cpu() - cpu0) / (time.monotonic() - t0)
            walls = []
            cpu0, t0 = server.cpu(), time.monotonic()
            for _ in range(args.scrapes):
                started = time.perf_counter()
                http.get("/metrics").raise_for_status()
                walls.append(time.perf_counter() - started)
            elapsed = time.monotonic() - t0
            scrape_cpu = (server.cpu() - cpu0 - idle_rate * elapsed) / args.scrapes
            misses = []
            for _ in range(args.misses):
                time.sleep(6.0)
                started = time.perf_counter()
                http.get("/metrics").raise_for_status()
                misses.append(time.perf_counter() - started)
        fleet.stop()
    walls.sort()
    result = {
        "clients": args.clients,
        "held": held,
        "seconds_to_connect": round(connect_seconds, 1),
        "agents_connected_reported": reported,
        "body_bytes": len(first.content),
        "series": sum(1 for line in first.text.splitlines() if not line.startswith("#")),
        "scrape_ms_p50": round(1000 * statistics.median(walls), 1),
        "scrape_ms_p99": round(1000 * walls[int(0.99 * (len(walls) - 1))], 1),
        "scrape_server_cpu_ms": round(1000 * scrape_cpu, 1),
        "server_idle_cpu_percent": round(100 * idle_rate, 1),
        "cache_miss_scrape_ms": [round(1000 * m, 1) for m in misses],
        "machine": machine(),
        "deployment": str(dep.directory),
    }
    print_result(result, args.json)


def _value(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


if __name__ == "__main__":
    main()
