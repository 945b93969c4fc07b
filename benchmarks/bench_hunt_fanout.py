"""Hunt fan-out: from a hunt's start to 50% / 99% / 100% of its clients' results stored.

.venv/bin/python benchmarks/bench_hunt_fanout.py [--clients 1000 10000] [--processes 2]
    [--target embedded,cluster3] [--cluster-agents balancer|frontends] [--idle 20]
    [--artifact Linux.Sys.Users] [--rows 1] [--workers N] [--dir DIR] [--profile FILE] [--json]

For each target and fleet size N: N simulated clients are enrolled straight into the
datastore, the server (``embedded``: one process on SQLite; ``cluster3``: three frontends on
PostgreSQL, Redis and HAProxy) starts, the simulator connects them all, then a hunt on every
client (no label or OS filter, no notification throttle) is created and started through the
REST API. Each simulated client answers with ``--rows`` canned rows. The datastore's stamps
give the figures: the hunt's ``started``, and each hunt flow's ``finished`` (written when the
server stored the client's last message, after all its rows were durably stored and
acknowledged). Before the hunt, ``--idle`` seconds of the connected fleet doing nothing are
measured too; for a cluster, both windows count PostgreSQL transactions and WAL, Redis
commands and the filestore's bytes (what ``docs/scaling.md`` extrapolates from).
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
    machine,
    probe_line,
    probe_machine,
    top_frames,
    wait_connections,
)
from fleet_targets import (
    Cluster,
    Embedded,
    add_target_options,
    delta,
    load_average,
    make_target,
    parse_targets,
    wait_for_quiet,
)


def quantile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(-(-fraction * len(ordered) // 1)) - 1))
    return round(ordered[index], 2)


def _finished(target: Embedded | Cluster, hunt_id: str) -> int:
    return int(
        target.query(
            "SELECT count(*) FROM hunt_clients h JOIN flows f ON f.flow_id = h.flow_id "
            "WHERE h.hunt_id = ? AND f.state = 'Finished'",
            (hunt_id,),
        )[0][0]
    )


def _rates(cpu0: dict[str, float], cpu1: dict[str, float], seconds: float) -> dict[str, float]:
    return {k: round(100 * (cpu1[k] - cpu0[k]) / seconds, 1) for k in cpu1}


def _window(target: Embedded | Cluster, seconds: float) -> dict[str, Any]:
    """The connected fleet left alone for ``seconds``: CPU by component and counters (read
    at both ends, so the statistics' lag cancels out in a steady state)."""
    before, cpu0, t0 = target.counters(), target.cpu(), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = target.cpu(), time.monotonic()
    return {
        "seconds": round(t1 - t0, 1),
        "cpu_percent": _rates(cpu0, cpu1, t1 - t0),
        "counters": delta(before, target.counters()),
    }


def _net_per_flow(
    burst: dict[str, Any], idle: dict[str, Any] | None, flows: int
) -> dict[str, float]:
    """A burst's counters less what the idle fleet does in as long, per flow."""
    if not flows:
        return {}
    seconds = burst["seconds"]
    quiet = idle["counters"] if idle else {}
    rate = {k: v / idle["seconds"] for k, v in quiet.items() if idle and isinstance(v, int | float)}
    return {
        k: round((v - rate.get(k, 0) * seconds) / flows, 2)
        for k, v in burst["counters"].items()
        if isinstance(v, int | float)
    }


def run(args: argparse.Namespace, name: str, count: int, directory: Path | None) -> dict[str, Any]:
    target = make_target(name, directory, args.workers, args.cluster_agents)
    load = load_average()
    lag = target.stats_lag
    with target.running(count):
        fleet = LoadTest(target, count, processes=args.processes, rows=args.rows, ramp=args.ramp)
        try:
            before, t0 = target.counters(), time.monotonic()
            fleet.start()
            held, connect_seconds = wait_connections(target, count, args.timeout, stall=20)
            time.sleep(3.0 + lag)  # the connections' statistics reach PostgreSQL's view
            connect = {
                "seconds": round(time.monotonic() - t0, 1),
                "counters": delta(before, target.counters()),
            }
            idle = _window(target, args.idle) if args.idle else None
            result = _hunt(args, target, count, held, lag)
        finally:
            summary = fleet.stop()
        result.update(
            target=target.name,
            load_average=load,
            seconds_to_connect=round(connect_seconds, 1),
            connect=connect,
            idle=idle,
            per_flow=_net_per_flow(result["hunt"], idle, result["finished"]),
            sim_errors=summary.get("errors_by_kind"),
            notes=target.notes,
            deployment=str(target.directory),
        )
    return result


def _hunt(
    args: argparse.Namespace, target: Embedded | Cluster, count: int, held: int, lag: float
) -> dict[str, Any]:
    profiler = Profiler(
        args.profile.with_suffix(f".{count}.txt") if args.profile else None, target.pid
    )
    with target.api() as api:
        body = {
            "artifacts": [{"name": args.artifact, "parameters": {}}],
            "description": f"fan-out benchmark, {count} clients",
            "notifications_per_second": None,
        }
        response = api.post("/hunts", json=body)
        response.raise_for_status()
        hunt_id = response.json()["hunt_id"]
        load = wait_for_quiet(args.quiet_load, args.quiet_wait)
        before = target.counters()
        cpu0, t0 = target.cpu(), time.monotonic()
        profiler.start()
        api.post(f"/hunts/{hunt_id}/start").raise_for_status()
    done, stalled_at, best = 0, time.monotonic(), 0
    while time.monotonic() - t0 < args.hunt_timeout:
        time.sleep(0.5)
        done = _finished(target, hunt_id)
        if done > best:
            best, stalled_at = done, time.monotonic()
        if done >= held or time.monotonic() - stalled_at > 30:
            break
    cpu1, t1 = target.cpu(), time.monotonic()
    profiler.stop()
    time.sleep(lag)
    counters = delta(before, target.counters())
    counted = time.monotonic() - t0
    started = target.query("SELECT started FROM hunts WHERE hunt_id = ?", (hunt_id,))[0][0]
    rows = target.query(
        "SELECT h.scheduled, f.finished, f.state FROM hunt_clients h "
        "JOIN flows f ON f.flow_id = h.flow_id WHERE h.hunt_id = ?",
        (hunt_id,),
    )
    scheduled = [r[0] - started for r in rows]
    finished = [r[1] - started for r in rows if r[2] == "Finished" and r[1] is not None]
    # Percentiles of the clients connected when the hunt started (missing ones count as never).
    finished += [float("inf")] * max(0, held - len(finished))
    result: dict[str, Any] = {
        "clients": count,
        "held": held,
        "scheduled": len(rows),
        "finished": sum(1 for r in rows if r[2] == "Finished"),
        "s_all_scheduled": quantile(scheduled, 1.0),
        "s_50": quantile(finished, 0.5),
        "s_99": quantile(finished, 0.99),
        "s_100": quantile(finished, 1.0),
        "load_at_hunt": load,
        "cpu_percent": _rates(cpu0, cpu1, t1 - t0),
        "cpu_seconds": {k: round(cpu1[k] - cpu0[k], 2) for k in cpu1},
        "hunt": {"seconds": round(counted, 1), "measured": round(t1 - t0, 1), "counters": counters},
    }
    result["server_cpu_percent"] = round(sum(result["cpu_percent"].values()), 1)
    if profiler.path:
        result["profile"] = str(profiler.path)
        result["profile_top"] = top_frames(profiler.path, 25)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 10_000])
    add_target_options(parser)
    parser.add_argument("--idle", type=float, default=20.0, help="idle seconds measured first")
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
    probe_machine(getattr(args, "dir", None))  # before the run loads the machine
    results = []
    for n in args.clients:
        for name in parse_targets(args.target):
            results.append(run(args, name, n, args.dir / f"hunt-{name}-{n}" if args.dir else None))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # kept if later runs fail
    out = {"runs": results, "machine": machine()}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(probe_line(out["machine"]["probes"]))
    print(f"{'target':>10} {'clients':>8} {'held':>7} {'sched s':>8} {'50% s':>7} {'99% s':>7} "
          f"{'100% s':>7} {'load':>5} cpu% by component")  # fmt: skip
    for r in results:
        print(
            f"{r['target']:>10} {r['clients']:>8} {r['held']:>7} {r['s_all_scheduled']!s:>8} "
            f"{r['s_50']!s:>7} {r['s_99']!s:>7} {r['s_100']!s:>7} {r['load_average']:>5} "
            f"{r['cpu_percent']}"
        )


if __name__ == "__main__":
    main()
