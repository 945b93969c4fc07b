"""The GUI's clients page at fleet scale: server time and time to a rendered page in chromium.

.venv/bin/python benchmarks/bench_gui.py [--clients 100000] [--repeat 5] [--json]

A real server (HTTPS API, SQLite) whose client index holds N synthetic clients; Debian's
chromium (Playwright) signs in and opens the clients page at the first, a middle and the last
page. Needs /usr/bin/chromium and the dev extras (playwright).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from peregrine.config import generate
from peregrine.server.app import Server

PASSWORD = "correct horse battery staple"
PAGE = 50
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(server: Server, count: int) -> None:
    rng = random.Random(7)
    now = time.time()
    for n in range(count):
        kind = rng.choice(["web", "db", "laptop", "dc"])
        server.client_index.update(
            f"C.{n:016x}",
            [lab for lab in ("prod", "dmz", "web", "db") if rng.random() < 0.3],
            rng.choice(["linux", "linux", "windows", "darwin"]),
            f"{kind}-{n:06d}",
            [f"10.{n % 256}.{(n >> 8) % 256}.{n % 200}"],
            now - rng.random() * 86400,
        )


def serve(directory: Path, fill: Any, ready: Any, stop: threading.Event) -> None:
    async def main() -> None:
        port = free_port()
        deployment = generate(
            directory, [f"wss://127.0.0.1:{port}/agent"], port=port, api_port=free_port(),
            force=True,
        )  # fmt: skip
        server = Server(deployment.server)
        await server.start()
        try:
            server.accounts.create_user("bench", PASSWORD, ["reader"])
            await asyncio.to_thread(fill, server)
            ready.append(server)
            while not stop.is_set():
                await asyncio.sleep(0.1)
        finally:
            await server.stop()

    asyncio.run(main())


def server_times(base: str, ca: str, offsets: list[int], repeat: int) -> dict[int, float]:
    """Best wall time of GET /api/v1/clients?limit=50&offset=... (signed-in session)."""
    out = {}
    tls = ssl.create_default_context(cafile=ca)
    with httpx.Client(base_url=base, verify=tls, timeout=60) as http:
        http.post("/api/v1/auth/login", json={"username": "bench", "password": PASSWORD})
        for offset in offsets:
            best = float("inf")
            for _ in range(repeat):
                started = time.perf_counter()
                http.get("/api/v1/clients", params={"limit": PAGE, "offset": offset})
                best = min(best, time.perf_counter() - started)
            out[offset] = best
    return out


def browser_times(base: str, offsets: list[int], repeat: int) -> dict[int, float]:
    """Median time from navigation to the page's table drawn (the pager's range shown)."""
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_context(base_url=base, ignore_https_errors=True).new_page()
        page.goto("/ui/")
        page.get_by_label("User name").fill("bench")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Sign out").wait_for()
        for offset in offsets:
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                page.goto(f"/ui/clients?offset={offset}")
                page.get_by_text(f"{offset + 1:,}\u2013").wait_for()
                page.locator("tbody tr").nth(PAGE - 1).wait_for()
                times.append(time.perf_counter() - started)
            out[offset] = statistics.median(times)
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--page", choices=["clients", "results"], default="clients")
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the collection")
    parser.add_argument("--hunt-clients", type=int, default=10_000)
    parser.add_argument("--hunt-rows", type=int, default=20, help="rows per hunt client")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.page == "results":
        results_main(args)
        return
    stop = threading.Event()
    ready: list[Server] = []
    with tempfile.TemporaryDirectory() as tmp:
        fill = functools.partial(seed, count=args.clients)
        thread = threading.Thread(target=serve, args=(Path(tmp), fill, ready, stop))
        thread.start()
        try:
            wait_ready(ready, thread)
            base = f"https://127.0.0.1:{ready[0].api_port}"
            last = (args.clients - 1) // PAGE * PAGE
            offsets = [0, last // 2 // PAGE * PAGE, last]
            ca = str(ready[0].config.ca_cert_path)
            server = server_times(base, ca, offsets, args.repeat)
            browser = browser_times(base, offsets, args.repeat)
        finally:
            stop.set()
            thread.join(60)
    result = {
        "clients": args.clients,
        "pages": [
            {"offset": o, "server_ms": round(server[o] * 1000, 1),
             "browser_ms": round(browser[o] * 1000, 1)}
            for o in offsets
        ],
    }  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return
    print(f"clients page over {args.clients:,} clients (page of {PAGE}):")
    for row in result["pages"]:
        print(
            f"  offset {row['offset']:>7,}: API {row['server_ms']:7.1f} ms, "
            f"rendered in chromium {row['browser_ms']:7.1f} ms"
        )


def wait_ready(ready: list[Server], thread: threading.Thread, seconds: float = 3600) -> None:
    deadline = time.monotonic() + seconds
    while not ready:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("the server did not start")
        time.sleep(0.1)


def results_main(args: argparse.Namespace) -> None:
    """A 1,000,000-row collection and a hunt over 10,000 clients (bench_gui_results.py)."""
    from playwright.sync_api import sync_playwright

    import bench_gui_results as bench

    hunt_total = args.hunt_clients * args.hunt_rows

    def fill(server: Server) -> None:
        started = time.perf_counter()
        bench.seed_collection(server, args.rows)
        bench.seed_hunt(server, args.hunt_clients, args.hunt_rows)
        print(f"seeded in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    stop = threading.Event()
    ready: list[Server] = []
    with tempfile.TemporaryDirectory() as tmp:
        thread = threading.Thread(target=serve, args=(Path(tmp), fill, ready, stop))
        thread.start()
        try:
            wait_ready(ready, thread)
            base = f"https://127.0.0.1:{ready[0].api_port}"
            tls = ssl.create_default_context(cafile=str(ready[0].config.ca_cert_path))
            with httpx.Client(base_url=base + "/api/v1", verify=tls, timeout=300) as http:
                http.post("/auth/login", json={"username": "bench", "password": PASSWORD})
                api = {
                    "collection": bench.api_times(
                        http, f"/collections/{bench.FLOW}/results", bench.cases(args.rows),
                        args.repeat),
                    "hunt": bench.api_times(
                        http, f"/hunts/{bench.HUNT}/results", bench.cases(hunt_total),
                        args.repeat),
                }  # fmt: skip
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_context(base_url=base, ignore_https_errors=True).new_page()
                page.set_default_timeout(120_000)
                page.goto("/ui/")
                page.get_by_label("User name").fill("bench")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.get_by_role("button", name="Sign out").wait_for()
                rendered = {
                    "collection": bench.browser_times(
                        page, f"/ui/collections/{bench.FLOW}", args.rows, args.repeat
                    ),
                }
                try:
                    rendered["hunt"] = bench.browser_times(
                        page, f"/ui/hunts/{bench.HUNT}", hunt_total, args.repeat
                    )
                except Exception as exc:  # a time-out waiting is a result too
                    rendered["hunt"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                browser.close()
        finally:
            stop.set()
            thread.join(120)
    result = {"rows": args.rows, "hunt_clients": args.hunt_clients, "hunt_rows": hunt_total,
              "api": api, "browser": rendered}  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return
    for what, title in (
        ("collection", f"collection of {args.rows:,} rows"),
        ("hunt", f"hunt over {args.hunt_clients:,} clients, {hunt_total:,} rows"),
    ):
        print(f"{title} (pages of {bench.PAGE}):")
        for label, t in api[what].items():
            if "status" in t:
                print(
                    f"  API {label:<48} {t['status']} after {t['after_ms']:.0f} ms: {t['detail']}"
                )
                continue
            print(f"  API {label:<48} first {t['first_ms']:8.1f} ms, then {t['best_ms']:8.1f} ms")
        b = rendered[what]
        if "error" in b:
            print(f"  chromium: {b['error']}")
            continue
        print(f"  chromium: opened {b['open_ms']:.0f} ms, last page {b['last_page_ms']:.0f} ms, "
              f"sorted by a header {b['sort_ms']:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
