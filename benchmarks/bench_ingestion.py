"""Result ingestion through one frontend process (or a cluster): rows/s and MB/s, end to end.

.venv/bin/python benchmarks/bench_ingestion.py [--clients 20] [--rows 50000] [--row-bytes 190]
    [--target embedded,cluster3] [--processes 1] [--workers N] [--dir DIR] [--profile FILE]
    [--json]

``--clients`` simulated clients (enrolled straight into the datastore) connect to the server
process; a hunt on all of them starts through the REST API and each answers with ``--rows``
canned rows of ``--row-bytes`` payload (a row number and a string; stored as JSON lines of
about ``row-bytes + 20`` bytes), in batches of 1,000 rows as the real agent sends them, with
at most 64 unacknowledged messages each. Every batch crosses TLS and the websocket, is decoded,
durably appended to the filestore and recorded in the datastore before its acknowledgement.
Rate = stored rows (the flows' row counts) over the span from the first flow's start to the last
flow's end, as the server stamped them; MB/s counts the stored JSON bytes. ``--target``
runs the same against the embedded server and/or a cluster of N frontends (``clusterN``: on
PostgreSQL, Redis and HAProxy, see ``fleet_targets.py``), one after the other, and reports
each with its CPU by component and the shared services' counters.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from fleet_common import (
    LoadTest,
    Profiler,
    cpu_seconds,
    machine,
    probe_line,
    probe_machine,
    top_frames,
    wait_connections,
)
from fleet_targets import (
    add_target_options,
    delta,
    load_average,
    make_target,
    parse_targets,
    wait_for_quiet,
)


def finished(target: Any, hunt_id: str) -> int:
    return int(
        target.query(
            "SELECT count(*) FROM hunt_clients h JOIN flows f ON f.flow_id = h.flow_id "
            "WHERE h.hunt_id = ? AND f.state = 'Finished'",
            (hunt_id,),
        )[0][0]
    )


def run(args: argparse.Namespace, name: str) -> dict[str, Any]:
    directory = args.dir / f"ingest-{name}" if args.dir else None
    target = make_target(name, directory, args.workers, args.cluster_agents)
    with target.running(args.clients):
        fleet = LoadTest(
            target, args.clients, processes=args.processes, rows=args.rows,
            row_bytes=args.row_bytes,
        )  # fmt: skip
        try:
            fleet.start()
            held, _ = wait_connections(target, args.clients, 60, stall=10, every=0.5)
            time.sleep(2.0)
            profiler = Profiler(args.profile, target.pid)
            with target.api() as api:
                body = {"artifacts": [{"name": args.artifact, "parameters": {}}]}
                hunt_id = api.post("/hunts", json=body).json()["hunt_id"]
                load = wait_for_quiet(args.quiet_load, args.quiet_wait)
                sims = fleet.procs()
                before = target.counters()
                cpu0, sim0, t0 = target.cpu(), cpu_seconds(sims), time.monotonic()
                profiler.start()
                api.post(f"/hunts/{hunt_id}/start").raise_for_status()
            done = 0
            while time.monotonic() - t0 < args.timeout and done < held:
                time.sleep(0.5)
                done = finished(target, hunt_id)
            cpu1, sim1, t1 = target.cpu(), cpu_seconds(sims), time.monotonic()
            profiler.stop()
            rss = target.rss()
        finally:
            summary = fleet.stop()
        time.sleep(target.stats_lag)
        counters = delta(before, target.counters())
        rows, nbytes, first, last, flows = target.query(
            "SELECT sum(f.row_count), sum(f.byte_count), min(f.started), max(f.finished), "
            "count(*) FROM hunt_clients h JOIN flows f ON f.flow_id = h.flow_id "
            "WHERE h.hunt_id = ? AND f.state = 'Finished'",
            (hunt_id,),
        )[0]
    span = (last - first) if first and last else None
    result = {
        "target": target.name,
        "load_average": load,
        "clients": args.clients,
        "held": held,
        "rows_per_client": args.rows,
        "flows_finished": flows,
        "rows_stored": rows,
        "mb_stored": round((nbytes or 0) / 1e6, 1),
        "bytes_per_row": round(nbytes / rows, 1) if rows else None,
        "seconds": round(span, 2) if span else None,
        "rows_per_second": round(rows / span) if span else None,
        "mb_per_second": round(nbytes / span / 1e6, 1) if span else None,
        "cpu_percent": {k: round(100 * (cpu1[k] - cpu0[k]) / (t1 - t0), 1) for k in cpu1},
        "server_cpu_percent": round(100 * sum(cpu1[k] - cpu0[k] for k in cpu1) / (t1 - t0), 1),
        "sim_cpu_percent": round(100 * (sim1 - sim0) / (t1 - t0), 1),
        "server_rss_mb": round(rss / 1e6, 1),
        "counters": counters,
        "sim_rows_sent": summary.get("rows_sent"),
        "sim_errors": summary.get("errors_by_kind"),
        "notes": target.notes,
        "deployment": str(target.directory),
    }
    if args.profile:
        result["profile_top"] = top_frames(args.profile, 25)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rows", type=int, default=50_000, help="rows per client")
    parser.add_argument("--row-bytes", type=int, default=190, help="payload bytes per row")
    add_target_options(parser)
    parser.add_argument("--processes", type=int, default=1, help="simulator processes")
    parser.add_argument("--artifact", default="Linux.Sys.Users")
    parser.add_argument("--workers", type=int, default=1, help="server processes, if supported")
    parser.add_argument("--dir", type=Path, help="parent of the deployments (default: temp)")
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks of the server")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    probe_machine(getattr(args, "dir", None))  # before the run loads the machine
    results = []
    for name in parse_targets(args.target):
        results.append(run(args, name))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # kept if later runs fail
    out = {"runs": results, "machine": machine(), "load_average_end": load_average()}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(probe_line(out["machine"]["probes"]))
    for result in results:
        for key, value in result.items():
            print(f"{key:20} {value}")
        print()


if __name__ == "__main__":
    main()
