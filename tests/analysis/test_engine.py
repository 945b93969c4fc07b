"""The analysis engine over real result sets: what flow(), hunt() and the datastore tables
return, and the Parquet copies that make them fast."""

from __future__ import annotations

from typing import Any

import pytest

from peregrine.analysis import AnalysisEngine, QueryRefused
from peregrine.analysis.columnar import current_copy
from peregrine.auth.roles import ANALYZE, READ_RESULTS
from peregrine.filestore.names import result_set_name
from tests.analysis.conftest import Fleet

ANALYST = frozenset({ANALYZE, READ_RESULTS})
PSLIST = "Generic.System.Pslist"
COLUMNS = ["pid", "name", "user", "blob"]


def rows_of(engine: AnalysisEngine, sql: str, **kw: Any) -> list[dict[str, Any]]:
    with engine.run(sql, ANALYST, **kw) as result:
        return [row for batch in result for row in batch.to_pylist()]


def test_flow_reads_the_rows_the_filestore_wrote(fleet: Fleet, analysis: AnalysisEngine) -> None:
    client = fleet.client(1, "web-1")
    flow = fleet.flow(client, 1, PSLIST)
    fleet.rows(client, flow, PSLIST, COLUMNS, [[1, "init", "root", b"\x00\xff"]])
    fleet.rows(client, flow, PSLIST, COLUMNS, [[2, "sshd", "root", None], [3, "bash", "eve", None]])
    got = rows_of(analysis, f"SELECT pid, name, user FROM flow('{flow}', '{PSLIST}') ORDER BY pid")
    assert got == [
        {"pid": 1, "name": "init", "user": "root"},
        {"pid": 2, "name": "sshd", "user": "root"},
        {"pid": 3, "name": "bash", "user": "eve"},
    ]
    # bytes keep the filestore's tag, so nothing is lost
    tagged = rows_of(analysis, f"SELECT blob FROM flow('{flow}', '{PSLIST}') WHERE pid = 1")
    assert tagged == [{"blob": {"$bytes": "AP8="}}]


def test_a_named_source_is_read_after_the_slash(fleet: Fleet, analysis: AnalysisEngine) -> None:
    client = fleet.client(1, "web-1")
    flow = fleet.flow(client, 1, "Linux.Sys.Users")
    fleet.rows(client, flow, "Linux.Sys.Users", ["name"], [["root"]], source="Passwd")
    fleet.rows(client, flow, "Linux.Sys.Users", ["name"], [["x"], ["y"]], source="Shadow")
    sql = f"SELECT count(*) AS n FROM flow('{flow}', 'Linux.Sys.Users/Shadow')"
    assert rows_of(analysis, sql) == [{"n": 2}]
    with pytest.raises(QueryRefused, match=r"no rows for 'Linux\.Sys\.Users'"):
        rows_of(analysis, f"SELECT * FROM flow('{flow}', 'Linux.Sys.Users')")


def test_hunt_adds_client_id_and_hostname_and_stacks(
    fleet: Fleet, analysis: AnalysisEngine
) -> None:
    hunt = fleet.hunt(1, PSLIST)
    for number, names in enumerate((["sshd", "cron"], ["sshd", "miner"], ["sshd", "cron"]), 1):
        client = fleet.client(number, f"web-{number}")
        flow = fleet.flow(client, number, PSLIST, hunt_id=hunt)
        fleet.rows(client, flow, PSLIST, ["pid", "name"], [[i, n] for i, n in enumerate(names)])
        fleet.finish(flow)
    stack = rows_of(
        analysis,
        f"SELECT name, count(*) AS n FROM hunt('{hunt}', '{PSLIST}') "
        "GROUP BY name ORDER BY n, name",
    )
    assert stack == [{"name": "miner", "n": 1}, {"name": "cron", "n": 2}, {"name": "sshd", "n": 3}]
    odd = rows_of(
        analysis,
        f"SELECT client_id, hostname FROM hunt('{hunt}', '{PSLIST}') WHERE name = 'miner'",
    )
    assert odd == [{"client_id": "C.0000000000000002", "hostname": "web-2"}]


def test_hunt_with_no_rows_counts_zero(fleet: Fleet, analysis: AnalysisEngine) -> None:
    hunt = fleet.hunt(1, PSLIST)
    assert rows_of(analysis, f"SELECT count(*) AS n FROM hunt('{hunt}', '{PSLIST}')") == [{"n": 0}]


