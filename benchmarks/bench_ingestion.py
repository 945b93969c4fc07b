"""Result ingestion through one frontend process: rows/s and MB/s, end to end.

.venv/bin/python benchmarks/bench_ingestion.py [--clients 20] [--rows 50000] [--row-bytes 190]
    [--processes 1] [--workers N] [--dir DIR] [--profile FILE] [--json]

``--clients`` simulated clients (enrolled straight into the datastore) connect to the server
process; a hunt on all of them starts through the REST API and each answers with ``--rows``
canned rows of ``--row-bytes`` payload (a row number and a string; stored as JSON lines of
about ``row-bytes + 20`` bytes), in batches of 1,000 rows as the real agent sends them, with
at most 64 unacknowledged messages each. Every batch crosses TLS and the websocket, is decoded,
durably appended to the filestore and recorded in the datastore before its acknowledgement.
Rate = stored rows (the flows' row counts) over the span from the first flow's start to the last
flow's end, as the server stamped them; MB/s counts the stored JSON bytes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fleet_common import (
    LoadTest,
    Profiler,
    ServerProcess,
    api_client,
    api_token,
    cleanup,
    cpu_seconds,
    deployment,
    machine,
    seed_clients,
    top_frames,
    wait_connections,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rows", type=int, default=50_000, help="rows per client")
    parser.add_argument("--row-bytes", type=int, default=190, help="payload bytes per row")
    parser.add_argument("--processes", type=int, default=1, help="simulator processes")
    parser.add_argument("--artifact", default="Linux.Sys.Users")
    parser.add_argument("--workers", type=int, default=1, help="server processes, if supported")
    parser.add_argument("--dir", type=Path, help="deployment directory (default: a new one)")
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks of the server")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    dep = deployment(args.dir)
    seed_clients(dep, args.clients)
    api_token(dep)
    server = ServerProcess(dep, workers=args.workers)
    fleet = LoadTest(
        dep, args.clients, processes=args.processes, rows=args.rows, row_bytes=args.row_bytes
    )
    with cleanup(fleet, server):
        server.start()
        fleet.start()
        held, _ = wait_connections(server, args.clients, 60, stall=10, every=0.5)
        time.sleep(2.0)
        profiler = Profiler(args.profile, server.process.pid)
        with api_client(dep) as api:
            body = {"artifacts": [{"name": args.artifact, "parameters": {}}]}
            hunt_id = api.post("/hunts", json=body).json()["hunt_id"]
            sims = fleet.procs()
            cpu0, sim0, t0 = server.cpu(), cpu_seconds(sims), time.monotonic()
            profiler.start()
            api.post(f"/hunts/{hunt_id}/start").raise_for_status()
        finished = 0
        while time.monotonic() - t0 < args.timeout and finished < held:
            time.sleep(0.5)
            with dep.db() as db:
                finished = db.execute(
                    "SELECT count(*) FROM hunt_clients h JOIN flows f ON f.flow_id = h.flow_id "
                    "WHERE h.hunt_id = ? AND f.state = 'Finished'",
                    (hunt_id,),
                ).fetchone()[0]
        cpu1, sim1, t1 = server.cpu(), cpu_seconds(sims), time.monotonic()
        profiler.stop()
        rss = server.rss()
        summary = fleet.stop()
        with dep.db() as db:
            rows, nbytes, first, last, flows = db.execute(
                "SELECT sum(f.row_count), sum(f.byte_count), min(f.started), max(f.finished), "
                "count(*) FROM hunt_clients h JOIN flows f ON f.flow_id = h.flow_id "
                "WHERE h.hunt_id = ? AND f.state = 'Finished'",
                (hunt_id,),
            ).fetchone()
    span = (last - first) if first and last else None
    result = {
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
        "server_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "sim_cpu_percent": round(100 * (sim1 - sim0) / (t1 - t0), 1),
        "server_rss_mb": round(rss / 1e6, 1),
        "sim_rows_sent": summary.get("rows_sent"),
        "sim_errors": summary.get("errors_by_kind"),
        "notes": server.notes,
        "machine": machine(),
        "deployment": str(dep.directory),
    }
    if args.profile:
        result["profile_top"] = top_frames(args.profile, 25)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:20} {value}")


if __name__ == "__main__":
    main()
