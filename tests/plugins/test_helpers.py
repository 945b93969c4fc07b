"""SQL helper functions and the small regex_findall() and split() tables."""

from __future__ import annotations

import json

import pytest

from peregrine.engine import MissingArgumentError, PluginError
from peregrine.plugins.text import compile_regex


def one(query, sql, params=None):
    rows = query(sql, params)
    assert len(rows) == 1
    return next(iter(rows[0].values()))


def test_regexp_operator(query):
    rows = query(
        "WITH t(s) AS (VALUES ('nc -lvp 4444'), ('ls -l'), ('NC -L 1'), (NULL)) "
        "SELECT s FROM t WHERE s REGEXP '(?i)^nc\\s+-l'"
    )
    assert rows == [{"s": "nc -lvp 4444"}, {"s": "NC -L 1"}]
    assert one(query, "SELECT regexp('b', 'abc')") == 1
    assert one(query, "SELECT 'abc' REGEXP '^b'") == 0
    assert one(query, "SELECT NULL REGEXP 'x'") is None


def test_bad_regex_names_the_pattern(query):
    with pytest.raises(PluginError, match=r"regexp\(\): bad regular expression '\[a-'"):
        query("SELECT 'x' REGEXP '[a-'")
    with pytest.raises(PluginError, match=r"regex_extract\(\): bad regular expression '\(\?P<'"):
        query("SELECT regex_extract('x', '(?P<')")


def test_regexes_are_compiled_once(query):
    compile_regex.cache_clear()
    query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) "
        "SELECT count(*) FROM n WHERE 'v' || i REGEXP 'v[0-9]+_peregrine_once|v1'"
    )
    info = compile_regex.cache_info()
    assert info.misses == 1
    assert info.hits == 49


def test_regex_extract(query):
    assert one(query, "SELECT regex_extract('listen --port=8080 x', '--port=(\\d+)')") == (
        "--port=8080"
    )
    assert one(query, "SELECT regex_extract('listen --port=8080', '--port=(\\d+)', 1)") == "8080"
    assert one(query, "SELECT regex_extract('k=v', '(?P<key>\\w)=(?P<val>\\w)', 'val')") == "v"
    assert one(query, "SELECT regex_extract('abc', 'z')") is None
    assert one(query, "SELECT regex_extract(NULL, 'z')") is None
    with pytest.raises(PluginError, match="has no group 5"):
        query("SELECT regex_extract('abc', '(b)', 5)")


def test_regex_replace(query):
    assert one(
        query, "SELECT regex_replace('a 10.0.0.1 b 10.1.2.3', '\\d+(\\.\\d+){3}', 'IP')"
    ) == ("a IP b IP")
    assert one(query, "SELECT regex_replace('john smith', '(\\w+) (\\w+)', '\\2, \\1')") == (
        "smith, john"
    )
    with pytest.raises(PluginError, match="bad replacement"):
        query("SELECT regex_replace('abc', 'b', '\\9')")


def test_regex_findall_table(query):
    rows = query("SELECT * FROM regex_findall('a=1, bb=22, c', '(\\w+)=(\\d+)')")
    assert [r["match"] for r in rows] == ["a=1", "bb=22"]
    assert json.loads(rows[1]["groups"]) == ["bb", "22"]
    assert (rows[1]["start"], rows[1]["end"]) == (5, 10)
    assert query("SELECT * FROM regex_findall('abc', 'z')") == []


def test_regex_findall_in_a_join_and_requires_its_arguments(query):
    rows = query(
        "WITH t(id, s) AS (VALUES (1, 'x 1.2.3.4 y 5.6.7.8'), (2, 'none')) "
        "SELECT t.id, r.match FROM t JOIN regex_findall(t.s, '\\d+(?:\\.\\d+){3}') r"
    )
    assert rows == [{"id": 1, "match": "1.2.3.4"}, {"id": 1, "match": "5.6.7.8"}]
    with pytest.raises(MissingArgumentError, match="pattern"):
        query("SELECT * FROM regex_findall('abc')")


def test_split_table(query):
    rows = query("SELECT value, idx FROM split('a,b,,c')")
    assert rows == [
        {"value": "a", "idx": 0},
        {"value": "b", "idx": 1},
        {"value": "", "idx": 2},
        {"value": "c", "idx": 3},
    ]
    rows = query("SELECT value FROM split('/usr/bin:/bin', ':')")
    assert [r["value"] for r in rows] == ["/usr/bin", "/bin"]
    with pytest.raises(PluginError, match="sep must not be empty"):
        query("SELECT * FROM split('abc', '')")


def test_format_time(query):
    assert one(query, "SELECT format_time(0)") == "1970-01-01T00:00:00Z"
    assert one(query, "SELECT format_time(1700000000.5)") == "2023-11-14T22:13:20Z"
    assert one(query, "SELECT format_time(86400, '%Y/%m/%d')") == "1970/01/02"
    assert one(query, "SELECT format_time(NULL)") is None
    with pytest.raises(PluginError, match="not a usable epoch time"):
        query("SELECT format_time(1e300)")


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (10 * 1024**2, "10.0 MiB"),
     (3 * 1024**4, "3.0 TiB"), (-2048, "-2.0 KiB")],
)  # fmt: skip
def test_humanize_bytes(query, n, text):
    assert one(query, "SELECT humanize_bytes(?)", [n]) == text


def test_base64_round_trip(query):
    assert one(query, "SELECT base64_encode('hello')") == "aGVsbG8="
    assert one(query, "SELECT base64_encode(x'00ff')") == "AP8="
    assert one(query, "SELECT base64_decode('AP8=')") == b"\x00\xff"
    assert one(query, "SELECT CAST(base64_decode('aGVsbG8') AS TEXT)") == "hello"  # no padding
    assert one(query, "SELECT hex(base64_decode('-_8'))") == "FBFF"  # URL-safe alphabet
    with pytest.raises(PluginError, match="not valid base64"):
        query("SELECT base64_decode('!!!')")


def test_basename_and_dirname(query):
    row = query(
        "SELECT basename('/etc/ssh/sshd_config') AS b, dirname('/etc/ssh/sshd_config') AS d, "
        "basename('C:\\Windows\\System32\\cmd.exe') AS wb, "
        "dirname('C:\\Windows\\System32\\cmd.exe') AS wd, basename('/tmp/dir/') AS slash"
    )[0]
    assert row == {
        "b": "sshd_config",
        "d": "/etc/ssh",
        "wb": "cmd.exe",
        "wd": "C:\\Windows\\System32",
        "slash": "dir",
    }


def test_env_reads_the_agent_environment(query, monkeypatch):
    monkeypatch.setenv("PEREGRINE_HELPER_TEST", "value-42")
    assert one(query, "SELECT env('PEREGRINE_HELPER_TEST')") == "value-42"
    monkeypatch.delenv("PEREGRINE_HELPER_TEST")
    assert one(query, "SELECT env('PEREGRINE_HELPER_TEST')") is None
