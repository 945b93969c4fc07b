"""Walking and hashing a tree: Peregrine's glob + SHA-256 against find | xargs sha256sum.

Cases, all over the same tree in the same run, page cache warm (each case runs once untimed,
then the best of --repeat timed runs counts):

* coreutils: ``find TREE -type f -print0 | xargs -0 sha256sum > /dev/null``
* glob's lazy ``sha256`` column: ``SELECT path, sha256 FROM glob(TREE/**) WHERE type = 'file'``
* the ``sha256(path)`` scalar over the same glob
* walk only, for scale: ``find TREE -type f`` and the same glob without a hash (no column
  that needs a ``stat``), and the glob with ``size`` (a ``stat`` per file, like ``find -size``)

Peregrine runs in this process through :class:`Engine` (no worker process). The ratio is
coreutils time / Peregrine time, so above 1 means Peregrine is faster. A sample of the hashes is
checked against sha256sum's output so a fast wrong answer cannot pass.

    .venv/bin/python benchmarks/bench_glob_hash.py [--tree /usr] [--repeat 3] [--walk-only] [--json]
    .venv/bin/python benchmarks/bench_glob_hash.py --breakdown [--tree /usr] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import time
from collections.abc import Callable
from typing import Any

from bench_rows import machine
from peregrine.engine import Engine

TARGET_RATIO = 0.9


def cpu_seconds() -> float:
    """CPU time of this process and of its children that ended (find, sha256sum): a figure
    that stays comparable when other work shares the machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, float, Any]:
    """Best wall time and best CPU time of ``repeat`` runs after a warm-up, and the last value."""
    run()  # warm the page cache and Python's caches
    times, cpu, value = [], [], None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        value = run()
        times.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - start_cpu)
    return min(times), min(cpu), value


def shell(command: str, tree: str) -> Callable[[], int]:
    def run() -> int:
        done = subprocess.run(
            ["bash", "-c", command, "bench", tree], stderr=subprocess.DEVNULL, check=False
        )
        return done.returncode

    return run


