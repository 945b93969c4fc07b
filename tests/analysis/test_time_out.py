"""The time-out holds over many small result files: the query stops near it wherever it is
(listing files, binding the scan, running, between batches), its slot is free for the next, and a
sorted page's several queries share one time-out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from peregrine.analysis import AnalysisEngine, AnalysisLimits, QueryTimedOut
from peregrine.analysis.pages import PAGE_PERMISSIONS, RowQuery, page, table_call
from peregrine.datastore import Datastore, open_datastore
from peregrine.filestore import Filestore
from tests.analysis.conftest import Fleet

PSLIST = "Generic.System.Pslist"
CLIENTS = 2_000
#: How late past its time-out a query may stop.
GRACE = 1.5

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass(frozen=True)
class Seeded:
    datastore: Datastore
    filestore: Filestore
    hunt_id: str


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A finished hunt over CLIENTS clients, a small JSONL result set each (SQLite: the
    time-out does not depend on the datastore's backend)."""
    root = tmp_path_factory.mktemp("many-files")
    store = open_datastore(f"sqlite:///{root}/peregrine.db")
    fleet = Fleet(store, Filestore(root / "filestore", min_free_bytes=0))
    hunt_id = fleet.hunt(1, PSLIST)
    for number in range(1, CLIENTS + 1):
        client = fleet.client(number, f"host-{number}")
        flow_id = fleet.flow(client, number, PSLIST, hunt_id)
        rows = [[pid, f"proc{(pid * 7 + number) % 300}"] for pid in range(1, 6)]
        fleet.rows(client, flow_id, PSLIST, ["pid", "name"], rows)
        fleet.finish(flow_id)
    yield Seeded(store, fleet.filestore, hunt_id)
    store.close()


def one_slot(seeded: Seeded, timeout: float, scratch: Path) -> AnalysisEngine:
    limits = AnalysisLimits(timeout=timeout, concurrent=1)
    engine = AnalysisEngine(seeded.datastore, seeded.filestore, limits, scratch)
    engine.copies.schedule = lambda stems: 0  # type: ignore[method-assign]  # JSONL stays
    return engine


def assert_slot_free(engine: AnalysisEngine) -> None:
    started = time.monotonic()
    with engine.run("SELECT 42 AS n", PAGE_PERMISSIONS) as result:
        assert [b.to_pylist() for b in result] == [[{"n": 42}]]
    assert time.monotonic() - started < GRACE


@pytest.mark.parametrize("timeout", [0.05, 0.25])
def test_a_query_over_many_files_stops_near_its_time_out(
    seeded: Seeded, tmp_path: Path, timeout: float
) -> None:
    sql = f"SELECT * FROM hunt('{seeded.hunt_id}', '{PSLIST}') ORDER BY name, client_id LIMIT 10"
    # The query itself works (a request may only lower the engine's time-out, so this is an
    # engine of its own with a long one).
    with one_slot(seeded, 60, tmp_path).run(sql, PAGE_PERMISSIONS) as result:
        assert sum(b.num_rows for b in result) == 10
    engine = one_slot(seeded, timeout, tmp_path)
    started = time.monotonic()
    with pytest.raises(QueryTimedOut, match=rf"time-out of {timeout:g} s.*Parquet"):
        with engine.run(sql, PAGE_PERMISSIONS) as result:
            sum(b.num_rows for b in result)
    assert time.monotonic() - started < timeout + GRACE
    assert_slot_free(engine)


def test_a_sorted_page_keeps_one_time_out(seeded: Seeded, tmp_path: Path) -> None:
    engine = one_slot(seeded, 0.3, tmp_path)
    table = table_call("hunt", seeded.hunt_id, PSLIST, "")
    started = time.monotonic()
    with pytest.raises(QueryTimedOut, match=r"time-out of 0\.3 s"):
        page(engine, table, None, RowQuery(sort="name"), 5_000, 100)
    assert time.monotonic() - started < 0.3 + GRACE
    assert_slot_free(engine)
