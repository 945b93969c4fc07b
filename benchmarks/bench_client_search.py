"""Client search at fleet scale: queries per second over an in-memory index of N clients.

.venv/bin/python benchmarks/bench_client_search.py [--clients 100000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from peregrine.services.client_index import ClientIndex

QUERIES = [
    "host:web-0042*",
    "label:prod os:linux",
    "ip:10.3.*",
    "recent:15m",
    "online:true label:dmz",
    "laptop",
    "client:C.00000000000001*",
]


def build(count: int, now: float) -> tuple[ClientIndex, set[str]]:
    rng = random.Random(7)
    index = ClientIndex()
    online = set()
    for n in range(count):
        client_id = f"C.{n:016x}"
        labels = [lab for lab in ("prod", "dmz", "web", "db") if rng.random() < 0.3]
        kind = rng.choice(["web", "db", "laptop", "dc"])
        index.update(
            client_id,
            labels,
            rng.choice(["linux", "linux", "windows", "darwin"]),
            f"{kind}-{n:06d}",
            [f"10.{n % 256}.{(n >> 8) % 256}.{n % 200}"],
            now - rng.random() * 86400,
        )
        if rng.random() < 0.6:
            online.add(client_id)
    return index, online


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    now = time.time()
    started = time.perf_counter()
    index, online = build(args.clients, now)
    build_seconds = time.perf_counter() - started
    results = []
    for query in QUERIES:
        best = float("inf")
        total = 0
        for _ in range(args.repeat):
            t = time.perf_counter()
            total, _page = index.search(query, online=online, limit=100, now=now)
            best = min(best, time.perf_counter() - t)
        results.append({"query": query, "matches": total, "ms": round(best * 1000, 1)})
    if args.json:
        print(json.dumps({"clients": args.clients, "build_s": build_seconds, "queries": results}))
        return
    print(f"{args.clients} clients indexed in {build_seconds:.2f} s")
    print(f"{'query':32} {'matches':>8} {'best ms':>8}")
    for r in results:
        print(f"{r['query']:32} {r['matches']:>8} {r['ms']:>8}")


if __name__ == "__main__":
    main()
