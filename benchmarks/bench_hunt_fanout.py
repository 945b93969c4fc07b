"""Hunt fan-out: from a hunt's start to 50% / 99% / 100% of its clients' results stored.

.venv/bin/python benchmarks/bench_hunt_fanout.py [--clients 1000 10000] [--processes 2]
    [--artifact Linux.Sys.Users] [--rows 1] [--workers N] [--dir DIR] [--profile FILE] [--json]

For each fleet size N: N simulated clients are enrolled straight into the datastore, the server
process starts, the simulator connects them all, then a hunt on every client (no label or OS
filter, no notification throttle) is created and started through the REST API. Each simulated
client answers with ``--rows`` canned rows. The datastore's stamps give the figures: the
hunt's ``started``, and each hunt flow's ``finished`` (written when the server stored the
client's last message, after all its rows were durably stored and acknowledged).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from fleet_common import (
    LoadTest,
    Profiler,
    ServerProcess,
    api_client,
    api_token,
    cleanup,
    deployment,
    machine,
    seed_clients,
    top_frames,
    wait_connections,
)


def quantile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(-(-fraction * len(ordered) // 1)) - 1))
    return round(ordered[index], 2)


def run(args: argparse.Namespace, count: int, directory: Path | None) -> dict[str, Any]:
    dep = deployment(directory)
    seed_clients(dep, count)
    api_token(dep)
    server = ServerProcess(dep, workers=args.workers)
    fleet = LoadTest(dep, count, processes=args.processes, rows=args.rows, ramp=args.ramp)
    with cleanup(fleet, server):
        server.start()
        fleet.start()
        held, connect_seconds = wait_connections(server, count, args.timeout, stall=20)
        time.sleep(3.0)
        profiler = Profiler(
            args.profile.with_suffix(f".{count}.txt") if args.profile else None,
            server.process.pid,
        )
        with api_client(dep) as api:
            body = {
                "artifacts": [{"name": args.artifact, "parameters": {}}],
                "description": f"fan-out benchmark, {count} clients",
                "notifications_per_second": None,
            }
            response = api.post("/hunts", json=body)
            response.raise_for_status()
            hunt_id = response.json()["hunt_id"]
            cpu0, t0 = server.cpu(), time.monotonic()
            profiler.start()
            api.post(f"/hunts/{hunt_id}/start").raise_for_status()
        done, stalled_at, best = 0, time.monotonic(), 0
        while time.monotonic() - t0 < args.hunt_timeout:
            time.sleep(0.5)
            with dep.db() as db:
                done = db.execute(
                    "SELECT count(*) FROM hunt_clients h JOIN flows f ON f.flow_id = h.flow_id "
                    "WHERE h.hunt_id = ? AND f.state = 'Finished'",
                    (hunt_id,),
                ).fetchone()[0]
            if done > best:
                best, stalled_at = done, time.monotonic()
            if done >= held or time.monotonic() - stalled_at > 30:
                break
        cpu1, t1 = server.cpu(), time.monotonic()
        profiler.stop()
        summary = fleet.stop()
        with dep.db() as db:
            started = db.execute("SELECT started FROM hunts WHERE hunt_id = ?", (hunt_id,))
            started = started.fetchone()[0]
            rows = db.execute(
                "SELECT h.scheduled, f.finished, f.state FROM hunt_clients h "
                "JOIN flows f ON f.flow_id = h.flow_id WHERE h.hunt_id = ?",
                (hunt_id,),
            ).fetchall()
    scheduled = [r[0] - started for r in rows]
    finished = [r[1] - started for r in rows if r[2] == "Finished" and r[1] is not None]
    # Percentiles of the clients connected when the hunt started (missing ones count as never).
    finished += [float("inf")] * max(0, held - len(finished))
    result = {
        "clients": count,
        "held": held,
        "seconds_to_connect": round(connect_seconds, 1),
        "scheduled": len(rows),
        "finished": sum(1 for r in rows if r[2] == "Finished"),
        "s_all_scheduled": quantile(scheduled, 1.0),
        "s_50": quantile(finished, 0.5),
        "s_99": quantile(finished, 0.99),
        "s_100": quantile(finished, 1.0),
        "server_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "sim_errors": summary.get("errors_by_kind"),
        "notes": server.notes,
        "deployment": str(dep.directory),
    }
    if profiler.path:
        result["profile"] = str(profiler.path)
        result["profile_top"] = top_frames(profiler.path, 25)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--processes", type=int, default=2, help="simulator processes")
    parser.add_argument("--ramp", type=float, default=1000.0, help="new connections/s offered")
    parser.add_argument("--artifact", default="Linux.Sys.Users")
    parser.add_argument("--rows", type=int, default=1, help="rows each client answers")
    parser.add_argument("--workers", type=int, default=1, help="server processes, if supported")
    parser.add_argument("--dir", type=Path, help="parent of the deployments (default: temp)")
    parser.add_argument("--timeout", type=float, default=300.0, help="to connect the fleet")
    parser.add_argument("--hunt-timeout", type=float, default=180.0)
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks (FILE.N.txt)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run(args, n, args.dir / f"hunt-{n}" if args.dir else None) for n in args.clients]
    out = {"runs": results, "machine": machine()}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{'clients':>8} {'held':>7} {'sched s':>8} {'50% s':>7} {'99% s':>7} {'100% s':>7} cpu%")
    for r in results:
        print(
            f"{r['clients']:>8} {r['held']:>7} {r['s_all_scheduled']!s:>8} {r['s_50']!s:>7} "
            f"{r['s_99']!s:>7} {r['s_100']!s:>7} {r['server_cpu_percent']}"
        )


if __name__ == "__main__":
    main()
