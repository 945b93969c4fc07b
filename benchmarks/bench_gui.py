"""The GUI's clients page at fleet scale: server time and time to a rendered page in chromium.

.venv/bin/python benchmarks/bench_gui.py [--clients 100000] [--repeat 5] [--json]

A real server (HTTPS API, SQLite) whose client index holds N synthetic clients; Debian's
chromium (Playwright) signs in and opens the clients page at the first, a middle and the last
page. Needs /usr/bin/chromium and the dev extras (playwright).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import ssl
import statistics
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


def serve(directory: Path, count: int, ready: Any, stop: threading.Event) -> None:
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
            seed(server, count)
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
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    stop = threading.Event()
    ready: list[Server] = []
    with tempfile.TemporaryDirectory() as tmp:
        thread = threading.Thread(target=serve, args=(Path(tmp), args.clients, ready, stop))
        thread.start()
        try:
            deadline = time.monotonic() + 300
            while not ready:
                if time.monotonic() > deadline or not thread.is_alive():
                    raise SystemExit("the server did not start")
                time.sleep(0.1)
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


if __name__ == "__main__":
    main()
