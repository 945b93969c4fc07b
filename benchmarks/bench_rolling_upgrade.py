"""Rolling upgrade: how long ``peregrine deploy upgrade`` takes on a 3-frontend cluster, and what
the agents saw.

.venv/bin/python benchmarks/bench_rolling_upgrade.py [--clients 300] [--rounds 2]
    [--batch 1] [--soak 5] [--postgres-url URL] [--json]

A development cluster (``peregrine.cluster.devcluster``: PostgreSQL, Redis, HAProxy, three
``peregrine server`` processes), its deployment file (``deploy init --dev-cluster``), and a
simulated fleet connected through HAProxy with the generated ``client.yaml`` (the agents'
defaults: reconnect after half to all of ``poll_min`` = 1 s). Each round upgrades every
frontend to a new version label, ``--batch`` at a time (a new ``peregrine server`` process
beside each old one, uptested, put in HAProxy's pool, the old one drained and stopped with
its default drain settings, then a ``--soak`` watch), and measures:

* the upgrade's time from start to the last batch's soak, and each batch's;
* from the fleet, sampled every 50 ms (``loadtest/reconnects.py``): the longest any agent
  stayed disconnected, the most disconnected at one moment, the peak reconnections within
  one second, reconnections in all, messages resent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from peregrine.cluster.devcluster import DevCluster
from peregrine.config import load_client_config
from peregrine.deploy.clusters import from_dev_cluster
from peregrine.deploy.model import save_deployment
from peregrine.deploy.rolling import Deployer, Timing
from peregrine.loadtest import Fleet
from peregrine.loadtest.reconnects import ReconnectWatch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--soak", type=float, default=5.0)
    parser.add_argument("--postgres-url", help="make the database on this server")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="peregrine-upgrade-"))
    work.chmod(0o755)  # as root, our own PostgreSQL runs as postgres
    directory = work / "cluster"
    DevCluster.up(directory, 3, postgres_url=args.postgres_url, postgres_dir=work / "pg")
    try:
        rounds = asyncio.run(_measure(directory, args, work / "keys"))
    finally:
        DevCluster(directory).down()  # read again: the upgrades renamed the frontends
        shutil.rmtree(work, ignore_errors=True)
    report = {"clients": args.clients, "batch": args.batch, "soak": args.soak, "rounds": rounds}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.clients} simulated agents, 3 frontends, batch {args.batch}, soak {args.soak} s")
    for row in rounds:
        print("  " + ", ".join(f"{k} {v}" for k, v in row.items()))


async def _measure(directory: Path, args: argparse.Namespace, keys: Path) -> list[Any]:
    cluster = DevCluster(directory)
    deployment, path = from_dev_cluster(directory, version="1")
    save_deployment(deployment, path)
    fleet = Fleet(
        load_client_config(Path(cluster.state.client_config)), args.clients, key_dir=keys,
        ramp_per_second=200, rows=1,
    )  # fmt: skip
    await fleet.start()
    await fleet.wait_connected(args.clients, timeout=180)
    results = []
    try:
        for number in range(args.rounds):
            marks: list[tuple[float, str]] = []
            deploy = Deployer(
                path, cluster.token, timing=Timing(soak_seconds=args.soak),
                say=lambda line, marks=marks: marks.append((time.monotonic(), line)),
            )  # fmt: skip
            watch = ReconnectWatch(fleet)
            watcher = asyncio.create_task(watch.run())
            resent = fleet.stats.messages_resent
            started = time.monotonic()
            await asyncio.to_thread(deploy.upgrade, str(number + 2), batch=args.batch)
            took = time.monotonic() - started
            await fleet.wait_connected(args.clients, timeout=120)
            await asyncio.sleep(0.2)
            watcher.cancel()
            soaks = [at - started for at, line in marks if line.startswith("soak")]
            batches = [round(b - a, 1) for a, b in zip([0.0, *soaks], soaks, strict=False)]
            results.append({
                "upgrade_s": round(took, 1),
                "batches_s": batches,
                "longest_disconnected_s": round(watch.longest(), 2),
                "most_disconnected": watch.most_disconnected,
                "peak_reconnects_per_s": watch.peak_per_second(),
                "reconnects": len(watch.gaps),
                "messages_resent": fleet.stats.messages_resent - resent,
            })  # fmt: skip
            print(f"round {number + 1}: {results[-1]}", file=sys.stderr, flush=True)
    finally:
        await fleet.stop()
    return results


if __name__ == "__main__":
    main()
