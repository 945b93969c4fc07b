"""sqlite(): read-only queries against real SQLite files made with the stdlib sqlite3 module."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from peregrine.engine import PluginError, QueryTimeout


def _make_history(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE urls (id INTEGER PRIMARY KEY, url TEXT, visits INT, icon BLOB)")
        db.executemany(
            "INSERT INTO urls (url, visits, icon) VALUES (?, ?, ?)",
            [
                ("https://example.com/", 3, b"\x00\x01\xff"),
                ("https://evil.test/payload", 1, None),
            ],
        )
    db.close()


@pytest.fixture
def history(tmp_path: Path) -> Path:
    path = tmp_path / "History"
    _make_history(path)
    return path


def test_rows_come_back_as_json_objects(query, history):
    rows = query(
        "SELECT row_number, row FROM sqlite(?, 'SELECT url, visits, icon FROM urls ORDER BY id')",
        [str(history)],
    )
    assert [r["row_number"] for r in rows] == [1, 2]
    first = json.loads(rows[0]["row"])
    assert first == {"url": "https://example.com/", "visits": 3, "icon": "0001ff"}
    assert json.loads(rows[1]["row"])["icon"] is None


def test_json_extract_and_where_filters_work_on_the_row(query, history):
    rows = query(
        "SELECT json_extract(row, '$.url') AS url FROM sqlite(?, 'SELECT * FROM urls') "
        "WHERE json_extract(row, '$.visits') > 2",
        [str(history)],
    )
    assert rows == [{"url": "https://example.com/"}]


def test_duplicate_column_names_are_kept_apart(query, history):
    rows = query("SELECT row FROM sqlite(?, 'SELECT 1 AS a, 2 AS a')", [str(history)])
    assert json.loads(rows[0]["row"]) == {"a": 1, "a:2": 2}


def test_missing_file_is_zero_rows(query, tmp_path):
    assert query("SELECT * FROM sqlite(?, 'SELECT 1')", [str(tmp_path / "none.db")]) == []


def test_not_a_database_is_a_clear_error(query, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a database, just some text that is long enough\n" * 3)
    with pytest.raises(PluginError, match=r"sqlite\(\): .*notes.txt is not an SQLite database"):
        query("SELECT * FROM sqlite(?, 'SELECT 1')", [str(path)])


def test_bad_query_names_the_sqlite_error(query, history):
    with pytest.raises(PluginError, match="no such table: nope"):
        query("SELECT * FROM sqlite(?, 'SELECT * FROM nope')", [str(history)])


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM urls",
        "INSERT INTO urls (url) VALUES ('x')",
        "DROP TABLE urls",
        "PRAGMA user_version = 5",
        "ATTACH DATABASE '/tmp/peregrine-attack.db' AS x",
        "SELECT 1; DELETE FROM urls",
    ],
)
def test_writes_attach_and_multiple_statements_are_refused(query, history, statement):
    before = history.read_bytes()
    with pytest.raises(PluginError, match=r"sqlite\(\):"):
        query("SELECT * FROM sqlite(?, ?)", [str(history), statement])
    assert history.read_bytes() == before
    assert not Path("/tmp/peregrine-attack.db").exists()


def test_only_one_statement_runs(query, history):
    with pytest.raises(PluginError, match="must be a single SQL statement"):
        query("SELECT * FROM sqlite(?, 'SELECT 1; SELECT 2')", [str(history)])


def test_read_pragmas_are_allowed(query, history):
    rows = query("SELECT row FROM sqlite(?, 'PRAGMA table_info(urls)')", [str(history)])
    assert [json.loads(r["row"])["name"] for r in rows] == ["id", "url", "visits", "icon"]


def test_rollback_database_is_read_in_place_without_side_files(query, history):
    before = sorted(p.name for p in history.parent.iterdir())
    query("SELECT * FROM sqlite(?, 'SELECT * FROM urls')", [str(history)])
    assert sorted(p.name for p in history.parent.iterdir()) == before


def test_wal_database_held_open_shows_uncheckpointed_rows(query, tmp_path):
    path = tmp_path / "places.sqlite"
    writer = sqlite3.connect(path)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("CREATE TABLE visits (url TEXT)")
        writer.execute("INSERT INTO visits VALUES ('https://only-in-the-wal.test/')")
        writer.commit()
        # A browser keeps its database open like this: the newest rows are only in the -wal.
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 0
        files_before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        rows = query("SELECT row FROM sqlite(?, 'SELECT url FROM visits')", [str(path)])
        assert [json.loads(r["row"])["url"] for r in rows] == ["https://only-in-the-wal.test/"]
        # The evidence (database, -wal, -shm) is untouched and no file was added.
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files_before
        # The writer still works: we never held a lock on its files.
        writer.execute("INSERT INTO visits VALUES ('https://after.test/')")
        writer.commit()
    finally:
        writer.close()


def test_temporary_copy_is_removed_after_the_query(query, tmp_path):
    import tempfile

    path = tmp_path / "wal.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
    db.close()
    tmp = Path(tempfile.gettempdir())
    before = {p.name for p in tmp.glob("peregrine-sqlite-*")}
    query("SELECT * FROM sqlite(?, 'SELECT * FROM t')", [str(path)])
    assert {p.name for p in tmp.glob("peregrine-sqlite-*")} == before


def test_join_over_several_files(query, tmp_path):
    for n in range(3):
        _make_history(tmp_path / f"h{n}.db")
    rows = query(
        "WITH files(path) AS (VALUES (?), (?), (?)) "
        "SELECT f.path, json_extract(s.row, '$.url') AS url FROM files f "
        "JOIN sqlite(f.path, 'SELECT url FROM urls WHERE visits = 1') s ORDER BY f.path",
        [str(tmp_path / f"h{n}.db") for n in range(3)],
    )
    assert [r["url"] for r in rows] == ["https://evil.test/payload"] * 3


def test_a_long_query_on_the_file_stops_at_the_deadline(query, history):
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    with pytest.raises(QueryTimeout):
        query("SELECT * FROM sqlite(?, ?)", [str(history), endless], timeout=0.3)
