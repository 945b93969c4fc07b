"""Connected agents one server holds, and the server's memory and CPU per idle agent.

.venv/bin/python benchmarks/bench_agents_held.py [--clients 19000] [--processes 2]
    [--ramp 1000] [--hold 20] [--workers N] [--stall 20] [--dir DIR] [--json]

The simulated clients are enrolled (and given interrogation facts) straight into the datastore
first, so this measures connections, not enrollment (``bench_enrollment.py`` does that). Then
the server process starts and its memory is taken with no agent connected; the simulator (in
``--processes`` processes) connects every client at ``--ramp`` a second; once the server holds
them all (ESTABLISHED sockets on its agent port) or the count stops growing, the fleet stays
idle for ``--hold`` seconds, over which the server's CPU is measured, and its memory is taken
again. Memory per agent = (RSS with N connected - RSS with none) / N.
"""

from __future__ import annotations

import argparse
import time

import psutil

from fleet_common import (
    LoadTest,
    ServerProcess,
    cleanup,
    cpu_seconds,
    deployment,
    fleet_options,
    machine,
    print_result,
    probe_machine,
    rss,
    seed_clients,
    wait_connections,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    fleet_options(parser, clients=19_000)
    parser.add_argument("--hold", type=float, default=20.0, help="idle seconds measured")
    parser.add_argument("--workers", type=int, default=1, help="server processes, if supported")
    parser.add_argument(
        "--stall", type=float, default=20.0, help="give up once held stops growing this long"
    )
    args = parser.parse_args()
    probe_machine(getattr(args, "dir", None))  # before the run loads the machine

    dep = deployment(args.dir)
    t = time.perf_counter()
    seeded = seed_clients(dep, args.clients)
    seed_seconds = time.perf_counter() - t
    server = ServerProcess(dep, workers=args.workers)
    fleet = LoadTest(dep, args.clients, processes=args.processes, ramp=args.ramp)
    with cleanup(fleet, server):
        # Every process loads the client index first: 100,000 clients take a while.
        server.start(timeout=args.timeout)
        time.sleep(3.0)
        rss0, fds0 = server.rss(), server.fds()
        ramp_cpu0 = server.cpu()
        fleet.start()
        ramp_sim_cpu0 = cpu_seconds(fleet.procs())  # its slices start later, from zero
        _, connect_seconds = wait_connections(server, args.clients, args.timeout, stall=args.stall)
        # What connecting cost each side: where the box runs out while agents come.
        ramp_cpu = server.cpu() - ramp_cpu0
        ramp_sim_cpu = cpu_seconds(fleet.procs()) - ramp_sim_cpu0
        held_ramp = server.agent_connections()
        time.sleep(3.0)  # handshakes and check-ins that were still under way
        sims = fleet.procs()
        cpu0, sim_cpu0, t0 = server.cpu(), cpu_seconds(sims), time.monotonic()
        time.sleep(args.hold)
        cpu1, sim_cpu1, t1 = server.cpu(), cpu_seconds(sims), time.monotonic()
        held_end = server.agent_connections()
        rss1, fds1 = server.rss(), server.fds()
        fds_max = max((p.num_fds() for p in server.procs()), default=0)
        available = psutil.virtual_memory().available
        sim_rss = rss(sims)
        summary = fleet.stop()
        log_tail = [
            line
            for line in (dep.directory / "server.log").read_text(errors="replace").splitlines()
            if "Too many open files" in line or "ERROR" in line
        ][-3:]
    per_agent = (rss1 - rss0) / held_end if held_end else None
    result = {
        "clients": args.clients,
        "seeded_now": seeded,
        "seed_seconds": round(seed_seconds, 1),
        "held": held_end,
        "seconds_to_connect": round(connect_seconds, 1),
        "server_rss_mb_idle_0": round(rss0 / 1e6, 1),
        "server_rss_mb_held": round(rss1 / 1e6, 1),
        "server_kb_per_agent": round(per_agent / 1000, 1) if per_agent else None,
        "server_fds": [fds0, fds1],
        "server_fds_most_in_one_process": fds_max,
        "ramp_server_cpu_s": round(ramp_cpu, 1),
        "ramp_sim_cpu_s": round(ramp_sim_cpu, 1),
        "ramp_server_cpu_ms_per_connection": round(1000 * ramp_cpu / max(held_ramp, 1), 2),
        "ramp_sim_cpu_ms_per_connection": round(1000 * ramp_sim_cpu / max(held_ramp, 1), 2),
        "ramp_cores_used": round((ramp_cpu + ramp_sim_cpu) / max(connect_seconds, 1e-9), 2),
        "memory_available_gb_at_end": round(available / 1e9, 1),
        "server_cpu_percent_idle": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "sim_rss_mb": round(sim_rss / 1e6, 1),
        "sim_kb_per_agent": round(sim_rss / max(held_end, 1) / 1000, 1),
        "sim_cpu_percent_idle": round(100 * (sim_cpu1 - sim_cpu0) / (t1 - t0), 2),
        "sim_errors": summary.get("errors_by_kind"),
        "sim_connected": summary.get("connected"),
        "connect_ms_p50": summary.get("connect_ms_p50"),
        "connect_ms_p99": summary.get("connect_ms_p99"),
        "server_log_errors": log_tail,
        "workers": args.workers,
        "notes": server.notes,
        "machine": machine(),
        "deployment": str(dep.directory),
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
