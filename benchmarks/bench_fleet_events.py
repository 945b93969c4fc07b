"""Events from a simulated fleet into one frontend: events stored per second and matched
against 20 alert rules, end to end.

.venv/bin/python benchmarks/bench_fleet_events.py [--clients 10000] [--rate 1] [--seconds 60]
    [--processes 2] [--dir DIR] [--json]

``--clients`` simulated agents (enrolled straight into the datastore) connect to an embedded
server process (its own process, as in production); 20 rules are saved through the API (the 6
built-in ones, 13 per-event conditions over process starts, one windowed); then
Linux.Events.ProcessExecutions is assigned to every client through the API, and each simulated
agent sends ``--rate`` canned process starts a second in batches at the assignment's
``batch_seconds`` (1 s), one in 1,000 from /tmp. Every batch crosses TLS and the websocket, is
stored durably in the client's event file, published, matched against the rules, and
acknowledged. After a warm-up of ``--warmup`` seconds, for ``--seconds`` seconds: events stored
(the event files' row counts), alerts raised, the server's time matching (its
``peregrine_alert_match_seconds`` histogram) and its CPU. ``--no-rules`` disables every rule,
for the same ingest with nothing to match.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from bench_alerts import CONDITIONS as BENCH_CONDITIONS
from fleet_common import LoadTest, cpu_seconds, machine, probe_machine, wait_connections
from fleet_targets import load_average, make_target

ARTIFACT = "Linux.Events.ProcessExecutions"
#: Prometheus' page, beside the API's /api/v1 (the client's base).
METRICS = "../../metrics"
#: bench_alerts.py's conditions but the /tmp one (a built-in rule says it) and the one on a
#: column the real artifact does not have; 13 of them, so that with the windowed rule and the
#: 6 built-in ones there are 20.
CONDITIONS = [c for c in BENCH_CONDITIONS[1:] if "cwd" not in c][:13]


def rules() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"rule_id": f"Bench.P{n:02d}", "artifacts": [ARTIFACT], "condition": c}
        for n, c in enumerate(CONDITIONS)
    ]
    found.append(
        {
            "rule_id": "Bench.Spray",
            "artifacts": [ARTIFACT],
            "condition": "exe = '/usr/bin/sudo' AND username = 'nobody'",
            "window": {"seconds": 60, "threshold": 50},
        }
    )
    return found


def stored_events(filestore: Path) -> int:
    """Rows in every event file (each day file's ``.meta`` holds its row count)."""
    total = 0
    for meta in (filestore / "events").glob("*/*/*.meta"):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        total += int(data.get("rows", 0))
    return total


def match_seconds(metrics: str) -> tuple[float, float]:
    """(sum, count) of the server's peregrine_alert_match_seconds histogram."""
    values = dict(
        re.findall(r"^peregrine_alert_match_seconds_(sum|count) ([0-9.e+-]+)$", metrics, re.M)
    )
    return float(values.get("sum", 0.0)), float(values.get("count", 0.0))


def run(args: argparse.Namespace) -> dict[str, Any]:
    target = make_target("embedded", args.dir)
    with target.running(args.clients):
        fleet = LoadTest(
            target, args.clients, processes=args.processes, rows=1, ramp=args.ramp,
            extra_args=("--events-per-second", str(args.rate)),
        )  # fmt: skip
        try:
            fleet.start()
            held, _ = wait_connections(
                target, args.clients, args.timeout, stall=args.stall, every=1.0
            )
            with target.api() as api:
                builtin = len(api.get("/rules").json())
                if args.no_rules:  # the same ingest with nothing to match: the rules' share
                    for rule in api.get("/rules").json():
                        api.post(f"/rules/{rule['rule_id']}/disable").raise_for_status()
                else:
                    for rule in rules():
                        api.post("/rules", json=rule).raise_for_status()
                total_rules = sum(r["enabled"] for r in api.get("/rules").json())
                api.post(
                    "/events/assignments", json={"artifact": ARTIFACT, "parameters": {}}
                ).raise_for_status()
                time.sleep(args.warmup)
                filestore = target.filestore
                sims = fleet.procs()
                events0, alerts0 = (
                    stored_events(filestore),
                    target.query("SELECT count(*) FROM alerts")[0][0],
                )
                match0 = match_seconds(api.get(METRICS).text)
                cpu0, sim0, t0 = target.cpu(), cpu_seconds(sims), time.monotonic()
                time.sleep(args.seconds)
                events1, alerts1 = (
                    stored_events(filestore),
                    target.query("SELECT count(*) FROM alerts")[0][0],
                )
                match1 = match_seconds(api.get(METRICS).text)
                cpu1, sim1, t1 = target.cpu(), cpu_seconds(sims), time.monotonic()
        finally:
            summary = fleet.stop()
    span = t1 - t0
    calls = match1[1] - match0[1]  # one per group of batches matched together
    return {
        "clients": args.clients,
        "held": held,
        "rate_per_client": args.rate,
        "rules": total_rules,
        "builtin_rules": builtin,
        "seconds": round(span, 1),
        "events_stored": events1 - events0,
        "events_per_second": round((events1 - events0) / span),
        "offered_per_second": round(held * args.rate),
        "match_calls": int(calls),
        "match_ms_per_call": round(1000 * (match1[0] - match0[0]) / calls, 3) if calls else None,
        "alerts_raised": alerts1 - alerts0,
        "server_cpu_percent": round(100 * sum(cpu1[k] - cpu0[k] for k in cpu1) / span, 1),
        "sim_cpu_percent": round(100 * (sim1 - sim0) / span, 1),
        "sim_events_sent": summary.get("events_sent"),
        "sim_errors": summary.get("errors_by_kind"),
        "load_average": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1.0, help="events a second per client")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--processes", type=int, default=2, help="simulator processes")
    parser.add_argument("--ramp", type=float, default=200.0, help="new connections a second")
    parser.add_argument("--no-rules", action="store_true", help="every rule disabled")
    parser.add_argument("--stall", type=float, default=20.0, help="wait for stragglers this long")
    parser.add_argument("--timeout", type=float, default=300.0, help="to connect the fleet")
    parser.add_argument("--dir", type=Path, help="parent of the deployment (default: temp)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    probe_machine(getattr(args, "dir", None))  # before the run loads the machine
    result = run(args)
    print(json.dumps(result), file=sys.stderr, flush=True)
    out = {"run": result, "machine": machine()}
    print(json.dumps(out, indent=2 if not args.json else None))


if __name__ == "__main__":
    main()
