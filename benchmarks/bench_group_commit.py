"""Per-message datastore updates a second: one transaction each vs the group commit.

What a frontend does for each agent message once its files are written: count it on the flow
(`CollectionStore.apply`), or count and change state (`apply_and_transition`, a flow's start and
end), or merge a source's status (`apply` with `source=`). N flows exist in a fresh SQLite file
datastore (WAL, synchronous=FULL, as the server runs it); each case updates every flow once.
"one transaction each" calls the store directly from one thread (the path before the group
commit); "group commit" submits all N at once to `Datastore.group` and waits for them all.

    .venv/bin/python benchmarks/bench_group_commit.py [--flows 5000] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peregrine.datastore import Datastore, FlowRecord, open_datastore

CLIENT = "C.00000000000000aa"


def fresh(directory: Path, flows: int) -> tuple[Datastore, list[str]]:
    return fresh_at(f"sqlite:///{directory}/peregrine.db", flows)


def fresh_at(url: str, flows: int, task: bytes | None = None) -> tuple[Datastore, list[str]]:
    """A new datastore at ``url`` with ``flows`` flows of one client (each with ``task``)."""
    datastore = open_datastore(url)
    datastore.clients.enroll(CLIENT, b"key", 1.0)
    ids = [f"F.{n:016x}" for n in range(1, flows + 1)]

    def create_all() -> None:
        for flow_id in ids:
            datastore.collections.create(
                FlowRecord(
                    flow_id=flow_id, client_id=CLIENT, artifacts=[], request={},
                    creator="bench", created=1.0, timeout=600.0, progress_timeout=120.0,
                ),
                task=task,
            )  # fmt: skip

    datastore.group.submit(create_all).result()
    return datastore, ids


def cases(datastore: Datastore) -> dict[str, Callable[[str, int], Any]]:
    store = datastore.collections
    return {
        "apply (rows)": lambda f, seq: store.apply(f, seq, 2.0, rows=10, bytes=2000),
        "apply_and_transition": lambda f, seq: store.apply_and_transition(
            f, seq, 2.0, "In progress", drop_task=True
        ),
        "apply (source status)": lambda f, seq: store.apply(
            f, seq, 2.0, source=("A/s", {"status": "finished", "rows": 10})
        ),
    }


def run(directory: Path, flows: int) -> list[dict[str, Any]]:
    results = []
    for mode in ("one transaction each", "group commit"):
        where = Path(tempfile.mkdtemp(dir=directory))
        datastore, ids = fresh(where, flows)
        try:
            for seq, (name, call) in enumerate(cases(datastore).items(), start=1):
                start = time.perf_counter()
                if mode == "group commit":
                    futures = [datastore.group.submit(call, f, seq) for f in ids]
                    assert all(future.result() for future in futures)
                else:
                    assert all(call(f, seq) for f in ids)
                seconds = time.perf_counter() - start
                results.append(
                    {"mode": mode, "case": name, "updates": flows, "seconds": round(seconds, 3),
                     "per_second": round(flows / seconds)}
                )  # fmt: skip
            if mode == "group commit":
                results[-1]["batches"] = datastore.group.batches
        finally:
            datastore.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flows", type=int, default=5000)
    parser.add_argument("--dir", type=Path, help="where the datastores go (default: temp)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="peregrine-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    results = run(directory, args.flows)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'mode':<22} {'case':<24} {'updates':>8} {'seconds':>8} {'per second':>11}")
    for r in results:
        print(
            f"{r['mode']:<22} {r['case']:<24} {r['updates']:>8} {r['seconds']:>8} "
            f"{r['per_second']:>11,}"
        )


if __name__ == "__main__":
    main()
