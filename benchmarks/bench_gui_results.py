"""The GUI's result pages at scale: a collection of 1,000,000 rows and a hunt over 10,000 clients.

.venv/bin/python benchmarks/bench_gui.py --page results [--rows 1000000] [--hunt-clients 10000]

Seeds a real server's datastore and filestore through their own code (the rows appended in
batches as ingestion appends them), then times the API's page (plain pages by the filestore's
row index; sorted and filtered pages by the analysis engine, from the JSONL on the first query
and from the Parquet copy it leaves) and the time until chromium has drawn the page.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

import httpx

from bench_analysis import ARTIFACT, COLUMNS, add_hunt_client, hunt_record
from peregrine.datastore import FINISHED, IN_PROGRESS, FlowRecord

FLOW = "F.BENCHRESULTS0001"
HUNT = "H.bec0000000000001"
BATCH = 5000
PAGE = 100


def rows(rng: random.Random, first: int, count: int, client: int = 0) -> list[list[Any]]:
    out = []
    for i in range(first, first + count):
        name = f"proc{(i * 7 + client) % 300}"
        out.append([i + 1, i // 10 + 1, name, f"user{i % 20}", f"/usr/bin/{name} --flag {i}",
                    1.7e9 + rng.random() * 1e6, i * 4096])  # fmt: skip
    return out


def seed_collection(server: Any, count: int) -> str:
    """One finished collection of ``count`` rows on a client of its own."""
    store, files = server.datastore, server.filestore
    client_id = "C.beefbeefbeef0001"
    store.clients.enroll(client_id, client_id.encode(), 1.7e9)
    store.clients.set_info(client_id, {"hostname": "bench-results"}, 1.7e9)
    sources = {ARTIFACT: {"status": "finished", "rows": count}}
    flow = FlowRecord(FLOW, client_id, [{"name": ARTIFACT}], {}, "bench", 1.7e9, sources=sources)
    store.collections.create(flow)
    store.collections.transition(FLOW, IN_PROGRESS, 1.7e9)
    rng = random.Random(1)
    for seq, first in enumerate(range(0, count, BATCH), 1):
        batch = rows(rng, first, min(BATCH, count - first))
        files.append_rows(client_id, FLOW, ARTIFACT, "", seq, COLUMNS, batch)
    store.collections.transition(FLOW, FINISHED, 1.7e9 + 60)
    return FLOW


def seed_hunt(server: Any, clients: int, per_client: int) -> str:
    """A finished hunt over ``clients`` clients, ``per_client`` rows each (as
    bench_analysis.py makes its hunts)."""
    store = server.datastore
    store.hunts.create(hunt_record(HUNT))
    rng = random.Random(2)
    for number in range(clients):
        add_hunt_client(store, server.filestore, HUNT, 0xB000_0000 + number, per_client, rng)
    return HUNT


def api_times(http: httpx.Client, path: str, cases: dict[str, dict[str, Any]], repeat: int
              ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per case: the first call's time (cold: a sorted page reads the JSONL) and the best of
    the rest."""
    out: dict[str, dict[str, Any]] = {}
    for label, params in cases.items():
        timings = []
        for _ in range(repeat + 1):
            started = time.perf_counter()
            answer = http.get(path, params={"artifact": ARTIFACT, "limit": PAGE, **params})
            timings.append(time.perf_counter() - started)
            if answer.status_code != 200:  # a refusal (a time-out: 503) is a result too
                out[label] = {"status": answer.status_code, "detail": answer.text[:300],
                              "after_ms": round(timings[-1] * 1000, 1)}  # fmt: skip
                break
        else:
            out[label] = {"first_ms": round(timings[0] * 1000, 1),
                          "best_ms": round(min(timings[1:]) * 1000, 1)}  # fmt: skip
    return out


def browser_times(page: Any, url: str, total: int, repeat: int) -> dict[str, float]:
    """Median times: the page opened until its first 100 rows are drawn; the last page; a
    column's header clicked until the sorted rows are drawn."""
    opened, last, sorted_ = [], [], []
    first_range = f"1\u2013{PAGE} of {total:,} rows"
    last_start = (total - 1) // PAGE * PAGE + 1
    for _ in range(repeat):
        started = time.perf_counter()
        page.goto(url)
        table = page.locator("section.results").first
        table.get_by_text(first_range).wait_for()
        table.locator("table.rows tbody tr").nth(PAGE - 1).wait_for()
        opened.append(time.perf_counter() - started)
        started = time.perf_counter()
        table.get_by_role("button", name="Last page").first.click()
        table.get_by_text(f"{last_start:,}\u2013{total:,} of {total:,} rows").first.wait_for()
        last.append(time.perf_counter() - started)
        table.get_by_role("button", name="First page").first.click()
        table.get_by_text(first_range).first.wait_for()
        started = time.perf_counter()
        table.get_by_role("button", name="start_time", exact=True).click()
        table.locator("th[aria-sort=ascending]").wait_for()
        table.get_by_text(first_range).wait_for()
        table.locator("table.rows tbody tr").nth(PAGE - 1).wait_for()
        sorted_.append(time.perf_counter() - started)
    return {"open_ms": round(statistics.median(opened) * 1000, 1),
            "last_page_ms": round(statistics.median(last) * 1000, 1),
            "sort_ms": round(statistics.median(sorted_) * 1000, 1)}  # fmt: skip


def cases(total: int) -> dict[str, dict[str, Any]]:
    last = (total - 1) // PAGE * PAGE
    return {
        "page 1": {"offset": 0},
        "middle page": {"offset": last // 2 // PAGE * PAGE},
        "last page": {"offset": last},
        "sorted by start_time desc, page 1": {"sort": "start_time", "order": "desc"},
        "sorted, middle page": {"sort": "start_time", "offset": last // 2 // PAGE * PAGE},
        "filtered (cmdline contains 'flag 4242'), page 1": {"filter": "cmdline:flag 4242"},
    }
