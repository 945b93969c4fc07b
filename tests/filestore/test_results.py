"""Result sets and flow logs: paged reads through the index, idempotency by seq, crash repair."""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import pytest

from peregrine.filestore import INDEX_EVERY, Filestore

from .conftest import CLIENT, FLOW

COLUMNS = ["n", "name", "blob"]


def make_rows(start: int, count: int) -> list[list[Any]]:
    return [[i, f"row {i}", i.to_bytes(4, "big")] for i in range(start, start + count)]


def fill(store: Filestore, total: int, batch: int = 700) -> None:
    """Append ``total`` rows in batches that do not line up with the index interval."""
    seq = 1
    for start in range(0, total, batch):
        count = min(batch, total - start)
        store.append_rows(CLIENT, FLOW, "Linux.Test", "src", seq, COLUMNS, make_rows(start, count))
        seq += 1


def expected(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {"n": i, "name": f"row {i}", "blob": i.to_bytes(4, "big")}
        for i in range(start, start + count)
    ]


TOTAL = 2 * INDEX_EVERY + 345


@pytest.mark.parametrize(
    ("offset", "limit"),
    [
        (0, 100),
        (INDEX_EVERY - 1, 3),  # crosses the first index boundary
        (INDEX_EVERY, 10),  # exactly on an index entry
        (INDEX_EVERY + 1, 10),
        (2 * INDEX_EVERY - 2, 5),
        (TOTAL - 50, 100),  # last page: fewer rows than asked for
        (TOTAL - 1, 1),
    ],
)
def test_pages_at_index_boundaries(store: Filestore, offset: int, limit: int) -> None:
    fill(store, TOTAL)
    page = store.read_rows(CLIENT, FLOW, "Linux.Test", "src", offset=offset, limit=limit)
    assert page == expected(offset, min(limit, TOTAL - offset))


def test_read_past_the_end_and_of_unknown_sets_is_empty(store: Filestore) -> None:
    fill(store, 10)
    assert store.read_rows(CLIENT, FLOW, "Linux.Test", "src", offset=10) == []
    assert store.read_rows(CLIENT, FLOW, "Other", "src") == []
    assert store.row_count(CLIENT, FLOW, "Other", "src") == 0
    with pytest.raises(ValueError, match="negative"):
        store.read_rows(CLIENT, FLOW, "Linux.Test", "src", offset=-1)


@pytest.mark.parametrize("batch", [333, INDEX_EVERY, 2500])
def test_index_holds_one_offset_per_interval(store: Filestore, batch: int) -> None:
    fill(store, TOTAL, batch)
    results = store.flow_dir(CLIENT, FLOW) / "results"
    (idx,) = results.glob("*.idx")
    (data,) = results.glob("*.jsonl")
    raw = idx.read_bytes()
    assert len(raw) == 8 * math.ceil(TOTAL / INDEX_EVERY)
    offsets = [int.from_bytes(raw[i : i + 8], "little") for i in range(0, len(raw), 8)]
    lines = data.read_bytes().splitlines(keepends=True)
    for entry, offset in enumerate(offsets):
        before = sum(len(line) for line in lines[: entry * INDEX_EVERY])
        assert offset == before


def test_row_count_and_result_sets(store: Filestore) -> None:
    fill(store, 1500)
    store.append_rows(CLIENT, FLOW, "Generic.Other", "", 100, ["x"], [[1], [2]])
    store.append_rows(CLIENT, FLOW, "a/../b", "s\x00", 101, ["x"], [[3]])
    assert store.row_count(CLIENT, FLOW, "Linux.Test", "src") == 1500
    assert store.result_sets(CLIENT, FLOW) == [
        ("Generic.Other", "", 2),
        ("Linux.Test", "src", 1500),
        ("a/../b", "s\x00", 1),
    ]
    names = [p.name for p in (store.flow_dir(CLIENT, FLOW) / "results").iterdir()]
    assert all("/" not in n and "\x00" not in n and not n.startswith(".") for n in names)


def test_values_round_trip(store: Filestore) -> None:
    columns = ["b", "e", "u", "i", "f", "none", "j", "tricky", "nested"]
    row = [
        b"\x00\xff binary",
        b"",
        "ünïcødé\nnewline",
        -(2**63),
        1.5,
        None,
        {"list": [1, "two", None]},
        {"$bytes": "not really bytes"},
        [b"\x01", {"$literal": 1}],
    ]
    store.append_rows(CLIENT, FLOW, "A", "s", 1, columns, [row])
    (got,) = store.read_rows(CLIENT, FLOW, "A", "s")
    assert got == dict(zip(columns, row, strict=True))
    assert store.columns(CLIENT, FLOW, "A", "s") == columns


