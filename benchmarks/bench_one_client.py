"""One client, one question: from the API request to the rows read back (issue 17).

.venv/bin/python benchmarks/bench_one_client.py [--runs 20] [--warmup 3]
    [--cases pslist,hash,hunt] [--spare-workers N] [--dir DIR] [--json]
.venv/bin/python benchmarks/bench_one_client.py --worker-ab [--runs 20]
.venv/bin/python benchmarks/bench_one_client.py --query-only [--runs 20]

A server process (``peregrine server --no-local-agent``) and one real agent process
(``peregrine agent``) connected to it over TLS on loopback. Each run goes through the REST API
with a token, as an analyst's script would (``peregrine.client``): create the collection (or a
one-client hunt and start it), wait for it to end on its live event stream (SSE: no polling
interval of our own), then read its rows back. Cases:

* ``pslist``: a collection of ``Generic.System.Pslist`` (GRR's ListProcesses);
* ``hash``: ``Generic.Files.Finder`` hashing one file (GRR's FileFinder with a hash action;
  the artifact has a precondition, so it runs two queries);
* ``hunt``: a hunt of ``Generic.System.Pslist`` over the one client, created started
  (``start=True``: one request; before 2026-12-03 a create and a start).

Each run's wall time is split by the server's own stamps in its datastore (read-only): request
→ flow created, created → the agent's FlowStarted stored (delivery, the agent's job start),
started → FlowFinished stored, of which the source's own time on the agent (worker start and
query, as the agent measured it), and the time from the flow's end until the rows were read
(the event stream's wake-up and the result page).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleet_common import (
    AgentProcess,
    ServerProcess,
    api_token,
    cleanup,
    deployment,
    interrogated_client,
    machine,
    print_result,
)
from peregrine.client import Peregrine

PSLIST = "Generic.System.Pslist"
HASH_CALL = ("Generic.Files.Finder", {"PathGlob": ["/etc/passwd"], "Hash": True})


def client_for(dep: Any) -> Peregrine:
    return Peregrine(
        f"https://127.0.0.1:{dep.api_port}",
        api_token(dep),
        ca_cert=dep.directory / "ca.pem",
        timeout=60,
    )


def flow_split(dep: Any, flow_id: str, t0: float, read: float) -> dict[str, float]:
    """Where a run's time went, from the server's stamps (wall clock, same machine)."""
    with dep.db() as db:
        created, started, finished, sources = db.execute(
            "SELECT created, started, finished, sources FROM flows WHERE flow_id = ?", (flow_id,)
        ).fetchone()
    agent = sum(s.get("elapsed") or 0.0 for s in json.loads(sources or "{}").values())
    return {
        "to_created": created - t0,
        "created_to_started": (started or created) - created,
        "started_to_finished": (finished or started or created) - (started or created),
        "agent_sources": agent,
        "finished_to_read": read - (finished or created),
    }


def run_collection(dep: Any, api: Peregrine, client_id: str, call: Any) -> dict[str, Any]:
    name, parameters = call
    t0 = time.time()
    flow = api.collections.create(client_id, [(name, parameters)])
    final = api.collections.wait(flow.flow_id, timeout=120)
    page = api.collections.results(flow.flow_id, name, limit=1000)
    read = time.time()
    if final.state != "Finished" or not page.rows:
        raise RuntimeError(f"{name}: {final.state} {final.error} with {len(page.rows)} rows")
    return {"wall": read - t0, "rows": len(page.rows), **flow_split(dep, flow.flow_id, t0, read)}


def run_hunt(dep: Any, api: Peregrine, client_id: str) -> dict[str, Any]:
    t0 = time.time()
    hunt = api.hunts.create(PSLIST, client_limit=1, description="bench_one_client", start=True)
    for progress in api.hunts.watch(hunt.hunt_id, timeout=120):
        if progress.finished + progress.errors >= 1:
            break
    page = api.hunts.results(hunt.hunt_id, PSLIST, limit=1000)
    read = time.time()
    api.hunts.stop(hunt.hunt_id)
    if not page.rows:
        raise RuntimeError(f"hunt {hunt.hunt_id}: no rows")
    [member] = api.hunts.clients(hunt.hunt_id)
    return {"wall": read - t0, "rows": len(page.rows), **flow_split(dep, member.flow_id, t0, read)}


def worker_ab(runs: int, pause: float) -> dict[str, Any]:
    """The query worker alone, in this process: the process listing's query in a worker started
    for it (as before) and in a warm spare, alternating, so both see the same load."""
    from peregrine.engine.spare import SpareWorkers
    from peregrine.engine.worker import IsolatedQuery

    sql = "SELECT pid, ppid, name, exe, cmdline, username, create_time, rss, status FROM pslist()"
    spares = SpareWorkers(2, idle_seconds=0)
    times: dict[str, list[float]] = {"started": [], "spare": []}
    try:
        spares.fill()
        for _ in range(runs):
            for kind, workers in (("started", None), ("spare", spares)):
                time.sleep(pause)  # the spares warm up again meanwhile
                t0 = time.perf_counter()
                rows = list(IsolatedQuery(sql, workers=workers))
                times[kind].append(time.perf_counter() - t0)
                assert rows
    finally:
        spares.close()
    return {f"{kind}_p50_s": round(statistics.median(t), 3) for kind, t in times.items()} | {
        f"{kind}_max_s": round(max(t), 3) for kind, t in times.items()
    }


def query_only(runs: int) -> dict[str, Any]:
    """The process listing's query (``Generic.System.Pslist``'s) in this process, no worker:
    wall and CPU time per run, best and median, and how many processes it listed."""
    from peregrine.engine.executor import Engine

    engine = Engine()
    sql = (
        "SELECT pid, ppid, name, exe, cmdline, username, create_time, rss, status FROM pslist() "
        "WHERE (name REGEXP :r OR cmdline REGEXP :r) AND (:k OR exe IS NOT NULL)"
    )
    wall, cpu, rows = [], [], 0
    for _ in range(runs):
        started, used = time.perf_counter(), time.process_time()
        rows = len(list(engine.execute(sql, {"r": ".", "k": False})))
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    processes = len(list(engine.execute("SELECT pid FROM pslist()")))
    return {
        "processes": processes,
        "rows": rows,
        "wall_ms_best": round(1000 * min(wall), 1),
        "wall_ms_p50": round(1000 * statistics.median(wall), 1),
        "cpu_ms_best": round(1000 * min(cpu), 1),
        "cpu_ms_p50": round(1000 * statistics.median(cpu), 1),
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = sorted(r["wall"] for r in runs)
    out: dict[str, Any] = {
        "runs": len(runs),
        "rows": runs[-1]["rows"],
        "p50_s": round(statistics.median(walls), 3),
        "p90_s": round(walls[min(len(walls) - 1, int(0.9 * len(walls)))], 3),
        "max_s": round(walls[-1], 3),
        "min_s": round(walls[0], 3),
    }
    for key in ("to_created", "created_to_started", "started_to_finished", "agent_sources"):
        out[f"{key}_p50_s"] = round(statistics.median(r[key] for r in runs), 3)
    out["finished_to_read_p50_s"] = round(statistics.median(r["finished_to_read"] for r in runs), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="runs of each case not counted")
    parser.add_argument("--cases", default="pslist,hash,hunt")
    parser.add_argument(
        "--worker-ab",
        action="store_true",
        help="only the query worker, started vs spare, in this process (no server, no agent)",
    )
    parser.add_argument(
        "--query-only",
        action="store_true",
        help="only the process listing's query, in this process (no worker, server or agent)",
    )
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between runs")
    parser.add_argument(
        "--spare-workers",
        type=int,
        help="the agent's spare_workers (default: its configuration's; 0: a worker started "
        "for every query, as before issue 17)",
    )
    parser.add_argument("--dir", type=Path, help="deployment directory (default: a new one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.query_only:
        load = os.getloadavg()[0]
        result = query_only(args.runs)
        result |= {"load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}
        print_result({**result, "machine": machine()}, args.json)
        return
    if args.worker_ab:
        load = os.getloadavg()[0]
        result = worker_ab(args.runs, max(args.pause, 1.0))
        result |= {"load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}
        print_result({**result, "machine": machine()}, args.json)
        return

    dep = deployment(args.dir)
    api_token(dep)
    server = ServerProcess(dep)
    changes = {} if args.spare_workers is None else {"spare_workers": args.spare_workers}
    agent = AgentProcess.in_deployment(dep, **changes)
    cases: dict[str, Callable[[Any, Peregrine, str], dict[str, Any]]] = {
        "pslist": lambda d, a, c: run_collection(d, a, c, (PSLIST, {})),
        "hash": lambda d, a, c: run_collection(d, a, c, HASH_CALL),
        "hunt": run_hunt,
    }
    result: dict[str, Any] = {}
    with cleanup(agent, server):
        server.start()
        agent.start()
        client_id = interrogated_client(dep)
        with client_for(dep) as api:
            for case in args.cases.split(","):
                run = cases[case]
                for _ in range(args.warmup):
                    run(dep, api, client_id)
                    time.sleep(args.pause)
                load = os.getloadavg()[0]
                runs = []
                for _ in range(args.runs):
                    runs.append(run(dep, api, client_id))
                    time.sleep(args.pause)
                result[case] = {
                    **summary(runs),
                    "load_before": round(load, 2),
                    "load_after": round(os.getloadavg()[0], 2),
                }
    result["spare_workers"] = args.spare_workers
    result["machine"] = machine()
    result["deployment"] = str(dep.directory)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print_result(result, False)


if __name__ == "__main__":
    main()
