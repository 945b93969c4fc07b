"""A hunt's combined result set pages by the row counts of its flows, kept once a flow is done:
every page is the right slice, a page near the end reads no finished flow's count again, and rows
of a flow still running (or of a client added later) show on the next page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from peregrine.datastore import Datastore
from peregrine.filestore import Filestore
from peregrine.services.hunt_results import HuntResults
from tests.analysis.conftest import Fleet
from tests.datastore.conftest import datastore, datastore_url, postgres_admin

__all__ = ["datastore", "datastore_url", "postgres_admin"]

PSLIST = "Generic.System.Pslist"
#: Rows of each client's result set (0: a result set without rows).
ROWS = [3, 0, 7, 1, 12, 0, 5, 2, 9, 4]


class CountingFilestore(Filestore):
    """The real filestore, counting the result sets whose row count it was asked for."""

    counted: list[str]

    def row_count(self, client_id: str, flow_id: str, artifact: str, source: str) -> int:
        self.counted.append(flow_id)
        return super().row_count(client_id, flow_id, artifact, source)


@pytest.fixture
def fleet(datastore: Datastore, tmp_path: Path) -> Fleet:
    filestore = CountingFilestore(tmp_path / "filestore", min_free_bytes=0)
    filestore.counted = []
    return Fleet(datastore, filestore)


def add_client(fleet: Fleet, hunt_id: str, number: int, rows: int, finish: bool) -> str:
    client = fleet.client(number, f"host-{number}")
    flow_id = fleet.flow(client, number, PSLIST, hunt_id)
    if rows:
        fleet.rows(client, flow_id, PSLIST, ["n"], [[number * 100 + i] for i in range(rows)])
    if finish:
        fleet.finish(flow_id)
    return flow_id


def all_rows(fleet: Fleet, hunt_id: str) -> list[dict[str, Any]]:
    out = []
    for entry in fleet.datastore.hunts.clients(hunt_id, limit=1000):
        rows = fleet.filestore.read_rows(entry.client_id, entry.flow_id, PSLIST, "", 0, 1000)
        out += [{"client_id": entry.client_id, "hostname": entry.hostname, **r} for r in rows]
    return out


def test_every_page_is_its_slice_and_finished_counts_are_read_once(fleet: Fleet) -> None:
    hunt_id = fleet.hunt(1, PSLIST)
    flows = [add_client(fleet, hunt_id, n + 1, rows, finish=True) for n, rows in enumerate(ROWS)]
    results = HuntResults(fleet.datastore, fleet.filestore)
    expected = all_rows(fleet, hunt_id)
    assert results.count(hunt_id, PSLIST) == len(expected) == sum(ROWS)
    for limit in (1, 4, 10, 100):
        for offset in range(0, len(expected) + 2):
            page = results.page(hunt_id, PSLIST, "", offset, limit)
            assert page == expected[offset : offset + limit], (offset, limit)
    counted: list[str] = fleet.filestore.counted  # type: ignore[attr-defined]
    assert sorted(counted) == sorted(flows)  # each finished flow's count read once
    counted.clear()
    assert results.page(hunt_id, PSLIST, "", len(expected) - 2, 10) == expected[-2:]
    assert results.count(hunt_id, PSLIST) == len(expected)
    assert counted == []


def test_rows_still_coming_and_clients_added_later_show(fleet: Fleet) -> None:
    hunt_id = fleet.hunt(1, PSLIST)
    add_client(fleet, hunt_id, 1, 4, finish=True)
    running = add_client(fleet, hunt_id, 2, 2, finish=False)
    add_client(fleet, hunt_id, 3, 3, finish=True)
    results = HuntResults(fleet.datastore, fleet.filestore)
    assert results.count(hunt_id, PSLIST) == 9
    assert results.page(hunt_id, PSLIST, "", 0, 100) == all_rows(fleet, hunt_id)
    fleet.rows("C.0000000000000002", running, PSLIST, ["n"], [[299]])
    add_client(fleet, hunt_id, 4, 2, finish=True)
    expected = all_rows(fleet, hunt_id)
    assert len(expected) == 12 and results.count(hunt_id, PSLIST) == 12
    for offset in range(12):
        assert results.page(hunt_id, PSLIST, "", offset, 5) == expected[offset : offset + 5]
