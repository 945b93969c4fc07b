"""What an analysis query may not do: reach files, the network or settings, write anything, run
past its time-out or row limit, or read what its caller may not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from peregrine.analysis import (
    AnalysisEngine,
    AnalysisLimits,
    NotPermitted,
    QueryFailed,
    QueryRefused,
    QueryTimedOut,
)
from peregrine.auth.roles import ANALYZE, READ_RESULTS
from peregrine.filestore.names import result_set_name
from tests.analysis.conftest import Fleet

ANALYST = frozenset({ANALYZE, READ_RESULTS})
PSLIST = "Generic.System.Pslist"


@pytest.fixture
def datastore_url(tmp_path: Path) -> str:
    """These limits do not depend on the datastore's backend: SQLite only."""
    return f"sqlite:///{tmp_path}/peregrine.db"


def count(engine: AnalysisEngine, sql: str, limits: AnalysisLimits | None = None) -> int:
    with engine.run(sql, ANALYST, limits) as result:
        return sum(batch.num_rows for batch in result)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_json_auto('https://example.com/x.json')",
        "SELECT * FROM read_parquet('/tmp/*.parquet')",
    ],
)
def test_reading_files_is_refused(analysis: AnalysisEngine, sql: str) -> None:
    with pytest.raises(QueryRefused, match="files, network and settings are off"):
        count(analysis, sql)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("COPY (SELECT 1) TO '/tmp/peregrine-analysis-out.csv'", "only a SELECT"),
        ("CREATE TABLE t AS SELECT 1", "only a SELECT"),
        ("ATTACH '/tmp/x.duckdb'", "only a SELECT"),
        ("INSTALL httpfs", "only a SELECT"),
        ("SET enable_external_access = true", "only a SELECT"),
        ("PRAGMA version", "only a SELECT"),
        ("SELECT 1; COPY (SELECT 1) TO '/tmp/x.csv'", "only a SELECT"),
        ("SELECT 1; SELECT 2", "one SELECT statement"),
        ("SELECT * FROM query('SELECT 1')", r"query\(\) is not available"),
        ("SELECT * FROM query_table('t')", r"query_table\(\) is not available"),
        ("SELEC 1", "cannot parse"),
    ],
)
def test_anything_but_one_select_is_refused(analysis: AnalysisEngine, sql: str, why: str) -> None:
    with pytest.raises(QueryRefused, match=why):
        count(analysis, sql)
    assert not Path("/tmp/peregrine-analysis-out.csv").exists()


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM flow('F.1', 'A.B')", "not a collection id"),
        ("SELECT * FROM flow('F.0000000000000001')", "takes 2 argument"),
        ("SELECT * FROM flow('F.0000000000000001', 'A.B'::VARCHAR)", "string literals"),
        ("SELECT * FROM flow(flow_id => 'F.0000000000000001', 'A.B')", "string literals"),
        ("SELECT * FROM hunt('H.xyz', 'A.B')", "not a hunt id"),
        ("SELECT * FROM hunt('H.0000000000000001', '../../etc/passwd')", "not an artifact"),
        ("SELECT * FROM clients('x')", "takes 0 argument"),
    ],
)
def test_table_function_arguments_are_checked(analysis: AnalysisEngine, sql: str, why: str) -> None:
    with pytest.raises(QueryRefused, match=why):
        count(analysis, sql)


def test_files_of_other_collections_stay_unreachable(
    fleet: Fleet, analysis: AnalysisEngine
) -> None:
    """Only the files the query's own flow()/hunt() calls resolved are readable."""
    client = fleet.client(1, "web-1")
    mine, other = fleet.flow(client, 1, PSLIST), fleet.flow(client, 2, PSLIST)
    for flow in (mine, other):
        fleet.rows(client, flow, PSLIST, ["pid"], [[1]])
    path = fleet.filestore.flow_dir(client, other) / "results" / result_set_name(PSLIST, "")
    assert count(analysis, f"SELECT * FROM flow('{mine}', '{PSLIST}')") == 1
    with pytest.raises(QueryRefused, match="files, network and settings are off"):
        count(analysis, f"SELECT * FROM flow('{mine}', '{PSLIST}'), read_json('{path}.jsonl')")


def test_permissions_decide(fleet: Fleet, analysis: AnalysisEngine) -> None:
    with pytest.raises(NotPermitted, match="ANALYZE"):
        analysis.run("SELECT 1", frozenset({READ_RESULTS}))
    with pytest.raises(NotPermitted, match=r"clients\(\) need\(s\) the READ_RESULTS"):
        analysis.run("SELECT * FROM clients()", frozenset({ANALYZE}))
    with analysis.run("SELECT 42 AS answer", frozenset({ANALYZE})) as result:
        assert [b.to_pylist() for b in result] == [[{"answer": 42}]]


def test_time_out_interrupts_the_query(analysis: AnalysisEngine) -> None:
    limits = AnalysisLimits(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(QueryTimedOut, match=r"time-out of 0\.5 s"):
        count(analysis, "SELECT sum(hash(i)) FROM range(100000000000) t(i)", limits)
    assert time.monotonic() - started < 5


def test_row_limit_cuts_the_result_and_says_so(analysis: AnalysisEngine) -> None:
    limits = AnalysisLimits(max_rows=25_000)
    with analysis.run("SELECT i FROM range(100000) t(i)", ANALYST, limits) as result:
        got = sum(batch.num_rows for batch in result)
        assert (got, result.rows, result.truncated) == (25_000, 25_000, True)
    with analysis.run("SELECT i FROM range(25000) t(i)", ANALYST, limits) as result:
        assert sum(batch.num_rows for batch in result) == 25_000
        assert not result.truncated


def test_memory_limit_stops_a_greedy_query(analysis: AnalysisEngine) -> None:
    limits = AnalysisLimits(memory_mb=64, temp_mb=1)
    with pytest.raises(QueryFailed, match=r"more than its 64 MB of memory|Out of Memory"):
        count(analysis, "SELECT list(i) FROM range(200000000) t(i)", limits)


def test_queries_beyond_the_concurrency_limit_wait_then_give_up(
    analysis: AnalysisEngine,
) -> None:
    limits = AnalysisLimits(concurrent=2, timeout=0.3)
    engine = AnalysisEngine(analysis.datastore, analysis.result_sets.filestore, limits)
    first, second = engine.run("SELECT 1", ANALYST), engine.run("SELECT 2", ANALYST)
    with pytest.raises(QueryTimedOut, match="2 analysis queries were running"):
        engine.run("SELECT 3", ANALYST)
    first.close()
    with engine.run("SELECT 3 AS n", ANALYST) as third:
        assert [b.to_pylist() for b in third] == [[{"n": 3}]]
    second.close()
