"""Start-up of the ``peregrine`` command line: how long a command takes before it does anything.

Cases, each a fresh ``peregrine`` process from the virtual environment's console script:

* ``peregrine version`` (parses its arguments and prints; nothing else to do)
* ``peregrine clients --help`` (the remote clients command, up to its help: everything the
  command loads before it talks to a server)
* ``peregrine clients`` against a port nobody listens on: the whole command up to its first
  request (the API client and its HTTP stack loaded, the connection refused at once)
* ``peregrine --help`` (every command's one-line help, so every command module is loaded)

The median of --runs wall-clock times counts (the box is shared, so one run says little), and
beside it the number of modules the process imported (``-X importtime``), which does not depend
on the load.

    .venv/bin/python benchmarks/bench_cli_startup.py [--runs 11] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_rows import machine

CONSOLE_SCRIPT = Path(sys.executable).with_name("peregrine")
CASES = {
    "version": ["version"],
    "clients --help": ["clients", "--help"],
    "clients (refused)": ["clients", "--url", "https://127.0.0.1:9", "--token", "t"],
    "--help": ["--help"],
}
TARGETS = {"version": 0.3, "clients --help": 0.6, "clients (refused)": 0.6}


def median_seconds(args: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def modules_imported(args: list[str]) -> int:
    """Modules the command imports, counted from ``-X importtime`` (one line per module)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(CONSOLE_SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return sum(1 for line in done.stderr.splitlines() if line.startswith("import time:")) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    results = {
        name: {
            "median_s": round(median_seconds(args, options.runs), 3),
            "modules": modules_imported(args),
            "target_s": TARGETS.get(name),
        }
        for name, args in CASES.items()
    }
    report = {"machine": machine(), "runs": options.runs, "cases": results}
    if options.json:
        print(json.dumps(report, indent=2))
        return
    print(f"machine: {report['machine']}")
    for name, figures in results.items():
        target = f" (target <= {figures['target_s']} s)" if figures["target_s"] else ""
        print(
            f"peregrine {name:<17} median {figures['median_s']:.3f} s over {options.runs} runs, "
            f"{figures['modules']} modules{target}"
        )


if __name__ == "__main__":
    main()
