"""lines() and grep() over real files written in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peregrine.engine import PluginError, QueryTimeout


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.write_bytes(
        b"alpha one\n"
        b"Beta two\r\n"
        b"gamma caf\xc3\xa9\n"  # valid UTF-8
        b"delta \xff\xfe bad bytes\n"  # invalid UTF-8
        b"no newline at end"
    )
    return path


def test_lines_numbers_text_and_byte_offsets(query, log):
    rows = query("SELECT line_number, line, offset FROM lines(?)", [str(log)])
    assert [r["line_number"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["line"] == "alpha one"
    assert rows[1]["line"] == "Beta two"  # CRLF stripped too
    assert rows[2]["line"] == "gamma café"
    assert rows[3]["line"] == "delta \ufffd\ufffd bad bytes"
    assert rows[4]["line"] == "no newline at end"
    data = log.read_bytes()
    for row in rows:
        assert data[row["offset"] :].startswith(row["line"][:5].encode())


def test_lines_start_and_count(query, log):
    rows = query("SELECT line_number FROM lines(?, 2, 2)", [str(log)])
    assert [r["line_number"] for r in rows] == [2, 3]
    rows = query("SELECT line_number FROM lines WHERE path = ? AND start = 4", [str(log)])
    assert [r["line_number"] for r in rows] == [4, 5]


def test_lines_path_is_a_selectable_hidden_column(query, log):
    rows = query("SELECT path, line FROM lines(?) LIMIT 1", [str(log)])
    assert rows == [{"path": str(log), "line": "alpha one"}]


def test_lines_missing_file_is_zero_rows(query, tmp_path):
    assert query("SELECT * FROM lines(?)", [str(tmp_path / "nope")]) == []


def test_lines_streams_a_big_file_and_honours_the_deadline(query, tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "w") as handle:
        for n in range(200_000):
            handle.write(f"line {n}\n")
    rows = query("SELECT line FROM lines(?, 150000, 1)", [str(big)])
    assert rows == [{"line": "line 149999"}]
    with pytest.raises(QueryTimeout):
        query("SELECT count(*) FROM lines(?) a JOIN lines(?) b", [str(big), str(big)], timeout=0.3)


def test_long_lines_are_cut_into_pieces(query, tmp_path):
    from peregrine.plugins.text import MAX_LINE

    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * (MAX_LINE + 10))
    rows = query("SELECT length(line) AS n, offset FROM lines(?)", [str(path)])
    assert rows == [{"n": MAX_LINE, "offset": 0}, {"n": 10, "offset": MAX_LINE}]


def test_grep_returns_match_groups_and_offsets(query, log):
    rows = query("SELECT * FROM grep(?, '(g\\w+) (caf.)')", [str(log)])
    assert len(rows) == 1
    row = rows[0]
    assert row["line_number"] == 3
    assert row["line"] == "gamma café"
    assert row["match"] == "gamma café"
    assert json.loads(row["groups"]) == ["gamma", "café"]
    assert row["offset"] == log.read_bytes().index(b"gamma")


def test_grep_ignore_case_and_max_matches(query, log):
    assert query("SELECT line FROM grep(?, '^beta')", [str(log)]) == []
    rows = query("SELECT line FROM grep(?, '^beta', 1)", [str(log)])
    assert rows == [{"line": "Beta two"}]
    rows = query("SELECT line_number FROM grep(?, 'a', 0, 2)", [str(log)])
    assert [r["line_number"] for r in rows] == [1, 2]


def test_grep_unmatched_group_is_null(query, log):
    rows = query("SELECT groups FROM grep(?, 'alpha( x)?')", [str(log)])
    assert json.loads(rows[0]["groups"]) == [None]


def test_grep_binary_file_finds_ascii_without_crashing(query, tmp_path):
    path = tmp_path / "sample.bin"
    path.write_bytes(bytes(range(256)) * 4 + b"\x00\x01SECRET_TOKEN=abc123\xff\xfe" + bytes(300))
    rows = query("SELECT match, groups FROM grep(?, 'SECRET_TOKEN=(\\w+)')", [str(path)])
    assert rows == [{"match": "SECRET_TOKEN=abc123", "groups": '["abc123"]'}]
    # A pattern spanning invalid bytes still returns printable text.
    rows = query("SELECT match FROM grep(?, 'abc123..')", [str(path)])
    assert rows == [{"match": "abc123\ufffd\ufffd"}]


def test_grep_bad_regex_names_the_error(query, log):
    with pytest.raises(PluginError, match=r"grep\(\): bad regular expression '\(unclosed'"):
        query("SELECT * FROM grep(?, '(unclosed')", [str(log)])


def test_grep_missing_file_and_directory_are_zero_rows(query, tmp_path):
    assert query("SELECT * FROM grep(?, 'x')", [str(tmp_path / "nope")]) == []
    assert query("SELECT * FROM grep(?, 'x')", [str(tmp_path)]) == []


def test_grep_composes_over_many_files_with_a_join(query, tmp_path):
    for n in range(5):
        (tmp_path / f"f{n}.conf").write_text(f"name=f{n}\npassword = hunter{n}\n")
    rows = query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 4), "
        "files(path) AS (SELECT ? || '/f' || i || '.conf' FROM n) "
        "SELECT f.path, m.groups FROM files f JOIN grep(f.path, 'password\\s*=\\s*(\\w+)') m "
        "ORDER BY f.path",
        [str(tmp_path)],
    )
    assert [json.loads(r["groups"])[0] for r in rows] == [f"hunter{n}" for n in range(5)]
    assert rows[0]["path"] == str(tmp_path / "f0.conf")


def test_grep_ignore_case_given_in_where(query, log):
    rows = query(
        "SELECT line FROM grep WHERE path = ? AND pattern = '^BETA' AND ignore_case = 1",
        [str(log)],
    )
    assert rows == [{"line": "Beta two"}]


def test_grep_composes_with_glob(query, tmp_path):
    (tmp_path / "a.conf").write_text("user=alice\npassword = s3cret\n")
    (tmp_path / "b.conf").write_text("nothing here\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.conf").write_text("password=other\n")
    rows = query(
        "SELECT g.path, m.line_number, m.groups FROM glob(?) g "
        "JOIN grep(g.path, 'password\\s*=\\s*(\\w+)') m ORDER BY g.path",
        [str(tmp_path / "**")],
    )
    assert rows == [
        {"path": str(tmp_path / "a.conf"), "line_number": 2, "groups": '["s3cret"]'},
        {"path": str(tmp_path / "sub" / "c.conf"), "line_number": 1, "groups": '["other"]'},
    ]


@pytest.fixture
def nul_lines(tmp_path: Path) -> Path:
    """Lines of a binary file with NUL bytes before, inside and after what is searched for."""
    path = tmp_path / "nul.bin"
    path.write_bytes(b"\x00\x00key=2\x00tail\nab\x00cd secret=1\n")
    return path


def test_grep_lines_with_nul_bytes_are_whole_text_to_sqlite(query, nul_lines):
    """SQLite's text functions stop at a NUL (a line starting with one looked empty): NUL
    comes back as U+FFFD, like any byte that is not text, so length(), LIKE and substr() see
    the whole line; the match and its groups likewise."""
    rows = query(
        "SELECT line, length(line) AS n, line LIKE '%tail' AS tail, match, "
        "json_extract(groups, '$[0]') AS g FROM grep(?, '(\\x00?ta)il|secret=\\d')",
        [str(nul_lines)],
    )
    assert rows == [
        {"line": "\ufffd\ufffdkey=2\ufffdtail", "n": 12, "tail": 1, "match": "\ufffdtail",
         "g": "\ufffdta"},
        {"line": "ab\ufffdcd secret=1", "n": 14, "tail": 0, "match": "secret=1", "g": None},
    ]  # fmt: skip
    rows = query("SELECT line, length(line) AS n FROM lines(?)", [str(nul_lines)])
    assert rows == [
        {"line": "\ufffd\ufffdkey=2\ufffdtail", "n": 12},
        {"line": "ab\ufffdcd secret=1", "n": 14},
    ]


def test_grep_and_lines_return_the_exact_bytes_in_a_blob_column(query, nul_lines):
    rows = query("SELECT line_bytes FROM grep(?, 'key')", [str(nul_lines)])
    assert rows == [{"line_bytes": b"\x00\x00key=2\x00tail"}]
    rows = query("SELECT line_bytes FROM lines(?)", [str(nul_lines)])
    assert [r["line_bytes"] for r in rows] == [b"\x00\x00key=2\x00tail", b"ab\x00cd secret=1"]
    assert "line_bytes" not in query("SELECT * FROM lines(?) LIMIT 1", [str(nul_lines)])[0]


@pytest.mark.timeout(30)
def test_a_fifo_is_skipped_not_waited_on(query, engine, tmp_path):
    """Opening a FIFO nobody writes blocks for good, where neither the deadline nor a cancel
    can reach: lines() and grep() skip it with a warning, and still read the files around it."""
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "notes.txt").write_text("secret=1\n")
    rows = query(
        "SELECT g.path, m.line FROM glob(?) g JOIN grep(g.path, 'secret') m",
        [str(tmp_path / "*")],
        timeout=10,
    )
    assert rows == [{"path": str(tmp_path / "notes.txt"), "line": "secret=1"}]
    result = engine.execute("SELECT * FROM lines(?)", [str(fifo)])
    assert list(result) == []
    assert result.warnings == [
        f"lines(): {fifo} is not a regular file (a FIFO, socket or device); skipped"
    ]
