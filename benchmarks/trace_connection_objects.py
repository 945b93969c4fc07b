"""What the frontend's Python objects are made of, per idle agent: tracemalloc, N vs 2N agents.

A real frontend (``Server``) runs in this process under tracemalloc; the fleet simulator, in
another process, connects ``--clients`` seeded clients, and once they are all held and idle a
snapshot is taken; another ``--clients`` connect and a second snapshot is taken. The difference,
divided by the agents added, is what one idle agent's connection keeps in Python objects,
grouped by the line that allocated it (``--frames`` deep). OpenSSL's own state is not seen by
tracemalloc (``bench_connection_memory.py`` measures it).

    .venv/bin/python benchmarks/trace_connection_objects.py [--clients 1000] [--top 40]
        [--frames 1] [--ramp 100]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from fleet_common import PYTHON, deployment, seed_clients


def simulate(client_yaml: Path, key_dir: Path, first: int, count: int, ramp: float) -> None:
    """A slice of the fleet, held until stdin closes."""
    from peregrine.config import load_client_config
    from peregrine.loadtest.fleet import Fleet

    async def run() -> None:
        fleet = Fleet(
            load_client_config(client_yaml), count, key_dir=key_dir, first_index=first,
            ramp_per_second=ramp,
        )  # fmt: skip
        await fleet.start()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await fleet.stop()

    asyncio.run(run())


async def hold(server: object, want: int, timeout: float) -> None:
    connections = server.connections  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while len(connections) < want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(connections)} of {want} agents connected")
        await asyncio.sleep(0.2)
    await asyncio.sleep(5.0)  # check-ins, acks and the last handshakes' garbage


def snapshot(frames: int) -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )


def _short(filename: str) -> str:
    """The package and module of a file (``websockets/asyncio/server.py``)."""
    parts = Path(filename).parts
    for root in ("site-packages", "src", "python3.11"):
        if root in parts:
            return "/".join(parts[parts.index(root) + 1 :])
    return "/".join(parts[-2:])


async def measure(args: argparse.Namespace) -> None:
    from peregrine.config import load_server_config
    from peregrine.server.app import Server

    dep = deployment(args.dir)
    seed_clients(dep, 2 * args.clients)
    tracemalloc.start(args.frames)
    server = Server(load_server_config(dep.server_yaml))
    await server.start()
    sims: list[subprocess.Popen[bytes]] = []
    try:
        snaps = []
        for part in range(2):
            command = [
                PYTHON, __file__, "--simulate", str(dep.client_yaml), str(dep.key_dir),
                str(part * args.clients), str(args.clients), str(args.ramp),
            ]  # fmt: skip
            sims.append(subprocess.Popen(command, stdin=subprocess.PIPE))
            await hold(server, (part + 1) * args.clients, args.timeout)
            snaps.append(snapshot(args.frames))
        stats = snaps[1].compare_to(snaps[0], "traceback" if args.frames > 1 else "lineno")
        total = sum(s.size_diff for s in stats)
        print(f"per agent: {total / args.clients:,.0f} B of Python objects")
        for stat in stats[: args.top]:
            where = " <- ".join(f"{_short(f.filename)}:{f.lineno}" for f in stat.traceback)
            print(
                f"{stat.size_diff / args.clients:8.1f} B {stat.count_diff / args.clients:6.2f} "
                f"blocks  {where}"
            )
    finally:
        for sim in sims:
            if sim.stdin:
                sim.stdin.close()
        for sim in sims:
            try:
                sim.wait(30)
            except subprocess.TimeoutExpired:
                sim.kill()
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--ramp", type=float, default=100.0)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--simulate", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        yaml, keys, first, count, ramp = args.simulate
        simulate(Path(yaml), Path(keys), int(first), int(count), float(ramp))
        return
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
