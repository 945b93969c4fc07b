"""A hunt's result pages over many clients, in process: plain pages and the total (the kept row
counts of ``services/hunt_row_counts.py``), and how near its time-out a sorted page stops.

Writes a finished hunt of ``--clients`` clients x ``--rows`` rows through the real datastore and
filestore code (``bench_analysis.add_hunt_client``; once, reused if present), with no Parquet
copies (the JSONL path, the slowest). Then:

* ``count`` and page 1, a middle page and the last page of 100 (``HuntResults``), each call
  timed, the first call apart (it walks the flows once);
* a page sorted by ``name`` at a middle offset (``analysis/pages.py``: its queries share one
  time-out) with each ``--timeouts`` value: when it stopped, and how long the next query waited
  for the engine's one slot.

    .venv/bin/python benchmarks/bench_hunt_pages.py [--dir /tmp/peregrine-bench-hunt-pages]
        [--clients 10000] [--rows 20] [--timeouts 0.5,1,2,4] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_analysis import ARTIFACT, add_hunt_client, hunt_record
from peregrine.analysis import AnalysisEngine, AnalysisLimits, QueryTimedOut
from peregrine.analysis.pages import PAGE_PERMISSIONS, RowQuery, page, table_call
from peregrine.datastore import Datastore
from peregrine.datastore import open_datastore as open_store
from peregrine.filestore import Filestore
from peregrine.services.hunt_results import HuntResults

HUNT = "H.00000000000000c1"


def seed(root: Path, clients: int, rows: int) -> None:
    store = open_store(f"sqlite:///{root}/peregrine.db")
    filestore = Filestore(root / "filestore", min_free_bytes=0)
    try:
        store.hunts.create(hunt_record(HUNT))
        rng = random.Random(16)
        for number in range(clients):
            add_hunt_client(store, filestore, HUNT, number, rows, rng)
        (root / "complete").write_text("ok")
    finally:
        store.close()


def ms(run: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = run()
    return value, round((time.perf_counter() - started) * 1000, 1)


def plain_pages(store: Datastore, filestore: Filestore) -> list[dict[str, Any]]:
    results = HuntResults(store, filestore)
    total, first = ms(lambda: results.count(HUNT, ARTIFACT))
    out: list[dict[str, Any]] = [{"case": "count", "ms": [first]}]
    for label, offset in (("page 1", 0), ("middle", total // 2), ("last", total - 100)):
        read = functools.partial(results.page, HUNT, ARTIFACT, "", offset, 100)
        out.append({"case": label, "ms": [ms(read)[1] for _ in range(3)]})
    out[0]["ms"].append(ms(lambda: results.count(HUNT, ARTIFACT))[1])
    return out


def sorted_pages(
    store: Datastore, filestore: Filestore, timeouts: list[float], scratch: Path
) -> list[dict[str, Any]]:
    out = []
    table = table_call("hunt", HUNT, ARTIFACT, "")
    for timeout in timeouts:
        engine = AnalysisEngine(store, filestore, AnalysisLimits(timeout=timeout, concurrent=1))
        engine.copies.schedule = lambda stems: 0  # type: ignore[method-assign]  # JSONL stays
        started = time.monotonic()
        try:
            _, total = page(engine, table, None, RowQuery(sort="name"), 100_000, 100)
            outcome = f"answered ({total} rows)"
        except QueryTimedOut:
            outcome = "timed out"
        stopped = time.monotonic() - started
        _, waited = ms(lambda: list(engine.run("SELECT 1", PAGE_PERMISSIONS)))  # noqa: B023
        out.append({"timeout": timeout, "outcome": outcome, "seconds": round(stopped, 2),
                    "late": round(stopped - timeout, 2), "next_query_ms": waited})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/peregrine-bench-hunt-pages"))
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--timeouts", default="0.5,1,2,4")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = args.dir / f"{args.clients}x{args.rows}"
    if not (root / "complete").exists():
        root.mkdir(parents=True, exist_ok=True)
        seed(root, args.clients, args.rows)
    store = open_store(f"sqlite:///{root}/peregrine.db")
    filestore = Filestore(root / "filestore", min_free_bytes=0)
    scratch = root / "scratch"
    scratch.mkdir(exist_ok=True)
    try:
        report: dict[str, Any] = {
            "load": os.getloadavg()[0],
            "plain": plain_pages(store, filestore),
            "sorted": sorted_pages(
                store, filestore, [float(t) for t in args.timeouts.split(",")], scratch
            ),
        }
    finally:
        store.close()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"load average {report['load']:.1f}")
    for case in report["plain"]:
        print(f"{case['case']:<8} {', '.join(f'{t} ms' for t in case['ms'])}")
    for case in report["sorted"]:
        print(f"sorted page, time-out {case['timeout']:g} s: {case['outcome']} after "
              f"{case['seconds']} s ({case['late']:+} s); "
              f"next query {case['next_query_ms']} ms")  # fmt: skip


if __name__ == "__main__":
    main()
