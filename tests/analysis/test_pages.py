"""Result pages through the analysis engine: a filtered page without a sort keeps the stored
order (a collection's rows as stored; a hunt's clients' result sets in turn, each as stored), so
paging through it neither repeats nor skips a row."""

from __future__ import annotations

from pathlib import Path

from peregrine.analysis import AnalysisEngine, AnalysisLimits
from peregrine.analysis.pages import PAGE_PERMISSIONS, RowQuery, page, table_call
from peregrine.datastore import open_datastore
from peregrine.filestore import Filestore
from tests.analysis.conftest import Fleet

PSLIST = "Generic.System.Pslist"
CLIENTS = 40
ROWS = 3000


def all_pages(engine: AnalysisEngine, table: str, query: RowQuery) -> tuple[list[tuple], int]:
    seen: list[tuple] = []
    offset, total = 0, -1
    while True:
        rows, total = page(engine, table, None, query, offset, 997)
        if not rows:
            return seen, total
        seen += [(r.get("client_id"), r["pid"]) for r in rows]
        offset += len(rows)


def test_filtered_pages_without_a_sort_neither_repeat_nor_skip(tmp_path: Path) -> None:
    store = open_datastore(f"sqlite:///{tmp_path}/peregrine.db")
    try:
        fleet = Fleet(store, Filestore(tmp_path / "filestore", min_free_bytes=0))
        hunt_id = fleet.hunt(1, PSLIST)
        flows = []
        for number in range(1, CLIENTS + 1):
            client = fleet.client(number, f"host-{number}")
            flows.append((client, fleet.flow(client, number, PSLIST, hunt_id)))
            rows = [[pid, f"proc{pid % 7}"] for pid in range(1, ROWS + 1)]
            fleet.rows(client, flows[-1][1], PSLIST, ["pid", "name"], rows)
            fleet.finish(flows[-1][1])
        engine = AnalysisEngine(store, fleet.filestore, AnalysisLimits(), tmp_path)
        query = RowQuery.parse(None, "asc", ["name:!=proc0"])

        hunt = table_call("hunt", hunt_id, PSLIST, "")
        with engine.run(f"SELECT client_id, pid FROM {hunt}", PAGE_PERMISSIONS) as result:
            stored = [(r["client_id"], r["pid"]) for b in result for r in b.to_pylist()]
        assert len(stored) == CLIENTS * ROWS
        wanted = [(c, pid) for c, pid in stored if pid % 7]
        assert [pid for _, pid in wanted[:6]] == [1, 2, 3, 4, 5, 6]  # as stored, not sorted
        seen, total = all_pages(engine, hunt, query)
        assert total == len(wanted)
        assert seen == wanted

        # One collection keeps the order its rows were stored in.
        seen, total = all_pages(engine, table_call("flow", flows[0][1], PSLIST, ""), query)
        assert seen == [(None, pid) for pid in range(1, ROWS + 1) if pid % 7]
        assert total == len(seen)
    finally:
        store.close()
