"""Cluster fail-over: how long a 3-frontend cluster takes to recover from losing a frontend.

.venv/bin/python benchmarks/bench_failover.py [--clients 300] [--rounds 3]
    [--postgres-url URL] [--json]

A development cluster (``peregrine.cluster.devcluster``: PostgreSQL, Redis, HAProxy, three
``peregrine server`` processes) and a simulated fleet connected through HAProxy with the
generated ``client.yaml`` (the agents' defaults: reconnect after half to all of
``poll_min`` = 1 s, backoff doubling on failures). Each round measures, from the event:

* ``kill -9`` of a frontend that is not the leader: until every simulated agent is connected
  (welcomed) again, and until HAProxy has the frontend out of its agents' pool;
* ``kill -9`` of the leader: until another frontend holds the advisory lock (PostgreSQL's
  ``pg_locks``, polled every 50 ms);
* a graceful stop (SIGTERM) of a frontend: until the process has exited (the drain), and the
  first and last moment one of its agents was welcomed elsewhere.

The stopped frontend is started again (and waited for) after each measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from peregrine.cluster.devcluster import DevCluster
from peregrine.config import load_client_config
from peregrine.loadtest import Fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres-url", help="make the database on this server")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="peregrine-failover-"))
    work.chmod(0o755)  # as root, our own PostgreSQL runs as postgres
    cluster = DevCluster.up(
        work / "cluster", 3, postgres_url=args.postgres_url, postgres_dir=work / "pg"
    )
    try:
        rounds = asyncio.run(_measure(cluster, args.clients, args.rounds, work / "keys"))
    finally:
        cluster.down()
        shutil.rmtree(work, ignore_errors=True)
    report = {"clients": args.clients, "rounds": rounds, "median": _medians(rounds)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.clients} simulated agents, 3 frontends; seconds from the event")
    for key, value in report["median"].items():
        values = ", ".join(f"{r[key]:.2f}" for r in rounds)
        print(f"  {key:<34} median {value:6.2f}   ({values})")


async def _measure(cluster: DevCluster, clients: int, rounds: int, keys: Path) -> list[Any]:
    fleet = Fleet(
        load_client_config(Path(cluster.state.client_config)), clients, key_dir=keys,
        ramp_per_second=200, rows=1,
    )  # fmt: skip
    await fleet.start()
    await fleet.wait_connected(clients, timeout=180)
    results = []
    try:
        for _ in range(rounds):
            leader = await _wait(cluster.leader, 30)
            others = [f.name for f in cluster.state.frontends if f.name != leader]
            row: dict[str, float] = {}
            row["kill: agents reconnected"], row["kill: out of HAProxy's pool"] = await _kill(
                cluster, fleet, others[0]
            )
            row["leader kill: new leader"] = await _kill_leader(cluster, leader)
            row["graceful stop: exited (drain)"], first, last = await _graceful(
                cluster, fleet, others[1]
            )
            row["graceful stop: first agent moved"] = first
            row["graceful stop: last agent moved"] = last
            results.append(row)
    finally:
        await fleet.stop()
    return results


async def _kill(cluster: DevCluster, fleet: Fleet, name: str) -> tuple[float, float]:
    started = time.monotonic()
    cluster.kill_frontend(name)
    await _wait(lambda: fleet.connected < fleet.count, 10, 0.005)
    out_of_pool = _wait(lambda: cluster.pool().get(f"agents/{name}") != "UP", 30)
    pool = asyncio.create_task(_since(started, out_of_pool))
    await fleet.wait_connected(fleet.count, timeout=120)
    reconnected = time.monotonic() - started
    out = await pool
    await _restart(cluster, name)
    return reconnected, out


async def _kill_leader(cluster: DevCluster, leader: str) -> float:
    started = time.monotonic()
    cluster.kill_frontend(leader)
    await _wait(lambda: cluster.leader() not in (None, leader), 30, 0.05)
    taken = time.monotonic() - started
    await _restart(cluster, leader)
    return taken


async def _graceful(cluster: DevCluster, fleet: Fleet, name: str) -> tuple[float, float, float]:
    """(exit, first moved, last moved): moves are welcomes elsewhere, seen by the fleet."""
    connections = {sim.index: sim.ws for sim in fleet.sims}
    welcomed: dict[int, float] = {}
    before = fleet.stats.sessions
    started = time.monotonic()
    exited: list[float] = []

    def stop() -> None:
        cluster.stop_frontend(name)
        exited.append(time.monotonic() - started)

    stopping = asyncio.create_task(asyncio.to_thread(stop))
    # Whoever has a new connection was one of its agents (the others keep theirs).
    while not stopping.done() or fleet.connected < fleet.count:
        now = time.monotonic() - started
        for sim in fleet.sims:
            if sim.ws is not None and sim.ws is not connections[sim.index]:
                welcomed.setdefault(sim.index, now)
        if now > 120:
            raise TimeoutError("its agents did not all come back within 120 s")
        await asyncio.sleep(0.02)
    await stopping
    await _restart(cluster, name)
    moved = sorted(welcomed.values()) or [0.0]
    assert fleet.stats.sessions - before >= len(welcomed)
    return exited[0], moved[0], moved[-1]


async def _since(started: float, awaitable: Any) -> float:
    """Seconds from ``started`` until ``awaitable`` is done."""
    await awaitable
    return time.monotonic() - started


async def _restart(cluster: DevCluster, name: str) -> None:
    cluster.start_frontend(name)
    await asyncio.to_thread(cluster.wait_ready, 120)


async def _wait(check: Any, timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await asyncio.to_thread(check)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s")
        await asyncio.sleep(interval)
    return value


def _medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: median(r[key] for r in rounds) for key in rounds[0]} if rounds else {}


if __name__ == "__main__":
    main()
