"""Server-side analysis (DuckDB over the filestore) against SQLite and pandas, same data, same run.

Writes a data set through the real filestore and datastore code (once; reused if present): a hunt
of ``--clients`` clients x ``--rows`` process rows (10,000,000 by default) and a second hunt of
``--join-clients`` clients (1,000,000 rows). Then times three queries with the analysis engine
(JSONL as stored, then with the Parquet copies), with the same rows loaded into an SQLite table
(the embedded datastore's engine), and with pandas when it is installed:

* stack count: ``SELECT name, count(*) ... GROUP BY name`` over the 10M-row hunt;
* filtered scan: ``WHERE username = ... AND cmdline LIKE ...`` over the 10M rows;
* first page of a join: the 1M-row hunt joined with the clients table, top 100 by time.

Then notebooks and timelines (``--cases``): a 20-cell notebook over the 1M-row hunt, run once
and then opened (its stored results read back, nothing rerun), and pages of a timeline over
1,000,000 rows from 3 sources (three more hunts, written once like the others): the first
page, a page half-way, and a text-filtered page, from the JSONL and from the Parquet copies.

    .venv/bin/python benchmarks/bench_analysis.py [--dir /tmp/peregrine-bench-analysis] [--json]
        [--cases queries,notebook,timeline]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peregrine.analysis import AnalysisEngine, AnalysisLimits
from peregrine.analysis.columnar import build
from peregrine.auth.roles import ANALYZE, READ_RESULTS
from peregrine.datastore import FINISHED, IN_PROGRESS, Datastore, FlowRecord, HuntRecord
from peregrine.datastore import open_datastore as open_store
from peregrine.filestore import Filestore
from peregrine.filestore.names import result_set_name

ARTIFACT = "Generic.System.Pslist"
BIG, JOIN = "H.00000000000000b1", "H.00000000000000b2"
COLUMNS = ["pid", "ppid", "name", "username", "cmdline", "start_time", "rss"]
PERMISSIONS = frozenset({ANALYZE, READ_RESULTS})
STACK = (
    f"SELECT name, count(*) AS n FROM hunt('{BIG}', '{ARTIFACT}') "
    "GROUP BY name ORDER BY n DESC, name"
)
SCAN = (
    f"SELECT client_id, pid, cmdline FROM hunt('{BIG}', '{ARTIFACT}') "
    "WHERE username = 'user3' AND cmdline LIKE '%--flag 9999%'"
)
JOIN_PAGE = (
    f"SELECT h.client_id, c.hostname, h.name, h.cmdline FROM hunt('{JOIN}', '{ARTIFACT}') h "
    "JOIN clients() c USING (client_id) ORDER BY h.start_time DESC, h.client_id, h.pid LIMIT 100"
)


def make_rows(rng: random.Random, client: int, count: int) -> list[list[Any]]:
    names = [f"proc{i}" for i in range(300)]
    weights = [1 / (i + 1) for i in range(300)]
    rows = []
    for i in range(count):
        name = rng.choices(names, weights)[0] if i % 50 == 0 else names[(i * 7 + client) % 300]
        start = 1.7e9 + client * 17 + i
        rows.append([i + 1, i // 10 + 1, name, f"user{i % 20}", f"/usr/bin/{name} --flag {i}",
                     start, i * 4096])  # fmt: skip
    return rows


def hunt_record(hunt_id: str) -> HuntRecord:
    return HuntRecord(
        hunt_id=hunt_id, description="bench", tags=[], artifacts=[{"name": ARTIFACT}], limits={},
        include_labels=[], exclude_labels=[], os=[], client_limit=None, expires=2e9,
        creator="bench", created=1.7e9,
    )  # fmt: skip


def add_hunt_client(
    store: Datastore, filestore: Filestore, hunt_id: str, number: int, rows: int,
    rng: random.Random,
) -> None:  # fmt: skip
    """Client ``number`` of a hunt, finished with ``rows`` rows, stored as ingestion stores."""
    client_id, flow_id = f"C.{number:016x}", f"F.{number:016X}"
    store.clients.enroll(client_id, client_id.encode(), 1.7e9)
    store.clients.set_info(client_id, {"hostname": f"host-{number}"}, 1.7e9)
    flow = FlowRecord(flow_id, client_id, [{"name": ARTIFACT}], {}, "bench", 1.7e9)
    store.hunts.schedule_client(hunt_id, flow, b"", 1.7e9, respect_limit=False)
    store.collections.transition(flow_id, IN_PROGRESS, 1.7e9)
    for seq, start in enumerate(range(0, rows, 5000), 1):
        batch = make_rows(rng, number, min(5000, rows - start))
        filestore.append_rows(client_id, flow_id, ARTIFACT, "", seq, COLUMNS, batch)
    store.collections.transition(flow_id, FINISHED, 1.7e9 + 60)


def generate(root: Path, clients: int, rows: int, join_clients: int) -> None:
    """The data set, through the filestore's append_rows and the datastore's stores."""
    store = open_store(f"sqlite:///{root}/peregrine.db")
    filestore = Filestore(root / "filestore", min_free_bytes=0)
    rng = random.Random(16)
    try:
        for hunt_id, count, base in ((BIG, clients, 0), (JOIN, join_clients, clients)):
            store.hunts.create(hunt_record(hunt_id))
            for number in range(base, base + count):
                add_hunt_client(store, filestore, hunt_id, number, rows, rng)
        (root / "complete").write_text("ok")
    finally:
        store.close()


def timed(label: str, run: Callable[[], Any], repeat: int, results: list[dict[str, Any]]) -> Any:
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = run()
        best = min(best, time.perf_counter() - started)
    results.append({"case": label, "seconds": round(best, 3)})
    print(f"{label:<48} {best:8.3f} s", flush=True)
    return value


def engine_rows(engine: AnalysisEngine, sql: str) -> list[dict[str, Any]]:
    with engine.run(sql, PERMISSIONS) as result:
        return [row for batch in result for row in batch.to_pylist()]


def result_stems(store: Datastore, filestore: Filestore) -> list[Path]:
    stems = []
    for hunt_id in (BIG, JOIN):
        offset = 0
        while page := store.hunts.clients(hunt_id, limit=1000, offset=offset):
            for c in page:
                results = filestore.flow_dir(c.client_id, c.flow_id) / "results"
                stems.append(results / result_set_name(ARTIFACT, ""))
            offset += len(page)
    return stems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/peregrine-bench-analysis"))
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=10_000, help="rows per client")
    parser.add_argument("--join-clients", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cases", default="queries,notebook,timeline")
    args = parser.parse_args()
    cases_wanted = set(args.cases.split(","))
    root: Path = args.dir
    root.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()}", flush=True)
    results: list[dict[str, Any]] = []
    if not (root / "complete").exists():
        timed("generate (filestore + datastore)", lambda: generate(
            root, args.clients, args.rows, args.join_clients), 1, results)  # fmt: skip
    store = open_store(f"sqlite:///{root}/peregrine.db")
    filestore = Filestore(root / "filestore", min_free_bytes=0)
    stems = result_stems(store, filestore)
    for stem in stems:  # start from the JSONL as stored
        for old in stem.parent.glob(f"{stem.name}.*.parquet"):
            old.unlink()
    engine = AnalysisEngine(store, filestore, AnalysisLimits(timeout=600, memory_mb=4096))
    engine.copies.schedule = lambda stems: 0  # type: ignore[method-assign]  # timed below
    if "queries" in cases_wanted:
        query_cases(engine, store, filestore, stems, root, args.repeat, results)
    if "notebook" in cases_wanted:
        notebook_cases(engine, store, filestore, args.repeat, results)
    if "timeline" in cases_wanted:
        timeline_cases(engine, store, filestore, root, args.repeat, results)
    print(f"load average after: {os.getloadavg()}", flush=True)
    if args.json:
        json.dump({"load": os.getloadavg(), "results": results}, sys.stdout, indent=2)
    store.close()


def query_cases(
    engine: AnalysisEngine, store: Datastore, filestore: Filestore, stems: list[Path],
    root: Path, repeat: int, results: list[dict[str, Any]],
) -> None:  # fmt: skip
    for stem in stems:  # start from the JSONL as stored
        for old in stem.parent.glob(f"{stem.name}.*.parquet"):
            old.unlink()
    cases = (("stack count 10M", STACK), ("filtered scan 10M", SCAN), ("join page 1M", JOIN_PAGE))
    answers: dict[str, Any] = {}
    for label, sql in cases:
        answers[label] = timed(f"duckdb, JSONL: {label}", lambda s=sql: engine_rows(engine, s),
                               repeat, results)  # fmt: skip
    timed("make the Parquet copies", lambda: [build(s) for s in stems], 1, results)
    for label, sql in cases:
        got = timed(f"duckdb, Parquet: {label}", lambda s=sql: engine_rows(engine, s),
                    repeat, results)  # fmt: skip
        assert sorted(map(str, got)) == sorted(map(str, answers[label])), label
    sqlite_cases(root, store, filestore, repeat, results, answers)
    pandas_cases(stems, store, repeat, results, answers)


def notebook_cases(
    engine: AnalysisEngine, store: Datastore, filestore: Filestore, repeat: int,
    results: list[dict[str, Any]],
) -> None:  # fmt: skip
    """20 SQL cells over the 1M-row hunt (stack counts, rare values, pages), run once; then the
    notebook opened: the datastore read of every cell with its stored rows, and the API's
    answer built from it (first 100 rows per cell), nothing rerun."""
    from peregrine.api.routes.notebooks import notebook_out
    from peregrine.notebooks import NotebookService

    table = f"hunt('{JOIN}', '{ARTIFACT}')"
    cells = []
    for column in ("name", "username", "ppid", "pid", "rss"):
        cells.append(f"SELECT {column}, count(*) AS n FROM {table} GROUP BY 1 ORDER BY n DESC")
        cells.append(f"SELECT {column}, count(DISTINCT client_id) AS hosts FROM {table} "
                     "GROUP BY 1 HAVING hosts <= 2 ORDER BY hosts, 1 LIMIT 1000")  # fmt: skip
        cells.append(f"SELECT * FROM {table} WHERE {column} IS NOT NULL LIMIT 1000")
        cells.append(f"SELECT client_id, max({column}) AS top FROM {table} GROUP BY 1")
    service = NotebookService(store, filestore, engine)
    made = service.create("bench", PERMISSIONS, "20 cells",
                          cells=[{"kind": "sql", "text": c} for c in cells])  # fmt: skip
    ran = timed(
        "notebook: run 20 cells over the 1M-row hunt",
        lambda: service.run(made.notebook_id, "bench", PERMISSIONS), 1, results,
    )  # fmt: skip
    stored = sum(len(c.result["rows"]) for c in ran if c.result)
    print(f"  {stored:,} result rows stored", flush=True)
    opened = timed("notebook: open 20 cells (stored results)",
                   lambda: service.get(made.notebook_id, "bench", PERMISSIONS), repeat,
                   results)  # fmt: skip
    assert len(opened.cells) == 20 and all(c.result and not c.result["error"] for c in opened.cells)
    timed("notebook: open + the API's answer (100 rows a cell)",
          lambda: json.dumps(notebook_out(service.get(made.notebook_id, "bench", PERMISSIONS))),
          repeat, results)  # fmt: skip


TIMELINE_HUNTS = ("H.00000000000000c1", "H.00000000000000c2", "H.00000000000000c3")


def timeline_cases(
    engine: AnalysisEngine, store: Datastore, filestore: Filestore, root: Path, repeat: int,
    results: list[dict[str, Any]],
) -> None:  # fmt: skip
    """Pages of a timeline over 1,000,000 rows: three hunts of 100 clients x 3,334 rows, each a
    source with its own time column and message."""
    from peregrine.timelines import TimelineService
    from peregrine.timelines.query import Filters

    if not (root / "timeline-complete").exists():
        timed("generate 3 timeline hunts (filestore + datastore)",
              lambda: generate_timeline(store, filestore), 1, results)  # fmt: skip
    stems = []
    for hunt_id in TIMELINE_HUNTS:
        for c in store.hunts.clients(hunt_id, limit=1000):
            stem = filestore.flow_dir(c.client_id, c.flow_id) / "results"
            stems.append(stem / result_set_name(ARTIFACT, ""))
    for stem in stems:
        for old in stem.parent.glob(f"{stem.name}.*.parquet"):
            old.unlink()
    service = TimelineService(store, engine)
    sources = [
        {"kind": "hunt", "id": hunt_id, "artifact": ARTIFACT, "label": f"source{n}",
         "time": "start_time", "desc": "Process start", "message": "{name} ({pid}) on {hostname}"}
        for n, hunt_id in enumerate(TIMELINE_HUNTS, 1)
    ]  # fmt: skip
    made = service.create("bench", PERMISSIONS, "1M rows", sources)

    def page(offset: int, filters: Filters) -> dict[str, Any]:
        return service.page(made.timeline_id, "bench", PERMISSIONS, filters, offset, 100)

    for kind in ("JSONL", "Parquet"):
        if kind == "Parquet":
            timed("timeline: make the Parquet copies", lambda: [build(s) for s in stems], 1,
                  results)  # fmt: skip
        first = timed(f"timeline 1M rows, {kind}: first page (100)",
                      lambda: page(0, Filters()), repeat, results)  # fmt: skip
        assert len(first["rows"]) == 100 and first["next_offset"] == 100
        middle = timed(f"timeline 1M rows, {kind}: page at offset 500,000",
                       lambda: page(500_000, Filters()), repeat, results)  # fmt: skip
        assert len(middle["rows"]) == 100
        found = timed(f"timeline 1M rows, {kind}: text filter, first page",
                      lambda: page(0, Filters(text="--flag 3333")), repeat, results)  # fmt: skip
        assert found["rows"], "the filter should match"


def generate_timeline(store: Datastore, filestore: Filestore) -> None:
    rng = random.Random(17)
    for serial, hunt_id in enumerate(TIMELINE_HUNTS):
        store.hunts.create(hunt_record(hunt_id))
        for number in range(10_000 + serial * 100, 10_000 + serial * 100 + 100):
            rows = 3_334 if serial < 2 else 3_332
            add_hunt_client(store, filestore, hunt_id, number, rows, rng)
    Path(filestore.root.parent / "timeline-complete").write_text("ok")


def sqlite_cases(
    root: Path,
    store: Datastore,
    filestore: Filestore,
    repeat: int,
    results: list[dict[str, Any]],
    answers: dict[str, Any],
) -> None:
    """The same rows in an SQLite table (no index: an ad hoc question), same queries."""
    path = root / "rows.sqlite"
    db = sqlite3.connect(path)
    if not db.execute("SELECT name FROM sqlite_master WHERE name = 'rows'").fetchone():

        def load() -> None:
            db.execute("CREATE TABLE rows (hunt_id, client_id, pid, ppid, name, username, cmdline,"
                       " start_time, rss)")  # fmt: skip
            db.execute("CREATE TABLE clients (client_id PRIMARY KEY, hostname)")
            for hunt_id in (BIG, JOIN):
                offset = 0
                while page := store.hunts.clients(hunt_id, limit=1000, offset=offset):
                    for c in page:
                        db.execute("INSERT INTO clients VALUES (?, ?)", (c.client_id, c.hostname))
                        total = filestore.row_count(c.client_id, c.flow_id, ARTIFACT, "")
                        rows = filestore.read_rows(c.client_id, c.flow_id, ARTIFACT, "", 0, total)
                        db.executemany(
                            "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [(hunt_id, c.client_id, *(r[k] for k in COLUMNS)) for r in rows],
                        )
                    offset += len(page)
            db.commit()

        timed("sqlite: load the rows (once)", load, 1, results)
    queries = {
        "stack count 10M": (f"SELECT name, count(*) AS n FROM rows WHERE hunt_id = '{BIG}' "
                            "GROUP BY name ORDER BY n DESC, name"),
        "filtered scan 10M": (f"SELECT client_id, pid, cmdline FROM rows WHERE hunt_id = '{BIG}' "
                              "AND username = 'user3' AND cmdline LIKE '%--flag 9999%'"),
        "join page 1M": ("SELECT h.client_id, c.hostname, h.name, h.cmdline FROM rows h JOIN "
                         f"clients c USING (client_id) WHERE h.hunt_id = '{JOIN}' "
                         "ORDER BY h.start_time DESC, h.client_id, h.pid LIMIT 100"),
    }  # fmt: skip
    for label, sql in queries.items():
        rows = timed(f"sqlite: {label}", lambda s=sql: db.execute(s).fetchall(), repeat, results)
        assert len(rows) == len(answers[label]), label
    db.close()


def pandas_cases(
    stems: list[Path],
    store: Datastore,
    repeat: int,
    results: list[dict[str, Any]],
    answers: dict[str, Any],
) -> None:
    try:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        print("pandas is not installed: its cases are skipped")
        return

    def load() -> Any:
        tables = []
        for stem in stems:
            [copy] = stem.parent.glob(f"{stem.name}.*.parquet")
            table = pq.read_table(copy)
            client_id = stem.parts[-5]
            tables.append(table.append_column("client_id", pa.array([client_id] * len(table))))
        return pa.concat_tables(tables, promote_options="default").to_pandas()

    frame = timed("pandas: load the Parquet copies (once)", load, 1, results)
    big_ids = {c.client_id for c in store.hunts.clients(BIG, limit=100_000)}
    big = frame[frame.client_id.isin(big_ids)]
    joined = frame[~frame.client_id.isin(big_ids)]
    hosts = pd.DataFrame(
        [(c.client_id, c.hostname) for c in store.hunts.clients(JOIN, limit=100_000)],
        columns=["client_id", "hostname"],
    )
    cases: dict[str, Callable[[], Any]] = {
        "stack count 10M": lambda: big.groupby("name").size().sort_values(ascending=False),
        "filtered scan 10M": lambda: big[
            (big.username == "user3") & big.cmdline.str.contains("--flag 9999", regex=False)
        ][["client_id", "pid", "cmdline"]],
        "join page 1M": lambda: (
            joined.merge(hosts, on="client_id")
            .sort_values(["start_time", "client_id", "pid"], ascending=[False, True, True])
            .head(100)
        ),
    }
    for label, run in cases.items():
        got = timed(f"pandas: {label}", run, repeat, results)
        assert len(got) == len(answers[label]), label


if __name__ == "__main__":
    main()
