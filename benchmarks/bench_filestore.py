"""Filestore ingestion: rows/s and MB/s of append_rows, 200-byte rows in batches of 1000.

Each batch is one durable append, as the server does for one agent message: JSON lines written,
fsync'd, the row index and the commit record updated (fsync + rename + directory fsync). The
ceiling is a raw write + fsync of the same bytes per batch; the CPU part is measured alone by
encoding without writing. Random page reads (100 rows at a random offset) show the index at work.
Best of --repeat runs, each in a fresh directory. Encoding is timed in the append and the
encode-only cases; the raw case writes bytes encoded beforehand.

    .venv/bin/python benchmarks/bench_filestore.py [--batches 200] [--repeat 3] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from peregrine.filestore import Filestore
from peregrine.filestore.rowlog import row_record

CLIENT, FLOW = "C.0123456789abcdef", "F.0123456789ABCDEF"
COLUMNS = ["n", "path", "size", "mtime", "mode", "sha256"]
BATCH = 1000


def make_batch(start: int) -> list[list[Any]]:
    """1000 rows whose JSON lines are about 200 bytes each."""
    return [
        [
            i,
            f"/var/lib/peregrine/some/longer/directory/file-{i:010d}.dat",
            i * 37,
            1_700_000_000.25 + i,
            "-rw-r--r--",
            f"{i:064x}",
        ]
        for i in range(start, start + BATCH)
    ]


def best_of(repeat: int, run: Callable[[Path], int], base: Path) -> tuple[float, int]:
    """Best wall time of ``repeat`` runs (after one warm-up), each in a new directory."""
    times, result = [], 0
    for attempt in range(repeat + 1):
        work = Path(tempfile.mkdtemp(prefix="bench-filestore-", dir=base))
        try:
            start = time.perf_counter()
            result = run(work)
            elapsed = time.perf_counter() - start
        finally:
            shutil.rmtree(work)
        if attempt:
            times.append(elapsed)
    return min(times), result


def machine(base: Path) -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        pass
    fs = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", str(base)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "msgspec": msgspec.__version__,
        "filesystem": fs or "unknown",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    batches = [make_batch(n * BATCH) for n in range(args.batches)]
    rows_total = args.batches * BATCH

    def append(work: Path) -> int:
        store = Filestore(work, min_free_bytes=0)
        written = 0
        for seq, rows in enumerate(batches, 1):
            written += store.append_rows(CLIENT, FLOW, "Bench", "s", seq, COLUMNS, rows)
        if store.row_count(CLIENT, FLOW, "Bench", "s") != rows_total:
            raise SystemExit("append: wrong row count")
        return written

    encoder = msgspec.json.Encoder()

    def encode_only(work: Path) -> int:
        size = 0
        for rows in batches:
            records = [row_record(COLUMNS, row) for row in rows]
            size += len(encoder.encode_lines(records))
        return size

    payloads = [encoder.encode_lines([row_record(COLUMNS, r) for r in rows]) for rows in batches]

    def raw_write(work: Path) -> int:
        fd = os.open(work / "raw.jsonl", os.O_WRONLY | os.O_CREAT, 0o640)
        size = 0
        try:
            for payload in payloads:
                size += os.write(fd, payload)
                os.fsync(fd)
        finally:
            os.close(fd)
        return size

    cases = [
        ("append_rows (durable, indexed, idempotent)", append),
        ("encode only (dicts, tagging, JSON; no I/O)", encode_only),
        ("raw write + fsync of pre-encoded batches", raw_write),
    ]
    results = []
    for name, run in cases:
        seconds, size = best_of(args.repeat, run, args.dir)
        results.append(
            {
                "case": name,
                "seconds": seconds,
                "rows_per_s": rows_total / seconds,
                "mb_per_s": size / seconds / 1e6,
                "bytes": size,
                "bytes_per_row": size / rows_total,
            }
        )

    # Reads: random pages of 100 rows from the full result set.
    work = Path(tempfile.mkdtemp(prefix="bench-filestore-", dir=args.dir))
    try:
        append(work)
        store = Filestore(work, min_free_bytes=0)
        rng = random.Random(1)
        offsets = [rng.randrange(0, rows_total - 100) for _ in range(2000)]
        start = time.perf_counter()
        for offset in offsets:
            page = store.read_rows(CLIENT, FLOW, "Bench", "s", offset=offset, limit=100)
            if page[0]["n"] != offset:
                raise SystemExit("read: wrong page")
        seconds = time.perf_counter() - start
        reads: dict[str, Any] = {
            "pages": len(offsets),
            "seconds": seconds,
            "pages_per_s": len(offsets) / seconds,
        }
        for label, offset in (("first", 0), ("last", rows_total - 100)):
            start = time.perf_counter()
            for _ in range(1000):
                store.read_rows(CLIENT, FLOW, "Bench", "s", offset=offset, limit=100)
            reads[f"{label}_page_ms"] = (time.perf_counter() - start) / 1000 * 1e3
    finally:
        shutil.rmtree(work)

    report = {
        "benchmark": "filestore",
        "rows": rows_total,
        "batch": BATCH,
        "repeat": args.repeat,
        "machine": machine(args.dir),
        "results": results,
        "random_page_reads": reads,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{rows_total:,} rows in batches of {BATCH}, best of {args.repeat}, in {args.dir}")
    print(f"{'case':<46} {'seconds':>8} {'rows/s':>10} {'MB/s':>7} {'B/row':>6}")
    for r in results:
        print(
            f"{r['case']:<46} {r['seconds']:>8.3f} {r['rows_per_s']:>10,.0f} "
            f"{r['mb_per_s']:>7.1f} {r['bytes_per_row']:>6.0f}"
        )
    print(
        f"random 100-row pages: {reads['pages']} in {reads['seconds']:.3f} s "
        f"= {reads['pages_per_s']:,.0f} pages/s; first page {reads['first_page_ms']:.3f} ms, "
        f"last page {reads['last_page_ms']:.3f} ms"
    )


if __name__ == "__main__":
    main()