def test_datastore_tables(fleet: Fleet, analysis: AnalysisEngine) -> None:
    """clients(), collections() and hunts() on SQLite and PostgreSQL."""
    hunt = fleet.hunt(7, PSLIST)
    web = fleet.client(1, "web-1", labels=["web"])
    fleet.client(2, "db-1")
    flow = fleet.flow(web, 1, PSLIST, hunt_id=hunt)
    fleet.finish(flow)
    clients = rows_of(analysis, "SELECT client_id, hostname, labels FROM clients() ORDER BY 1")
    assert clients == [
        {"client_id": web, "hostname": "web-1", "labels": ["web"]},
        {"client_id": "C.0000000000000002", "hostname": "db-1", "labels": []},
    ]
    joined = rows_of(
        analysis,
        "SELECT c.hostname, f.state, f.artifacts, h.description, year(f.created) AS year "
        "FROM collections() f JOIN clients() c USING (client_id) JOIN hunts() h USING (hunt_id)",
    )
    assert joined == [
        {
            "hostname": "web-1",
            "state": "Finished",
            "artifacts": [PSLIST],
            "description": "stack processes",
            "year": 2023,
        }
    ]


def test_parquet_copy_is_made_then_read_and_dropped_when_rows_arrive(
    fleet: Fleet, analysis: AnalysisEngine
) -> None:
    client = fleet.client(1, "web-1")
    flow = fleet.flow(client, 1, PSLIST)
    fleet.rows(client, flow, PSLIST, ["pid", "name"], [[i, f"p{i}"] for i in range(2500)])
    fleet.finish(flow)
    stem = fleet.filestore.flow_dir(client, flow) / "results" / result_set_name(PSLIST, "")
    length = stem.with_name(stem.name + ".jsonl").stat().st_size
    sql = f"SELECT count(*) AS n, sum(pid) AS s FROM flow('{flow}', '{PSLIST}')"
    assert current_copy(stem, length) is None
    assert rows_of(analysis, sql) == [{"n": 2500, "s": sum(range(2500))}]
    analysis.copies.wait()
    copy = current_copy(stem, length)
    assert copy is not None
    assert rows_of(analysis, sql) == [{"n": 2500, "s": sum(range(2500))}]
    # A late batch (a finished flow can still receive one): the copy no longer matches.
    fleet.rows(client, flow, PSLIST, ["pid", "name"], [[9999, "late"]])
    assert rows_of(analysis, sql) == [{"n": 2501, "s": sum(range(2500)) + 9999}]
    analysis.copies.wait()
    assert not copy.exists()
    assert rows_of(analysis, sql) == [{"n": 2501, "s": sum(range(2500)) + 9999}]


def test_a_running_flow_is_read_up_to_its_commit_record(
    fleet: Fleet, analysis: AnalysisEngine
) -> None:
    """Bytes past ``.meta``'s length (a batch being written, a torn write) are never read."""
    client = fleet.client(1, "web-1")
    flow = fleet.flow(client, 1, PSLIST)
    fleet.rows(client, flow, PSLIST, ["pid", "name"], [[1, "a"], [2, "b"]])
    stem = fleet.filestore.flow_dir(client, flow) / "results" / result_set_name(PSLIST, "")
    with open(stem.with_name(stem.name + ".jsonl"), "ab") as data:
        data.write(b'{"pid": 3, "name": "uncommitted"}\n{"pid": 4, "na')
    assert rows_of(analysis, f"SELECT pid FROM flow('{flow}', '{PSLIST}') ORDER BY 1") == [
        {"pid": 1},
        {"pid": 2},
    ]
    analysis.copies.wait()
    assert not list(stem.parent.glob("*.parquet"))  # not finished: no copy


def test_unknown_collection_and_hunt_say_where_to_look(analysis: AnalysisEngine) -> None:
    with pytest.raises(QueryRefused, match=r"no collection F\.0000000000000009.*collections\(\)"):
        rows_of(analysis, f"SELECT * FROM flow('F.0000000000000009', '{PSLIST}')")
    with pytest.raises(QueryRefused, match=r"no hunt H\.0000000000000009.*hunts\(\)"):
        rows_of(analysis, f"SELECT * FROM hunt('H.0000000000000009', '{PSLIST}')")