def test_repeated_column_names_are_kept_apart(store: Filestore) -> None:
    store.append_rows(CLIENT, FLOW, "A", "s", 1, ["x", "x"], [[1, 2]])
    assert store.read_rows(CLIENT, FLOW, "A", "s") == [{"x": 1, "x_2": 2}]


def test_row_width_is_checked_before_anything_is_written(store: Filestore) -> None:
    with pytest.raises(ValueError, match="row 1 has 1 values for 2 columns"):
        store.append_rows(CLIENT, FLOW, "A", "s", 1, ["a", "b"], [[1, 2], [3]])
    assert store.row_count(CLIENT, FLOW, "A", "s") == 0
    assert store.append_rows(CLIENT, FLOW, "A", "s", 1, ["a", "b"], [[1, 2]]) > 0


def test_duplicate_seq_is_ignored(store: Filestore) -> None:
    rows = make_rows(0, 5)
    assert store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, rows) > 0
    assert store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, make_rows(5, 5)) > 0
    assert store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, make_rows(5, 5)) == 0
    assert store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, rows) == 0
    assert store.row_count(CLIENT, FLOW, "A", "s") == 10
    assert [r["n"] for r in store.read_rows(CLIENT, FLOW, "A", "s", limit=100)] == list(range(10))


def test_crash_mid_write_is_repaired_and_not_duplicated(store: Filestore) -> None:
    """Garbage after the committed length and extra index entries, as a process killed after
    writing but before committing would leave; the agent then resends the same seq."""
    store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, make_rows(0, 999))
    results = store.flow_dir(CLIENT, FLOW) / "results"
    (data,) = results.glob("*.jsonl")
    idx = data.with_suffix(".idx")
    assert not idx.exists(), "a set of one batch under 1,000 rows needs no index (entry 0 is 0)"
    committed = data.stat().st_size
    with data.open("ab") as handle:
        handle.write(b'{"n": 999, "name": "half a ro')
    with idx.open("ab") as handle:
        handle.write((123456).to_bytes(8, "little"))
    # Readers only see what was committed.
    assert store.row_count(CLIENT, FLOW, "A", "s") == 999
    assert store.read_rows(CLIENT, FLOW, "A", "s", offset=998)[0]["n"] == 998

    assert store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, make_rows(999, 10)) > 0
    assert data.stat().st_size > committed
    numbers = [json.loads(line)["n"] for line in data.read_bytes().splitlines()]
    assert numbers == list(range(1009))
    assert store.read_rows(CLIENT, FLOW, "A", "s", offset=INDEX_EVERY, limit=5) == expected(
        INDEX_EVERY, 5
    )


def test_logs_append_read_and_dedupe(store: Filestore) -> None:
    entries = [{"time": 1.0 + i, "level": "info", "message": f"m{i}"} for i in range(1200)]
    assert store.append_logs(CLIENT, FLOW, 1, entries[:600]) > 0
    assert store.append_logs(CLIENT, FLOW, 2, entries[600:]) > 0
    assert store.append_logs(CLIENT, FLOW, 2, entries[600:]) == 0
    assert store.log_count(CLIENT, FLOW) == 1200
    assert store.read_logs(CLIENT, FLOW, offset=995, limit=10) == entries[995:1005]
    assert store.read_logs(CLIENT, FLOW, offset=1199) == entries[1199:]


@pytest.mark.parametrize(
    ("client", "flow"),
    [
        ("C.0123456789ABCDEF", FLOW),  # client ids are lower-case hex
        ("C.0123", FLOW),
        ("../C.0123456789abcdef", FLOW),
        (CLIENT, "F.0123456789ABCDEF/.."),
        (CLIENT, "F.01234567"),
        (CLIENT, "../../etc"),
        (CLIENT, "F.0123456789ABCDE\x00"),
    ],
)
def test_invalid_ids_are_refused(store: Filestore, client: str, flow: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        store.flow_dir(client, flow)
    with pytest.raises(ValueError, match="invalid"):
        store.append_rows(client, flow, "A", "s", 1, ["x"], [[1]])
    assert not (store.root / "clients").exists()


def test_flow_dir_layout(store: Filestore) -> None:
    assert store.flow_dir(CLIENT, FLOW) == store.root / "clients" / CLIENT / "flows" / FLOW


def test_concurrent_writers_of_the_same_batches_store_each_once(store: Filestore) -> None:
    """Several threads (as several frontends after a reconnect) send the same ordered batches;
    the per-file lock and the seq check keep exactly one copy, in order."""
    batches = [(seq, make_rows((seq - 1) * 50, 50)) for seq in range(1, 21)]
    errors: list[BaseException] = []

    def send() -> None:
        try:
            for seq, rows in batches:
                store.append_rows(CLIENT, FLOW, "A", "s", seq, COLUMNS, rows)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.read_rows(CLIENT, FLOW, "A", "s", limit=2000) == expected(0, 1000)
