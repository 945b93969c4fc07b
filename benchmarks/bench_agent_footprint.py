"""The real agent's footprint: idle memory and CPU, and the cost of typical collections.

.venv/bin/python benchmarks/bench_agent_footprint.py [--idle 30] [--settle 10]
    [--artifacts Generic.System.Pslist Linux.Sys.Users] [--repeat 3] [--dir DIR] [--json]
    [--spare-workers N] [--spare-worker-idle SECONDS]

A server process and one real agent process (``python -m peregrine agent``) on loopback. Once the
agent has enrolled and its interrogation is stored, it is left alone for ``--settle`` seconds,
then its RSS and CPU are measured over ``--idle`` seconds. Then each artifact is collected
``--repeat`` times through the REST API; for each: wall time (the server's stamps, from the
flow's creation to its last message stored), the agent's CPU (its own plus its query workers',
which run each source in a child process), and its peak RSS, the agent and its workers summed,
sampled every 10 ms.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import psutil

from fleet_common import (
    AgentProcess,
    ServerProcess,
    api_client,
    api_token,
    cleanup,
    cpu_seconds,
    deployment,
    interrogated_client,
    machine,
    probe_line,
    probe_machine,
    rss,
)


def collect(dep: Any, api: Any, agent: AgentProcess, client_id: str, name: str) -> dict[str, Any]:
    procs0 = agent.procs()
    cpu0 = cpu_seconds(procs0)
    peak = 0
    response = api.post(
        "/collections",
        json={"client_id": client_id, "artifacts": [{"name": name, "parameters": {}}]},
    )
    response.raise_for_status()
    flow_id = response.json()["flow_id"]
    deadline = time.monotonic() + 120
    state = None
    next_check = 0.0
    while time.monotonic() < deadline:
        peak = max(peak, rss(agent.procs()))
        now = time.monotonic()
        if now >= next_check:
            next_check = now + 0.1
            with dep.db() as db:
                state = db.execute(
                    "SELECT state FROM flows WHERE flow_id = ?", (flow_id,)
                ).fetchone()[0]
            if state in ("Finished", "Error", "Cancelled"):
                break
        time.sleep(0.01)
    time.sleep(0.3)  # workers reaped: their CPU is in children_* now
    cpu1 = cpu_seconds(agent.procs())
    with dep.db() as db:
        created, _started, finished, rows, nbytes = db.execute(
            "SELECT created, started, finished, row_count, byte_count FROM flows WHERE flow_id = ?",
            (flow_id,),
        ).fetchone()
    return {
        "artifact": name,
        "state": state,
        "rows": rows,
        "kb_stored": round((nbytes or 0) / 1000, 1),
        "wall_s": round(finished - created, 3) if finished else None,
        "cpu_s": round(cpu1 - cpu0, 3),
        "peak_rss_mb": round(peak / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=float, default=30.0, help="idle seconds measured")
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument(
        "--artifacts", nargs="+", default=["Generic.System.Pslist", "Linux.Sys.Users"]
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="deployment directory (default: a new one)")
    parser.add_argument(
        "--spare-workers", type=int, help="the agent's spare_workers (default: its configuration's)"
    )
    parser.add_argument(
        "--spare-worker-idle",
        type=float,
        help="the agent's spare_worker_idle: below --settle, the idle figures are of an agent "
        "whose spares have been stopped",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    probe_machine(getattr(args, "dir", None))  # before the run loads the machine

    dep = deployment(args.dir)
    api_token(dep)
    server = ServerProcess(dep)
    changes = {
        key: value
        for key, value in (
            ("spare_workers", args.spare_workers),
            ("spare_worker_idle", args.spare_worker_idle),
        )
        if value is not None
    }
    agent = AgentProcess.in_deployment(dep, **changes)
    with cleanup(agent, server):
        server.start()
        agent.start()
        client_id = interrogated_client(dep)
        time.sleep(args.settle)
        procs = agent.procs()
        rss_start = rss(procs)
        cpu0, t0 = cpu_seconds(procs), time.monotonic()
        samples = []
        while time.monotonic() - t0 < args.idle:
            time.sleep(1.0)
            samples.append(rss(agent.procs()))
        cpu1, t1 = cpu_seconds(agent.procs()), time.monotonic()
        uss = psutil.Process(agent.proc.pid).memory_full_info().uss  # type: ignore[union-attr]
        idle = {
            "rss_mb": round(max(samples) / 1e6, 1),
            "rss_mb_at_start": round(rss_start / 1e6, 1),
            "uss_mb": round(uss / 1e6, 1),
            "agent_rss_mb": round(rss(procs[:1]) / 1e6, 1),  # without its spare workers
            "processes": len(procs),
            "cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
            "seconds": round(t1 - t0, 1),
        }
        runs = []
        with api_client(dep) as api:
            for name in args.artifacts:
                for _ in range(args.repeat):
                    runs.append(collect(dep, api, agent, client_id, name))
        rss_after = rss(agent.procs())
    result = {
        "idle": idle,
        "collections": runs,
        "rss_mb_after_collections": round(rss_after / 1e6, 1),
        "machine": machine(),
        "deployment": str(dep.directory),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(probe_line(result["machine"]["probes"]))
    print("idle:", idle)
    print(f"{'artifact':28} {'rows':>6} {'wall s':>7} {'cpu s':>6} {'peak MB':>8}")
    for r in runs:
        print(
            f"{r['artifact']:28} {r['rows']!s:>6} {r['wall_s']!s:>7} {r['cpu_s']!s:>6} "
            f"{r['peak_rss_mb']!s:>8}"
        )
    print("RSS after collections:", result["rss_mb_after_collections"], "MB")


if __name__ == "__main__":
    main()
