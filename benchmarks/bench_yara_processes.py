"""YARA over every process of this machine: Peregrine's ``yara_process`` against YARA's own CLI.

Cases, each over the same processes in the same run, a few dozen realistic rules
(``yara_memory_rules.yar``, written to match nothing or little):

* Peregrine, as ``peregrine query`` runs it (a worker process with its watchdog)::

      SELECT p.pid, y.rule FROM pslist() p
      JOIN yara_process y ON y.rules = :rules AND y.pid = p.pid AND y.timeout = 3600

* the same with ``AND y.whole_process = 1``: libyara's own process scan
  (``yara.match(pid=...)``), which is what ``yara_process`` did before issue 17 (the code path
  is kept for that argument), so "before" and "after" run in the same minutes;

* YARA's command-line scanner, one process after another (``yara -p 2 RULES PID`` per pid, as a
  shell loop would), and two at a time (``xargs -P 2``: both cores), when ``yara`` is installed
  (Debian package ``yara``; the column is left out otherwise).

Each case gives its wall time, the CPU seconds of the processes it started (the worker; xargs
and every ``yara``), and the load average just before it. Beside the times: processes, the
bytes their mappings span (what ``yara`` and ``yara.match(pid=...)`` read, mapping by
mapping), and what Peregrine's plan for the same processes reads, shares and skips (when the
plugin has a plan: ``yara_memory.plan_process``).
``--spawn N`` first starts N idle Python processes holding 8 MiB of heap each (the same
libraries mapped N times), so a quiet machine can be made to look like a busy server.

Run as root (other users' processes cannot be read otherwise)::

    .venv/bin/python benchmarks/bench_yara_processes.py [--spawn 100] [--repeat 2] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_rows import machine
from peregrine.engine import QueryLimits
from peregrine.engine.worker import IsolatedQuery

RULES_FILE = Path(__file__).with_name("yara_memory_rules.yar")
SQL = (
    "SELECT p.pid, y.rule FROM pslist() p JOIN yara_process y ON y.rules = :rules AND y.pid = p.pid"
)
#: An idle process that holds 8 MiB of its own data (random, so nothing is shared or zero).
HOLDER = (
    "import os, sys, time; data = os.urandom(8 << 20); sys.stdout.write('ready\\n'); "
    "sys.stdout.flush(); time.sleep(3600)"
)


@contextmanager
def spawned(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``count`` holder processes, wait until each says it is ready, stop them after."""
    procs = [
        subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE)
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            proc.stdout.readline()
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def mapped_bytes(pid: int) -> int:
    """Bytes spanned by a process's mappings: what libyara's process scan reads."""
    total = 0
    try:
        text = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        start, _, end = line.split(" ", 1)[0].partition("-")
        total += int(end, 16) - int(start, 16)
    return total


def census(pids: list[int]) -> dict[str, Any]:
    """What the processes hold, and what Peregrine's plan reads of it (if it has one)."""
    out: dict[str, Any] = {
        "processes": len(pids),
        "mapped_bytes": sum(mapped_bytes(pid) for pid in pids),
    }
    try:
        from peregrine.plugins import yara_memory  # the plan exists after issue 17
    except ImportError:
        return out
    seen: set[Any] = set()
    scanned = shared = skipped = regions = 0
    for pid in pids:
        plan = yara_memory.plan_process(pid)
        if plan is None:
            continue
        for region in plan.regions:
            regions += 1
            if region.key is not None and region.key in seen:
                shared += region.size
                continue
            if region.key is not None:
                seen.add(region.key)
            scanned += region.size
        skipped += plan.skipped
    out.update(
        planned_scan_bytes=scanned,
        planned_shared_bytes=shared,
        regions=regions,
        regions_skipped=skipped,
    )
    return out


def run_peregrine(rules: str, whole_process: int) -> dict[str, Any]:
    query = IsolatedQuery(
        SQL + " AND y.whole_process = :whole",
        {"rules": rules, "whole": whole_process},
        limits=QueryLimits(timeout=3600),
    )
    rows = list(query)
    return {
        "rows": len(rows),
        "pids_matched": len({row[0] for row in rows}),
        "warnings": query.warnings[:5],
    }


def run_cli(pids: list[int], parallel: int) -> dict[str, Any]:
    argv = ["xargs", "-P", str(parallel), "-n", "1", "yara", "-w", "-p", "2", str(RULES_FILE)]
    done = subprocess.run(
        argv,
        input="\n".join(map(str, pids)).encode(),
        capture_output=True,
        check=False,
    )
    lines = done.stdout.decode(errors="replace").splitlines()
    return {"rows": len(lines), "pids_matched": len({line.split()[-1] for line in lines})}


def children_cpu() -> float:
    """CPU seconds of the finished child processes (the worker; xargs and each yara)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Wall and CPU seconds of one case: on a shared machine the CPU figure travels better."""
    before, cpu = load(), children_cpu()
    start = time.perf_counter()
    result = run()
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["cpu_seconds"] = round(children_cpu() - cpu, 2)
    result["load_before"] = before
    return result


def current_pids() -> list[int]:
    rows = IsolatedQuery("SELECT pid FROM pslist() ORDER BY pid")
    return [row[0] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spawn", type=int, default=0, help="idle processes to start first")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-cli", action="store_true", help="leave out the yara CLI")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: other users' processes cannot be read otherwise")
    rules = RULES_FILE.read_text()
    cli = None if args.no_cli else shutil.which("yara")
    results: list[dict[str, Any]] = []
    with spawned(args.spawn):
        pids = current_pids()
        info = census(pids)
        for n in range(args.repeat):
            for name, whole in (("peregrine", 0), ("peregrine whole_process=1", 1)):
                run = functools.partial(run_peregrine, rules, whole)
                results.append({"case": name, "run": n, **timed(run)})
            if cli:
                for parallel in (1, 2):
                    results.append(
                        {
                            "case": f"yara CLI, {parallel} at a time",
                            "run": n,
                            **timed(functools.partial(run_cli, pids, parallel)),
                        }
                    )
    report = {"machine": machine(), "census": info, "results": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(json.dumps(info))
    print(f"{'case':28} {'run':>3} {'seconds':>8} {'CPU s':>7} {'load':>6} {'rows':>5} {'pids':>5}")
    for r in results:
        print(
            f"{r['case']:28} {r['run']:>3} {r['seconds']:>8} {r['cpu_seconds']:>7} "
            f"{r['load_before']:>6} {r['rows']:>5} {r['pids_matched']:>5}"
        )


if __name__ == "__main__":
    main()
