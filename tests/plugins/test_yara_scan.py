"""yara() and yara_process(): real rules over real files and this test process's own memory."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from peregrine.engine import MissingArgumentError, PluginError, QueryContext, QueryLimits
from peregrine.engine.worker import IsolatedQuery
from peregrine.plugins import yara_scan as yara_module

RULES = """
rule evil_marker : demo suspicious {
    meta:
        author = "peregrine tests"
        severity = 7
    strings:
        $a = "EVIL_MARKER_42"
        $b = { DE AD BE EF }
    condition:
        any of them
}
rule never_matches {
    strings:
        $x = "this string is in no test file 0x6b1d"
    condition:
        $x
}
"""


@pytest.fixture
def samples(tmp_path: Path) -> dict[str, Path]:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00" * 10 + b"EVIL_MARKER_42" + b"\x01\x02" + b"\xde\xad\xbe\xef")
    clean = tmp_path / "clean.txt"
    clean.write_text("nothing to see\n")
    return {"bad": bad, "clean": clean}


def test_file_scan_reports_rule_tags_meta_and_strings(query, samples):
    rows = query("SELECT path, * FROM yara(?, ?)", [RULES, str(samples["bad"])])
    assert len(rows) == 1
    row = rows[0]
    assert row["path"] == str(samples["bad"])
    assert row["rule"] == "evil_marker"
    assert row["namespace"] == "default"
    assert json.loads(row["tags"]) == ["demo", "suspicious"]
    assert json.loads(row["meta"]) == {"author": "peregrine tests", "severity": 7}
    strings = json.loads(row["strings"])
    assert {"identifier": "$a", "offset": 10, "data": "EVIL_MARKER_42", "length": 14} in strings
    assert {"identifier": "$b", "offset": 26, "data": "hex:deadbeef", "length": 4} in strings


def test_clean_and_missing_files_give_no_rows(query, samples, tmp_path):
    assert query("SELECT * FROM yara(?, ?)", [RULES, str(samples["clean"])]) == []
    assert query("SELECT * FROM yara(?, ?)", [RULES, str(tmp_path / "gone")]) == []


def test_max_matches_caps_the_strings_list(query, tmp_path):
    path = tmp_path / "many.txt"
    path.write_bytes(b"EVIL_MARKER_42 " * 50)
    rows = query("SELECT strings FROM yara(?, ?, 60, 3)", [RULES, str(path)])
    assert len(json.loads(rows[0]["strings"])) == 3
    rows = query("SELECT strings FROM yara(?, ?)", [RULES, str(path)])
    assert len(json.loads(rows[0]["strings"])) == 50


def test_compile_error_names_the_line(query, samples):
    rules = "rule ok { condition: true }\nrule broken {\n  condition: undefined_thing\n}\n"
    with pytest.raises(PluginError, match=r"yara\(\): the rules do not compile: line 3"):
        query("SELECT * FROM yara(?, ?)", [rules, str(samples["bad"])])


def test_rules_and_target_are_required(query):
    with pytest.raises(MissingArgumentError, match="yara\\(\\) needs its required argument path"):
        query("SELECT * FROM yara(?)", [RULES])
    with pytest.raises(MissingArgumentError, match="pid"):
        query("SELECT * FROM yara_process WHERE rules = ?", [RULES])
    with pytest.raises(MissingArgumentError, match="rules"):
        query("SELECT * FROM yara")


def test_bad_timeout_is_a_clear_error(query, samples):
    with pytest.raises(PluginError, match="timeout must be a positive number"):
        query("SELECT * FROM yara(?, ?, 0)", [RULES, str(samples["bad"])])


def test_scans_this_process_memory_for_a_unique_marker(query):
    # Built at run time so the marker is in this process's heap, and unique to this run.
    marker = "PEREGRINE_MEM_" + uuid.uuid4().hex
    rules = f'rule in_memory {{ strings: $m = "{marker}" condition: $m }}'
    rows = query("SELECT pid, * FROM yara_process(?, ?, 60, 100, 0, 1)", [rules, os.getpid()])
    assert [r["rule"] for r in rows] == ["in_memory"]
    assert rows[0]["pid"] == os.getpid()
    assert any(s["data"] == marker for s in json.loads(rows[0]["strings"]))


def test_a_process_that_does_not_exist_is_zero_rows_with_a_warning(engine):
    ctx = QueryContext(limits=QueryLimits())
    pid = 2**22 + 12345  # above Linux's pid_max, so never a live process
    result = engine.execute("SELECT * FROM yara_process(?, ?)", [RULES, pid], ctx=ctx)
    assert list(result) == []
    assert any(f"process {pid} does not exist" in w for w in ctx.warnings)


def test_join_with_positional_arguments_compiles_once(query, samples, tmp_path):
    for n in range(20):
        (tmp_path / f"copy{n}.bin").write_bytes(samples["bad"].read_bytes())
    yara_module.compile_rules.cache_clear()
    rows = query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19), "
        "files(path) AS (SELECT ? || '/copy' || i || '.bin' FROM n "
        "UNION ALL SELECT ?) "
        "SELECT f.path, y.rule FROM files f JOIN yara(?, f.path) y",
        [str(tmp_path), str(samples["clean"]), RULES],
    )
    assert len(rows) == 20
    assert {r["rule"] for r in rows} == {"evil_marker"}
    info = yara_module.compile_rules.cache_info()
    assert info.misses == 1
    assert info.hits == 20  # one lookup per file after the first


def test_join_with_constraints_on_hidden_and_filter_columns(query, samples):
    rows = query(
        "WITH files(path) AS (VALUES (?), (?)) "
        "SELECT f.path, y.rule FROM files f "
        "JOIN yara y ON y.path = f.path AND y.rules = ?",
        [str(samples["bad"]), str(samples["clean"]), RULES],
    )
    assert rows == [{"path": str(samples["bad"]), "rule": "evil_marker"}]


def test_pid_join_over_processes(query):
    marker = "PEREGRINE_JOIN_" + uuid.uuid4().hex
    rules = f'rule joined {{ strings: $m = "{marker}" condition: $m }}'
    rows = query(
        "WITH procs(pid) AS (VALUES (?)) "
        "SELECT p.pid, y.rule FROM procs p "
        "JOIN yara_process y ON y.pid = p.pid AND y.rules = ? AND y.include_self = 1",
        [os.getpid(), rules],
    )
    assert rows == [{"pid": os.getpid(), "rule": "joined"}]
    assert marker  # keep the marker alive until after the scan


def test_pid_join_to_pslist_scans_inside_the_join(query):
    marker = "PEREGRINE_PSLIST_" + uuid.uuid4().hex
    rules = f'rule from_pslist {{ strings: $m = "{marker}" condition: $m }}'
    rows = query(
        "SELECT p.pid, y.rule FROM pslist() p JOIN yara_process y "
        "ON y.pid = p.pid AND y.rules = ? AND y.include_self = 1 WHERE p.pid = ?",
        [rules, os.getpid()],
    )
    assert rows == [{"pid": os.getpid(), "rule": "from_pslist"}]


def test_a_directory_is_zero_rows_without_a_warning(engine, tmp_path):
    ctx = QueryContext(limits=QueryLimits())
    assert list(engine.execute("SELECT * FROM yara(?, ?)", [RULES, str(tmp_path)], ctx=ctx)) == []
    assert ctx.warnings == []


def test_composes_with_glob_in_both_forms(query, samples, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.bin").write_bytes(b"..EVIL_MARKER_42..")
    pattern = str(tmp_path / "**")
    positional = query(
        "SELECT g.path, y.rule FROM glob(?) g JOIN yara(?, g.path) y ORDER BY g.path",
        [pattern, RULES],
    )
    constrained = query(
        "SELECT g.path, y.rule FROM glob(?) g "
        "JOIN yara y ON y.path = g.path AND y.rules = ? ORDER BY g.path",
        [pattern, RULES],
    )
    expected = [
        {"path": str(samples["bad"]), "rule": "evil_marker"},
        {"path": str(tmp_path / "sub" / "deep.bin"), "rule": "evil_marker"},
    ]
    assert positional == expected
    assert constrained == expected


def _scanned_in_a_worker(include_self: int) -> set[int]:
    """The processes that match a rule for a marker found only in the rule itself, scanned by a
    query worker over this process (its parent, which sent the query) and its children (the
    worker itself)."""
    marker = "PEREGRINE_SELF_" + uuid.uuid4().hex
    rules = f'rule itself {{ strings: $m = "{marker}" condition: $m }}'
    query = IsolatedQuery(
        "SELECT p.pid FROM pslist() p JOIN yara_process y "
        "ON y.pid = p.pid AND y.rules = ? AND y.include_self = ? "
        "WHERE p.pid = ? OR p.ppid = ?",
        [rules, include_self, os.getpid(), os.getpid()],
    )
    return {pid for (pid,) in query}


def test_the_scanning_processes_are_left_out_unless_asked() -> None:
    """Their memory holds the rules' text: scanned, they match every rule with strings."""
    assert _scanned_in_a_worker(include_self=0) == set()
    scanned = _scanned_in_a_worker(include_self=1)
    assert os.getpid() in scanned and len(scanned) == 2  # the sender and the worker
