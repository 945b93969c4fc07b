"""The datastore's part of a hunt's small collections: message by message vs folded runs.

What the group commit does for each answered flow of a hunt once its files are stored: its
start (count, state, task removed), its rows' count, its source's status and its end (count,
state, the finished record). N flows (each with its task) exist in a fresh datastore; N
coroutines (the sessions) each submit one run of those four messages at once, as the agents'
``FlowBatch`` frames bring them.

* "message by message": the ingestor before issue 17's third round: one group-commit piece per
  run, calling ``apply`` / ``apply_and_transition`` per message and reading the finished
  record back (about ten statements a flow);
* "folded": ``run_together`` with ``CollectionStore.apply_runs``: every run waiting in a batch
  in one call, one read and one ``executemany`` for all their flows.

CPU is the whole process's (the event loop's thread and the committer's), from the first run
submitted to the last answered: the datastore CPU a flow costs the server.

    .venv/bin/python benchmarks/bench_flow_runs.py [--flows 5000] [--repeat 3]
        [--url postgresql://...] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

from bench_group_commit import fresh_at
from peregrine.datastore import (
    FINISHED,
    IN_PROGRESS,
    Datastore,
    FlowRecord,
    FlowStep,
)

CLIENT = "C.00000000000000aa"
SOURCE = "Linux.Sys.Users/users"
DONE = {"status": "finished", "rows": 1, "error": None, "elapsed": 0.01, "warnings": 0}


def message_by_message(store: Datastore, flow_id: str) -> FlowRecord | None:
    """What ``Ingestor._record`` did for a small collection's run, one call per message."""
    now = time.time()
    collections = store.collections
    collections.apply_and_transition(flow_id, 1, now, IN_PROGRESS, drop_task=True)
    collections.apply(flow_id, 2, now, rows=1, bytes=120)
    collections.apply(flow_id, 3, now, source=(SOURCE, DONE))
    applied, _moved = collections.apply_and_transition(flow_id, 4, now, FINISHED)
    return collections.get(flow_id) if applied else None


def steps(flow_id: str) -> list[FlowStep]:
    return [
        FlowStep(flow_id, 1, to_state=IN_PROGRESS, drop_task=True),
        FlowStep(flow_id, 2, rows=1, bytes=120),
        FlowStep(flow_id, 3, source=(SOURCE, DONE)),
        FlowStep(flow_id, 4, to_state=FINISHED),
    ]


async def submit_all(store: Datastore, ids: list[str], mode: str) -> None:
    if mode == "message by message":
        calls = [store.group.run(message_by_message, store, f) for f in ids]
    else:

        def fold(runs: list[list[FlowStep]]) -> list[Any]:
            return store.collections.apply_runs(runs, time.time())

        calls = [store.group.run_together(fold, steps(f)) for f in ids]
    await asyncio.gather(*calls)


def measure(url: str, flows: int, mode: str) -> dict[str, Any]:
    store, ids = fresh_at(url, flows, task=b"request")
    try:
        batches = store.group.batches
        wall, cpu = time.perf_counter(), time.process_time()
        asyncio.run(submit_all(store, ids, mode))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finished = sum(1 for f in ids if store.collections.get(f).state == FINISHED)  # type: ignore[union-attr]
        assert finished == flows, f"{finished} of {flows} finished"
        return {
            "mode": mode, "flows": flows, "seconds": round(wall, 3), "cpu_s": round(cpu, 3),
            "cpu_ms_per_flow": round(1000 * cpu / flows, 3),
            "batches": store.group.batches - batches,
        }  # fmt: skip
    finally:
        store.close()


def measure_in_new_database(
    base: str | None, directory: Path, flows: int, mode: str
) -> dict[str, Any]:
    """``measure`` in a new SQLite file, or a PostgreSQL schema dropped afterwards."""
    if base is None:
        return measure(f"sqlite:///{directory}/{uuid.uuid4().hex}.db", flows, mode)
    admin = create_engine(make_url(base).set(drivername="postgresql+psycopg"))
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        return measure(url.render_as_string(hide_password=False), flows, mode)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each mode, alternating")
    parser.add_argument("--url", help="a PostgreSQL server URL (default: SQLite files)")
    parser.add_argument("--dir", type=Path, help="where SQLite files go (default: temp)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="peregrine-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    modes = ["message by message", "folded"] * args.repeat
    results = [measure_in_new_database(args.url, directory, args.flows, mode) for mode in modes]
    out = {
        "backend": "postgresql" if args.url else "sqlite",
        "load": os.getloadavg(),
        "runs": results,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"backend {out['backend']}, load average after: {out['load']}")
    print(
        f"{'mode':<20} {'flows':>6} {'seconds':>8} {'CPU s':>7} {'CPU ms/flow':>12} {'batches':>8}"
    )
    for r in results:
        print(
            f"{r['mode']:<20} {r['flows']:>6} {r['seconds']:>8} {r['cpu_s']:>7} "
            f"{r['cpu_ms_per_flow']:>12} {r['batches']:>8}"
        )


if __name__ == "__main__":
    main()
