"""Rows per second through a table plugin: the engine's per-row cost, without any real I/O.

A synthetic plugin yields N rows of 3 columns (INTEGER, REAL, TEXT) from a custom Registry, run
through the Engine as ``SELECT count(*)`` (rows cross the virtual-table boundary but are not
returned) and ``SELECT *`` (every row and column returned to Python). A plain Python loop over
the same generator is the ceiling. Best of --repeat runs.

    .venv/bin/python benchmarks/bench_rows.py [--rows 1000000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from typing import Any

import apsw

from peregrine.engine import Arg, Col, Engine, QueryContext, Registry, TablePlugin, table


@table(
    name="synth",
    description="N synthetic rows as tuples.",
    arguments=[Arg("n", "INTEGER", "How many rows.", required=True)],
    columns=[Col("id", "INTEGER"), Col("value", "REAL"), Col("label", "TEXT")],
)
def synth(ctx: QueryContext, n: int) -> Iterator[tuple[int, float, str]]:
    for i in range(n):
        yield (i, i * 0.5, "row")


@table(
    name="synth_dict",
    description="N synthetic rows as dicts.",
    arguments=[Arg("n", "INTEGER", "How many rows.", required=True)],
    columns=[Col("id", "INTEGER"), Col("value", "REAL"), Col("label", "TEXT")],
)
def synth_dict(ctx: QueryContext, n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"id": i, "value": i * 0.5, "label": "row"}


def synth_batches_plugin() -> TablePlugin | None:
    """``synth`` handing its rows over in lists of 256 (``batches=True``); None with an engine
    older than batches, so the benchmark still runs against an old commit."""
    if "batches" not in inspect.signature(table).parameters:
        return None

    def synth_batches(ctx: QueryContext, n: int) -> Iterator[list[tuple[int, float, str]]]:
        for start in range(0, n, 256):
            yield [(i, i * 0.5, "row") for i in range(start, min(n, start + 256))]

    return table(
        name="synth_batches",
        description="N synthetic rows as tuples, in lists of 256.",
        arguments=[Arg("n", "INTEGER", "How many rows.", required=True)],
        columns=[Col("id", "INTEGER"), Col("value", "REAL"), Col("label", "TEXT")],
        batches=True,
    )(synth_batches)


def best_of(repeat: int, run: Callable[[], int]) -> tuple[float, float, int]:
    """Best wall and best CPU time of ``repeat`` runs (after one warm-up), and the rows the
    run counted. CPU time stays comparable when other work shares the machine."""
    run()
    times, cpu, rows = [], [], 0
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        rows = run()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(times), min(cpu), rows


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": apsw.sqlite_lib_version(),
        "apsw": apsw.apsw_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    n = args.rows

    registry = Registry()
    registry.add(synth)
    registry.add(synth_dict)
    batches = synth_batches_plugin()
    if batches is not None:
        registry.add(batches)
    engine = Engine(registry)

    def sql(text: str) -> Callable[[], int]:
        def run() -> int:
            return sum(1 for _ in engine.execute(text, [n]))

        return run

    def count(text: str) -> Callable[[], int]:
        def run() -> int:
            rows = list(engine.execute(text, [n]))
            return int(rows[0][0])

        return run

    # (case, run, rows it must return): the last one scans n rows and returns none.
    cases: list[tuple[str, Callable[[], int], int]] = [
        (
            "python loop over the generator (ceiling)",
            lambda: sum(1 for _ in synth.func(None, n)),
            n,
        ),
        ("SELECT count(*) FROM synth(?)", count("SELECT count(*) FROM synth(?)"), n),
        ("SELECT * FROM synth(?)", sql("SELECT * FROM synth(?)"), n),
        ("SELECT * FROM synth_dict(?)  (dict rows)", sql("SELECT * FROM synth_dict(?)"), n),
        (
            "SELECT id FROM synth(?) WHERE label = 'x'",
            sql("SELECT id FROM synth(?) WHERE label = 'x'"),
            0,
        ),
    ]
    if batches is not None:
        cases.append(
            (
                "SELECT * FROM synth_batches(?)  (batches)",
                sql("SELECT * FROM synth_batches(?)"),
                n,
            )
        )
    results = []
    for name, run, expected in cases:
        seconds, cpu, rows = best_of(args.repeat, run)
        if rows != expected:
            raise SystemExit(f"{name}: expected {expected} rows, got {rows}")
        results.append(
            {"case": name, "rows": n, "seconds": seconds, "cpu": cpu, "rows_per_s": n / seconds}
        )

    report = {
        "benchmark": "rows",
        "rows": n,
        "repeat": args.repeat,
        "machine": machine(),
        "results": results,
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{n:,} rows of 3 columns, best of {args.repeat}; load average {report['loadavg']}")
    print(f"{'case':<46} {'seconds':>8} {'cpu s':>8} {'rows/s':>12}")
    for r in results:
        print(f"{r['case']:<46} {r['seconds']:>8.3f} {r['cpu']:>8.3f} {r['rows_per_s']:>12,.0f}")


if __name__ == "__main__":
    main()
