"""Where the one-client question's time goes, piece by piece (issue 17): ``bench_one_client.py``'s
cases with stamps in the server and the agent.

.venv/bin/python benchmarks/trace_one_client.py [--runs 10] [--pause 2] [--cases pslist,hash,hunt]
    [--out DIR] [--json]

The server and agent processes start with ``benchmarks/tracepoints`` on their ``PYTHONPATH``:
its ``sitecustomize`` stamps named functions on entry and exit (wall clock, same machine).
This script stamps the client's side (request sent, final state seen, rows read), then gives
each piece's median over the runs, in milliseconds. Stamps cost a few microseconds each; the
totals are therefore a little above ``bench_one_client.py``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_one_client import HASH_CALL, PSLIST, client_for
from fleet_common import (
    AgentProcess,
    ServerProcess,
    api_token,
    cleanup,
    deployment,
    interrogated_client,
    machine,
)

TRACEPOINTS = Path(__file__).resolve().parent / "tracepoints"

#: A piece: (name, from event, which occurrence, to event, which occurrence).
Piece = tuple[str, str, str, str, str]
COLLECTION: list[Piece] = [
    ("request → server (HTTP, TLS, auth, body)", "c.request", "first", "svc.create>", "first"),
    ("validate and build the request", "svc.prepare>", "first", "svc.prepare<", "first"),
    ("flow + task stored (group commit)", "svc.store>", "first", "sess.send>", "first"),
    ("push → agent has the request", "sess.send>", "first", "agent.recv", "first"),
    ("agent: flow and start spooled, job thread", "agent.recv", "first", "job.run>", "first"),
    ("agent: plan, take a warm worker, send it", "job.run>", "first", "iq.init<", "first"),
    ("worker: prepare → first row", "iq.init<", "first", "iq.header<", "first"),
    ("worker: the rows (the query itself)", "iq.header<", "last", "iq.finish>", "last"),
    ("worker's exit waited for", "iq.finish>", "last", "iq.finish<", "last"),
    ("agent: rows, status, end spooled", "iq.finish<", "last", "job.run<", "first"),
    ("agent sender → server reads the frame", "job.run<", "first", "sess.store>", "last"),
    ("server: files durable (two syncs)", "sess.store>", "last", "ing.record>", "last"),
    (
        "server: counts committed (group commit)",
        "ing.record>",
        "last",
        "ing.flow_messages<",
        "last",
    ),
    ("server: ack, flow_changed", "ing.flow_messages<", "last", "ev.flow_changed<", "last"),
    ("event stream → client sees the end", "ev.flow_changed<", "last", "c.final", "first"),
    ("rows read back (API page)", "c.final", "first", "c.read", "first"),
]
HUNT: list[Piece] = [
    ("request → hunt stored and running", "c.request", "first", "hunt.create<", "first"),
    ("hunt scheduled on the client (commit)", "hunt.create<", "first", "sess.send>", "first"),
    *COLLECTION[3:],
]


def run_collection(api: Any, client_id: str, call: Any, mark: Callable[..., None]) -> None:
    name, parameters = call
    mark("c.request")
    flow = api.collections.create(client_id, [(name, parameters)])
    final = api.collections.wait(flow.flow_id, timeout=120)
    mark("c.final")
    page = api.collections.results(flow.flow_id, name, limit=1000)
    mark("c.read")
    if final.state != "Finished" or not page.rows:
        raise RuntimeError(f"{name}: {final.state} {final.error}")


def run_hunt(api: Any, client_id: str, mark: Callable[..., None]) -> None:
    mark("c.request")
    hunt = api.hunts.create(PSLIST, client_limit=1, description="trace", start=True)
    for progress in api.hunts.watch(hunt.hunt_id, timeout=120):
        if progress.finished + progress.errors >= 1:
            break
    mark("c.final")
    page = api.hunts.results(hunt.hunt_id, PSLIST, limit=1000)
    mark("c.read")
    api.hunts.stop(hunt.hunt_id)
    if not page.rows:
        raise RuntimeError(f"hunt {hunt.hunt_id}: no rows")


def runs_of(out: Path, marks: list[dict[str, Any]]) -> dict[str, list[list[dict[str, Any]]]]:
    """Every stamp, split into the measured runs of each case (request to rows read)."""
    stamps = list(marks)
    for path in out.glob("*.jsonl"):
        stamps += [json.loads(line) for line in path.read_text().splitlines() if line]
    stamps.sort(key=lambda s: s["t"])
    cases: dict[str, list[list[dict[str, Any]]]] = {}
    case, run = None, None
    for s in stamps:
        if s["e"] == "case":
            case, run = s["case"], None
            cases[case] = []
        elif s["e"] == "case_end":
            case = None
        elif case is not None and s["e"] == "c.request":
            run = [s]
            cases[case].append(run)
        elif case is not None and run is not None and run[-1]["e"] != "c.read":
            run.append(s)
    return cases


def pieces(run: list[dict[str, Any]], plan: list[Piece]) -> dict[str, float | None]:
    def at(event: str, which: str) -> float | None:
        times = [s["t"] for s in run if s["e"] == event]
        return (times[0] if which == "first" else times[-1]) if times else None

    out: dict[str, float | None] = {}
    for name, start, first, end, last in plan:
        a, b = at(start, first), at(end, last)
        out[name] = None if a is None or b is None else (b - a) * 1000
    out["total"] = (run[-1]["t"] - run[0]["t"]) * 1000
    return out


def summary(runs: list[list[dict[str, Any]]], plan: list[Piece]) -> dict[str, float | None]:
    split = [pieces(run, plan) for run in runs]
    result: dict[str, float | None] = {}
    for name in split[0]:
        values = [p[name] for p in split if p[name] is not None]
        result[name] = round(statistics.median(values), 1) if values else None  # type: ignore[type-var]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pause", type=float, default=2.0)
    parser.add_argument("--cases", default="pslist,hash,hunt")
    parser.add_argument("--out", type=Path, help="where the stamps go (default: a new folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="peregrine-trace-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ["PEREGRINE_TRACE_DIR"] = str(out)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TRACEPOINTS), os.environ.get("PYTHONPATH")) if p
    )
    marks: list[dict[str, Any]] = []

    def mark(event: str, **details: Any) -> None:
        marks.append({"t": time.time(), "e": event, "p": "client", **details})

    dep = deployment(None)
    api_token(dep)
    server, agent = ServerProcess(dep), AgentProcess.in_deployment(dep)
    cases: dict[str, Callable[[Any, str], None]] = {
        "pslist": lambda api, c: run_collection(api, c, (PSLIST, {}), mark),
        "hash": lambda api, c: run_collection(api, c, HASH_CALL, mark),
        "hunt": lambda api, c: run_hunt(api, c, mark),
    }
    loads: dict[str, tuple[float, float]] = {}
    with cleanup(agent, server):
        server.start()
        agent.start()
        client_id = interrogated_client(dep)
        with client_for(dep) as api:
            for case in args.cases.split(","):
                for _ in range(args.warmup):
                    cases[case](api, client_id)
                    time.sleep(args.pause)
                before = os.getloadavg()[0]
                mark("case", case=case)
                for _ in range(args.runs):
                    cases[case](api, client_id)
                    time.sleep(args.pause)
                mark("case_end")
                loads[case] = (round(before, 2), round(os.getloadavg()[0], 2))
    result: dict[str, Any] = {}
    for case, runs in runs_of(out, marks).items():
        plan = HUNT if case == "hunt" else COLLECTION
        result[case] = {"ms_p50": summary(runs, plan), "load": loads[case], "runs": len(runs)}
    result["machine"] = machine()
    result["stamps"] = str(out)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for case in args.cases.split(","):
        print(f"{case} (load {loads[case][0]} to {loads[case][1]}), ms, median of the runs:")
        for name, value in result[case]["ms_p50"].items():
            print(f"  {name:44} {'-' if value is None else f'{value:7.1f}'}")


if __name__ == "__main__":
    main()