def breakdown(tree: str, pattern: str, engine: Engine, repeat: int) -> dict[str, float]:
    """Where the path-only walk's CPU goes: a bare recursive ``os.scandir`` (with and without an
    ``lstat`` per file), glob's rows drained in Python, the query through the engine."""
    from peregrine.engine import QueryContext
    from peregrine.plugins.files import glob

    def bare(lstat: bool) -> Callable[[], int]:
        def run() -> int:
            count, todo = 0, [tree]
            while todo:
                with os.scandir(todo.pop()) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            todo.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            count += 1
                            if lstat:
                                entry.stat(follow_symlinks=False)
            return count

        return run

    def plugin() -> int:
        ctx = QueryContext()
        ctx.columns_read = frozenset({"path", "type"})
        return sum(1 for _ in glob.rows(ctx, {"pattern": pattern, "type": "file"}))

    def query() -> int:
        return len(list(engine.execute("SELECT path FROM glob(?) WHERE type = 'file'", [pattern])))

    runs = {
        "bare os.scandir walk": bare(False),
        "bare os.scandir walk + lstat per file": bare(True),
        "glob's rows drained in Python": plugin,
        "the query through the engine": query,
    }
    return {name: best_of(repeat, run)[1] for name, run in runs.items()}


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages: how busy the machine was around the figures."""
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", default="/usr", help="directory to walk and hash (default /usr)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--walk-only", action="store_true", help="leave out the hashing cases")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="only where the path-only walk's CPU goes (needs an engine with glob's type filter)",
    )
    args = parser.parse_args()
    load_before = loadavg()
    tree = args.tree.rstrip("/") or "/"
    pattern = tree + "/**" if tree != "/" else "/**"
    engine = Engine()
    if args.breakdown:
        print(f"CPU seconds, best of {args.repeat}; load average {load_before}")
        for name, cpu in breakdown(tree, pattern, engine, args.repeat).items():
            print(f"  {name:<40} {cpu:.3f}")
        return

    def sql(text: str) -> Callable[[], list[Any]]:
        def run() -> list[Any]:
            return list(engine.execute(text, [pattern]))

        return run

    listing = subprocess.run(
        ["find", tree, "-type", "f", "-print0"], capture_output=True, check=False
    ).stdout.split(b"\0")
    files = [f.decode("utf-8", "surrogateescape") for f in listing if f]
    size_rows = list(
        engine.execute("SELECT count(*), sum(size) FROM glob(?) WHERE type = 'file'", [pattern])
    )
    count, total_bytes = size_rows[0]

    cases = [
        ("find -type f (walk only)", "walk", shell('find "$1" -type f > /dev/null', tree)),
        (
            "glob WHERE type='file' (walk only)",
            "walk",
            sql("SELECT path FROM glob(?) WHERE type = 'file'"),
        ),
        (
            "glob path, size (walk + stat)",
            "walk",
            sql("SELECT path, size FROM glob(?) WHERE type = 'file'"),
        ),
        (
            "find | xargs sha256sum",
            "hash",
            shell('find "$1" -type f -print0 | xargs -0 sha256sum > /dev/null', tree),
        ),
        (
            "glob sha256 column",
            "hash",
            sql("SELECT path, sha256 FROM glob(?) WHERE type = 'file'"),
        ),
        (
            "glob + sha256(path) scalar",
            "hash",
            sql("SELECT path, sha256(path) FROM glob(?) WHERE type = 'file'"),
        ),
    ]
    results: list[dict[str, Any]] = []
    hashes: dict[str, str] = {}
    for name, kind, run in cases:
        if args.walk_only and kind == "hash":
            continue
        seconds, cpu, value = best_of(args.repeat, run)
        rows = len(value) if isinstance(value, list) else None
        if rows is not None and rows != len(files):
            raise SystemExit(f"{name}: {rows} files, but find found {len(files)}")
        if name == "glob sha256 column":
            hashes = dict(value)
        results.append(
            {"case": name, "kind": kind, "seconds": seconds, "cpu": cpu, "files": len(files)}
        )

    sample = random.Random(0).sample(files, min(100, len(files))) if hashes else []
    check = subprocess.run(
        ["sha256sum", "--", *sample], capture_output=True, check=False, input=b""
    )
    for line in check.stdout.decode("utf-8", "surrogateescape").splitlines() if sample else ():
        if line.startswith("\\"):
            continue  # sha256sum escapes odd names; skip them
        digest, _, path = line.partition("  ")
        if hashes.get(path) != digest:
            raise SystemExit(f"sha256 of {path} differs: {hashes.get(path)} vs {digest}")

    by_case = {r["case"]: r["seconds"] for r in results}
    cpu_by_case = {r["case"]: r["cpu"] for r in results}
    find_walk = by_case["find -type f (walk only)"]
    ratios = {
        "walk only": find_walk / by_case["glob WHERE type='file' (walk only)"],
        "walk + stat": find_walk / by_case["glob path, size (walk + stat)"],
    }
    find_cpu = cpu_by_case["find -type f (walk only)"]
    cpu_ratios = {
        "walk only": find_cpu / cpu_by_case["glob WHERE type='file' (walk only)"],
        "walk + stat": find_cpu / cpu_by_case["glob path, size (walk + stat)"],
    }
    if hashes:
        coreutils = by_case["find | xargs sha256sum"]
        ratios["glob sha256 column"] = coreutils / by_case["glob sha256 column"]
        ratios["glob + sha256(path) scalar"] = coreutils / by_case["glob + sha256(path) scalar"]
    report = {
        "benchmark": "glob_hash",
        "tree": tree,
        "files": len(files),
        "glob_files": count,
        "bytes": total_bytes,
        "repeat": args.repeat,
        "machine": machine(),
        "results": results,
        "speed_ratio_vs_coreutils": ratios,
        "cpu_ratio_vs_coreutils": cpu_ratios,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "target_ratio": TARGET_RATIO,
        "sample_checked": len(sample),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{tree}: {len(files):,} files, {total_bytes / 1e9:.2f} GB; best of {args.repeat}, "
        "warm cache"
    )
    print(f"load average before {load_before}, after {report['loadavg_after']}")
    print(f"{'case':<38} {'seconds':>8} {'cpu s':>8} {'files/s':>10} {'MB/s':>8}")
    for r in results:
        mb = f"{total_bytes / 1e6 / r['seconds']:>8.0f}" if r["kind"] == "hash" else f"{'':>8}"
        print(
            f"{r['case']:<38} {r['seconds']:>8.2f} {r['cpu']:>8.2f} "
            f"{len(files) / r['seconds']:>10,.0f} {mb}"
        )
    print(f"speed vs coreutils (target >= {TARGET_RATIO}; walk target >= 0.5), wall and CPU:")
    for name, ratio in ratios.items():
        cpu_ratio = f"{cpu_ratios[name]:.2f}x" if name in cpu_ratios else ""
        print(f"  {name:<36} {ratio:.2f}x {cpu_ratio:>8}")
    if sample:
        print(f"sha256 of {len(sample)} sampled files checked against sha256sum: equal")


if __name__ == "__main__":
    main()
