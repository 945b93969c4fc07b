"""glob, stat and read_file against real files made in tmp_path."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from peregrine.engine import MissingArgumentError, PluginError, QueryContext, QueryTimeout
from peregrine.plugins import files
from peregrine.plugins.files import glob
from peregrine.plugins.glob_walk import Walker, expand_braces, group_patterns, parse_pattern

Query = Callable[..., list[dict[str, Any]]]


def paths(rows: list[dict[str, Any]], base: Path) -> list[str]:
    return [str(Path(r["path"]).relative_to(base)) for r in rows]


def make(base: Path, *names: str) -> None:
    for name in names:
        target = base / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            target.mkdir(exist_ok=True)
        else:
            target.write_bytes(name.encode())


def read_io() -> int:
    """Bytes this process has read through read(2) so far (Linux task I/O accounting)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


needs_proc_io = pytest.mark.skipif(
    not Path("/proc/self/io").exists(), reason="needs Linux task I/O accounting"
)


# --- matching ----------------------------------------------------------------------------------


def test_star_lists_one_directory_and_matches_dot_files(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "a.conf", ".hidden.conf", "b.txt", "sub/c.conf")
    rows = query("SELECT path FROM glob(?)", [f"{tmp_path}/*.conf"])
    assert paths(rows, tmp_path) == [".hidden.conf", "a.conf"]


def test_double_star_matches_any_depth_including_zero(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "x.conf", "a/x.conf", "a/b/x.conf", "a/b/c/x.conf", "a/b/c/y.txt")
    rows = query("SELECT path FROM glob(?)", [f"{tmp_path}/**/x.conf"])
    assert paths(rows, tmp_path) == ["a/b/c/x.conf", "a/b/x.conf", "a/x.conf", "x.conf"]


def test_max_depth_limits_how_deep_double_star_goes(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "1/2/3/4/f")
    sql = "SELECT path FROM glob(?, NULL, ?)"
    assert paths(query(sql, [f"{tmp_path}/**", 1]), tmp_path) == ["1"]
    assert paths(query(sql, [f"{tmp_path}/**", 2]), tmp_path) == ["1", "1/2"]
    assert paths(query(sql, [f"{tmp_path}/**", 0]), tmp_path) == []
    everything = paths(query(sql, [f"{tmp_path}/**", 64]), tmp_path)
    assert everything == ["1", "1/2", "1/2/3", "1/2/3/4", "1/2/3/4/f"]
    # '**/f' with max_depth 3 lets '**' match 3 directories, so f (4 deep) is out of reach.
    assert query(sql, [f"{tmp_path}/**/f", 3]) == []
    assert paths(query(sql, [f"{tmp_path}/**/f", 4]), tmp_path) == ["1/2/3/4/f"]


def test_braces_and_character_classes(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "log1", "log2", "log3", "loga", "etc/passwd", "etc/group", "etc/shadow")
    rows = query("SELECT path FROM glob(?)", [f"{tmp_path}/log[12]"])
    assert paths(rows, tmp_path) == ["log1", "log2"]
    rows = query("SELECT path FROM glob(?)", [f"{tmp_path}/log[!0-9]"])
    assert paths(rows, tmp_path) == ["loga"]
    rows = query("SELECT path FROM glob(?)", [f"{tmp_path}/{{etc/{{passwd,group}},log?}}"])
    assert paths(rows, tmp_path) == ["etc/group", "etc/passwd", "log1", "log2", "log3", "loga"]


def test_overlapping_alternatives_give_each_path_once(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "d/a", "d/b")
    rows = query("SELECT path FROM glob(?)", [f"{tmp_path}/{{d/*,d/a,d/**}}"])
    assert paths(rows, tmp_path) == ["d/a", "d/b"]


def test_expand_braces() -> None:
    assert expand_braces("a{b,c{d,e}}f") == ["abf", "acdf", "acef"]
    assert expand_braces("{x}") == ["{x}"]
    assert expand_braces("a{b,c") == ["a{b,c"]
    with pytest.raises(ValueError, match="more than"):
        expand_braces("{a,b}" * 11)


def test_json_array_of_patterns(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "a/1", "b/2", "c/3")
    patterns = f'["{tmp_path}/a/*", "{tmp_path}/c/*"]'
    assert paths(query("SELECT path FROM glob(?)", [patterns]), tmp_path) == ["a/1", "c/3"]


def test_relative_pattern_uses_root(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "sub/f.txt")
    rows = query("SELECT path FROM glob('sub/*.txt', ?)", [str(tmp_path)])
    assert [r["path"] for r in rows] == [f"{tmp_path}/sub/f.txt"]


def test_literal_pattern_names_one_path(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "f")
    assert paths(query("SELECT path FROM glob(?)", [f"{tmp_path}/f"]), tmp_path) == ["f"]
    assert query("SELECT path FROM glob(?)", [f"{tmp_path}/missing"]) == []


def test_include_dirs_0_leaves_directories_out(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "d/", "f")
    rows = query("SELECT path FROM glob(?) WHERE include_dirs = 0", [f"{tmp_path}/*"])
    assert paths(rows, tmp_path) == ["f"]


def test_walk_lists_only_directories_the_pattern_can_match(tmp_path: Path) -> None:
    make(tmp_path, "home/alice/.ssh/authorized_keys", "home/bob/notes", "noise/1", "noise/2")
    for n in range(50):
        make(tmp_path, f"home/alice/junk{n}")
    base, segments = parse_pattern(f"{tmp_path}/home/*/.ssh/authorized_keys", None)
    assert base == f"{tmp_path}/home"
    walker = Walker(QueryContext(), base, [segments], 64, False, False)
    assert [row[0] for rows in walker.walk() for row in rows] == [
        f"{tmp_path}/home/alice/.ssh/authorized_keys"
    ]
    # Only /home was listed (2 entries); .ssh and authorized_keys were looked up by name.
    assert walker.seen == 2


def test_nested_bases_are_merged_into_one_walk() -> None:
    groups = group_patterns([parse_pattern("/etc/ssh/*", None), parse_pattern("/etc/*", None)])
    assert [base for base, _ in groups] == ["/etc"]


# --- symlinks and filesystems ------------------------------------------------------------------


def test_double_star_does_not_follow_symlinked_dirs_by_default(
    query: Query, tmp_path: Path
) -> None:
    make(tmp_path, "real/inside")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "link").symlink_to(tmp_path / "real")
    rows = query("SELECT path, type, is_link FROM glob(?)", [f"{tmp_path}/tree/**"])
    assert [(r["path"], r["type"], r["is_link"]) for r in rows] == [
        (f"{tmp_path}/tree/link", "link", 1)
    ]
    followed = query("SELECT path FROM glob(?, NULL, 64, 1)", [f"{tmp_path}/tree/**"])
    assert paths(followed, tmp_path) == ["tree/link", "tree/link/inside"]
    # An explicit component resolves through the link, as in a shell.
    explicit = query("SELECT path FROM glob(?)", [f"{tmp_path}/tree/*/inside"])
    assert paths(explicit, tmp_path) == ["tree/link/inside"]


@pytest.mark.timeout(20)
def test_symlink_loop_with_follow_symlinks_terminates(engine: Any, tmp_path: Path) -> None:
    make(tmp_path, "a/b/f")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "self").symlink_to(".")
    result = engine.execute("SELECT path FROM glob(?, NULL, 64, 1)", [f"{tmp_path}/**"])
    found = sorted(str(Path(row[0]).relative_to(tmp_path)) for row in result)
    assert found == ["a", "a/b", "a/b/f", "a/b/up", "a/self"]
    assert sum("loops back" in w for w in result.warnings) == 2


def test_one_filesystem_does_not_cross_mount_points(query: Query) -> None:
    if os.stat("/proc").st_dev == os.stat("/").st_dev:
        pytest.skip("/proc is not a separate filesystem here")
    assert query("SELECT path FROM glob('/*/self/status')")
    assert query("SELECT path FROM glob('/*/self/status', NULL, 64, 0, 1)") == []


# --- failures while walking --------------------------------------------------------------------


def test_vanished_entries_are_skipped_with_a_warning(tmp_path: Path) -> None:
    make(tmp_path, "a/x", "b/y", "c")
    ctx = QueryContext()
    rows = glob.rows(ctx, {"pattern": f"{tmp_path}/**"})
    first = next(rows)
    assert first[0] == f"{tmp_path}/a"
    (tmp_path / "b" / "y").unlink()
    (tmp_path / "b").rmdir()  # listed already, gone before it is stat'ed or entered
    (tmp_path / "c").unlink()
    rest = [row[0] for row in rows]
    assert rest == [f"{tmp_path}/a/x"]
    assert any("vanished" in w and f"{tmp_path}/b" in w for w in ctx.warnings)
    assert any("vanished" in w and f"{tmp_path}/c" in w for w in ctx.warnings)


@pytest.mark.timeout(30)
def test_huge_walk_stops_at_the_timeout(query: Query) -> None:
    start = time.monotonic()
    with pytest.raises(QueryTimeout):
        query("SELECT count(*) FROM glob('/**')", timeout=0.2)
    assert time.monotonic() - start < 5


def test_glob_without_pattern_is_a_missing_argument(query: Query) -> None:
    with pytest.raises(MissingArgumentError, match="glob\\(\\) needs its required argument"):
        query("SELECT * FROM glob()")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM glob('/tmp/*', NULL, -1)", "max_depth must be 0 or more"),
        ("SELECT * FROM glob('[not json')", "JSON array"),
        ("SELECT * FROM glob('[1, 2]')", "array of strings"),
        ("SELECT * FROM glob('')", "must not be empty"),
        ("SELECT * FROM glob('/tmp/*', NULL, 64, 7)", "follow_symlinks must be 0 or 1"),
    ],
)
def test_bad_arguments_are_clear_errors(query: Query, sql: str, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        query(sql)


# --- how the pattern arrives -------------------------------------------------------------------


def test_pattern_given_in_where(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "f1", "f2")
    rows = query("SELECT path, pattern FROM glob WHERE pattern = ?", [f"{tmp_path}/f*"])
    assert paths(rows, tmp_path) == ["f1", "f2"]
    assert {r["pattern"] for r in rows} == {f"{tmp_path}/f*"}


def test_lateral_join_supplies_the_pattern(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "one", "two")
    rows = query("SELECT g.path FROM (SELECT ? AS d) x JOIN glob(x.d || '/*') g", [str(tmp_path)])
    assert paths(rows, tmp_path) == ["one", "two"]


# --- columns -----------------------------------------------------------------------------------


def test_stat_columns_match_os_lstat(query: Query, tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"x" * 1234)
    target.chmod(0o4751)
    os.utime(target, (1_600_000_000.25, 1_700_000_000.5))
    row = query("SELECT * FROM glob(?)", [str(target)])[0]
    st = os.lstat(target)
    assert row["path"] == str(target)
    assert (row["name"], row["dirname"]) == ("f", str(tmp_path))
    assert (row["type"], row["size"]) == ("file", 1234)
    assert (row["mode"], row["mode_string"]) == ("4751", "-rwsr-x--x")
    assert (row["uid"], row["gid"]) == (st.st_uid, st.st_gid)
    assert row["owner"] == pwd.getpwuid(st.st_uid).pw_name
    assert row["group_name"] == grp.getgrgid(st.st_gid).gr_name
    assert (row["inode"], row["device"], row["nlink"]) == (st.st_ino, st.st_dev, st.st_nlink)
    assert (row["atime"], row["mtime"]) == (1_600_000_000.25, 1_700_000_000.5)
    assert row["ctime"] == st.st_ctime
    assert row["btime"] is None or abs(row["btime"] - time.time()) < 600
    assert (row["is_link"], row["link_target"]) == (0, None)


def test_owner_of_an_unnamed_uid_is_null(query: Query, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    target = tmp_path / "f"
    target.touch()
    uid = 54321
    while True:
        try:
            pwd.getpwuid(uid)
            uid += 1
        except KeyError:
            break
    os.chown(target, uid, uid)
    row = query("SELECT uid, owner FROM glob(?)", [str(target)])[0]
    assert (row["uid"], row["owner"]) == (uid, None)


def test_entry_types(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "file", "dir/")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to("file")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
        rows = query("SELECT name, type, link_target FROM glob(?)", [f"{tmp_path}/*"])
    finally:
        sock.close()
    assert {r["name"]: (r["type"], r["link_target"]) for r in rows} == {
        "dir": ("dir", None),
        "fifo": ("fifo", None),
        "file": ("file", None),
        "link": ("link", "file"),
        "sock": ("socket", None),
    }
    char = query("SELECT type FROM glob('/dev/null')")
    assert char == [{"type": "char"}]


# --- hash columns ------------------------------------------------------------------------------


def test_hash_columns_equal_hashlib(query: Query, tmp_path: Path) -> None:
    sizes = [0, 1, (1 << 20) - 1, 1 << 20, (3 << 20) + 5]
    for n, size in enumerate(sizes):
        (tmp_path / f"f{n}").write_bytes(os.urandom(size))
    rows = query("SELECT path, md5, sha1, sha256 FROM glob(?)", [f"{tmp_path}/f*"])
    assert len(rows) == len(sizes)
    for row in rows:
        data = Path(row["path"]).read_bytes()
        assert row["md5"] == hashlib.md5(data).hexdigest()
        assert row["sha1"] == hashlib.sha1(data).hexdigest()
        assert row["sha256"] == hashlib.sha256(data).hexdigest()


def test_hash_of_link_is_its_targets_and_others_are_null(query: Query, tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"content")
    (tmp_path / "link").symlink_to("file")
    (tmp_path / "dangling").symlink_to("nowhere")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    rows = query("SELECT name, sha256 FROM glob(?)", [f"{tmp_path}/*"])
    expected = hashlib.sha256(b"content").hexdigest()
    assert {r["name"]: r["sha256"] for r in rows} == {
        "dangling": None,
        "dir": None,
        "fifo": None,
        "file": expected,
        "link": expected,
    }


def test_a_walk_reading_no_stat_column_stats_nothing(engine: Any, tmp_path: Path) -> None:
    """Files removed after their directory was listed: a statement reading only name and type
    (from readdir's d_type) still lists them, which it could not had it stat'ed each entry; one
    reading size stats each and skips the vanished ones with a warning."""

    def removed_after_the_first_row(sql: str) -> tuple[list[tuple[Any, ...]], list[str]]:
        make(tmp_path, "a", "b", "c", "d/")
        result = engine.execute(sql, [f"{tmp_path}/*"])
        rows = iter(result)
        first = next(rows)
        (tmp_path / "b").unlink()
        (tmp_path / "c").unlink()
        return [first, *rows], list(result.warnings)

    rows, warnings = removed_after_the_first_row("SELECT name, type FROM glob(?)")
    assert rows == [("a", "file"), ("b", "file"), ("c", "file"), ("d", "dir")]
    assert warnings == []
    rows, warnings = removed_after_the_first_row("SELECT name, size FROM glob(?)")
    assert [row[0] for row in rows] == ["a", "d"]
    assert sum("vanished" in w for w in warnings) == 2


def tree_of_every_kind(base: Path) -> None:
    """Files, directories (nested, empty, hidden), links to a file, to a directory and to
    nowhere, and a fifo."""
    make(base, "a/x.txt", "a/b/y", "a/b/c/", "d/z", ".hidden/f", "e/", "top")
    (base / "a" / "link_file").symlink_to(base / "d" / "z")
    (base / "a" / "link_dir").symlink_to(base / "a" / "b")
    (base / "dangling").symlink_to(base / "nowhere")
    os.mkfifo(base / "a" / "fifo")


FAST_PATH_CASES = [
    ("**", "?", ""),
    ("**", "?", "WHERE type = 'file'"),
    ("**", "?", "WHERE type = 'dir'"),
    ("**", "?", "WHERE type IN ('link', 'fifo')"),
    ("**", "?", "WHERE type = 'FILE'"),
    ("**", "?, NULL, 64, 0, 0, 0", ""),  # include_dirs = 0
    ("**", "?, NULL, 64, 0, 0, 0", "WHERE type = 'dir'"),
    ("**", "?, NULL, 1", "WHERE type = 'file'"),  # max_depth
    ("**", "?, NULL, 64, 1", ""),  # follow_symlinks
    ("**", "?, NULL, 64, 0, 1", "WHERE type = 'file'"),  # one_filesystem
    ("a/**/*", "?", "WHERE type = 'file'"),  # wildcards beside '**'
    ("{a,d}/**", "?", ""),
    ("*/b/**", "?", "WHERE type = 'dir'"),
]


@pytest.mark.parametrize(("pattern", "args", "where"), FAST_PATH_CASES)
@pytest.mark.parametrize("columns", ["path, name, dirname, type", "path, type, size"])
def test_rows_of_the_fast_path_equal_the_full_rows(
    engine: Any, tmp_path: Path, pattern: str, args: str, where: str, columns: str
) -> None:
    """What a statement reading few columns gets (rows from d_type, in batches, the type
    filtered by glob) equals the same columns of the full rows (a stat per entry, every
    column made) filtered by SQLite."""
    tree_of_every_kind(tmp_path)
    params = [f"{tmp_path}/{pattern}"]
    fast = list(engine.execute(f"SELECT {columns} FROM glob({args}) {where}", params))
    # `type || ''` is an expression, so SQLite compares it itself: nothing is pushed down.
    compared_by_sqlite = where.replace("type", "type || ''")
    full = engine.execute(f"SELECT * FROM glob({args}) {compared_by_sqlite}", params)
    names = [c.name for c in full.columns]
    wanted = [names.index(c) for c in columns.split(", ")]
    general = [tuple(row[i] for i in wanted) for row in full]
    assert fast == general
    nothing_expected = "FILE" in where or ("0, 0, 0" in args and "dir" in where)
    assert bool(fast) != nothing_expected  # never an empty list compared with an empty list


def test_walk_with_entries_gone_after_their_directory_was_listed(
    engine: Any, tmp_path: Path
) -> None:
    """The rows made from d_type list what readdir saw (as find does); the walk warns about a
    listed directory gone before it could be entered. Reading a stat column skips (with a
    warning) what is gone by the time its row is made."""

    def walk(sql: str) -> tuple[list[str], list[str]]:
        make(tmp_path, "a/1", "b/2", "b/3", "c")
        result = engine.execute(sql, [f"{tmp_path}/**"])
        rows = iter(result)
        first = next(rows)
        (tmp_path / "b" / "2").unlink()
        (tmp_path / "b" / "3").unlink()
        (tmp_path / "b").rmdir()
        (tmp_path / "c").unlink()
        found = [str(Path(row[0]).relative_to(tmp_path)) for row in [first, *rows]]
        return found, list(result.warnings)

    found, warnings = walk("SELECT path, type FROM glob(?)")
    assert found == ["a", "a/1", "b", "c"]
    assert len(warnings) == 1
    assert f"{tmp_path}/b vanished" in warnings[0]
    found, warnings = walk("SELECT path FROM glob(?) WHERE type = 'file'")
    assert found == ["a/1", "c"]
    assert len(warnings) == 1
    assert f"{tmp_path}/b vanished" in warnings[0]
    found, warnings = walk("SELECT path, size FROM glob(?)")
    assert found == ["a", "a/1"]
    assert sum("vanished" in w for w in warnings) == 3  # b (its stat, its listing) and c
    assert any(f"{tmp_path}/c vanished" in w for w in warnings)


def test_sizes_read_row_by_row_belong_to_their_rows(query: Query, tmp_path: Path) -> None:
    for n in range(5):
        (tmp_path / f"f{n}").write_bytes(b"x" * n)
    rows = query("SELECT name, size FROM glob(?) WHERE type = 'file'", [f"{tmp_path}/*"])
    assert [(r["name"], r["size"]) for r in rows] == [(f"f{n}", n) for n in range(5)]


@needs_proc_io
def test_hashes_are_read_only_when_selected(engine: Any, tmp_path: Path) -> None:
    # Real I/O accounting, no spy: 4 files of 4 MiB are 16 MiB to read if hashed.
    for n in range(4):
        (tmp_path / f"big{n}").write_bytes(os.urandom(4 << 20))

    def bytes_read(sql: str) -> int:
        before = read_io()
        rows = list(engine.execute(sql, [f"{tmp_path}/big*"]))
        assert len(rows) == 4
        return read_io() - before

    assert bytes_read("SELECT path, size, mode, owner, btime FROM glob(?)") < 1 << 20
    assert bytes_read("SELECT path, sha256 FROM glob(?)") >= 16 << 20


# --- stat --------------------------------------------------------------------------------------


def test_stat_describes_one_path(query: Query, tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"hello")
    row = query("SELECT path, name, dirname, type, size, inode, sha256 FROM stat(?)", [str(target)])
    assert row == [
        {
            "path": str(target),
            "name": "f",
            "dirname": str(tmp_path),
            "type": "file",
            "size": 5,
            "inode": os.stat(target).st_ino,
            "sha256": hashlib.sha256(b"hello").hexdigest(),
        }
    ]


def test_stat_missing_path_gives_no_row(query: Query, tmp_path: Path) -> None:
    assert query("SELECT * FROM stat(?)", [str(tmp_path / "missing")]) == []
    assert query("SELECT * FROM stat(?)", [str(tmp_path / "missing" / "deeper")]) == []


def test_stat_link_itself_or_its_target(query: Query, tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"12345")
    (tmp_path / "link").symlink_to("file")
    sql = "SELECT type, size, is_link, link_target FROM stat(?, ?)"
    assert query(sql, [str(tmp_path / "link"), 0]) == [
        {"type": "link", "size": 4, "is_link": 1, "link_target": "file"}
    ]
    assert query(sql, [str(tmp_path / "link"), 1]) == [
        {"type": "file", "size": 5, "is_link": 1, "link_target": "file"}
    ]


def test_stat_joined_to_a_list_of_paths(query: Query, tmp_path: Path) -> None:
    make(tmp_path, "a", "b")
    listing = f'["{tmp_path}/a", "{tmp_path}/missing", "{tmp_path}/b"]'
    rows = query("SELECT j.value AS p, s.size FROM json_each(?) j JOIN stat(j.value) s", [listing])
    assert [(Path(r["p"]).name, r["size"]) for r in rows] == [("a", 1), ("b", 1)]


# --- read_file ---------------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    target.write_bytes(bytes(range(256)) * 40)  # 10240 bytes
    return target


def test_read_file_offset_and_length(query: Query, data_file: Path) -> None:
    content = data_file.read_bytes()
    rows = query("SELECT *, text FROM read_file(?, 100, 50)", [str(data_file)])
    assert rows == [
        {
            "data_offset": 100,
            "data_length": 50,
            "data": content[100:150],
            "text": content[100:150].decode("utf-8", "replace"),
        }
    ]
    whole = query("SELECT data FROM read_file(?)", [str(data_file)])
    assert whole == [{"data": content}]
    tail = query("SELECT data_offset, data FROM read_file(?, -10)", [str(data_file)])
    assert tail == [{"data_offset": len(content) - 10, "data": content[-10:]}]
    past_end = query("SELECT data_length FROM read_file(?, 99999)", [str(data_file)])
    assert past_end == [{"data_length": 0}]


def test_read_file_in_chunks(query: Query, data_file: Path) -> None:
    content = data_file.read_bytes()
    rows = query("SELECT data_offset, data FROM read_file(?, 0, NULL, 4096)", [str(data_file)])
    assert [r["data_offset"] for r in rows] == [0, 4096, 8192]
    assert b"".join(r["data"] for r in rows) == content
    limited = query("SELECT data FROM read_file(?, 10, 5000, 4096)", [str(data_file)])
    assert [len(r["data"]) for r in limited] == [4096, 904]
    assert b"".join(r["data"] for r in limited) == content[10:5010]


def test_read_file_text_replaces_bad_utf8(query: Query, tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.write_bytes(b"caf\xc3\xa9 \xff!")
    assert query("SELECT text FROM read_file(?)", [str(target)]) == [{"text": "café \ufffd!"}]


def test_read_file_from_proc_reads_past_short_reads(query: Query) -> None:
    rows = query("SELECT text FROM read_file('/proc/self/status')")
    assert rows[0]["text"].startswith("Name:")
    assert "VmRSS" in rows[0]["text"]


def test_read_file_missing_directory_and_limits(engine: Any, query: Query, tmp_path: Path) -> None:
    assert query("SELECT * FROM read_file(?)", [str(tmp_path / "missing")]) == []
    result = engine.execute("SELECT * FROM read_file(?)", [str(tmp_path)])
    assert list(result) == []
    assert any("is a dir" in w for w in result.warnings)
    with pytest.raises(PluginError, match="64 MiB limit"):
        query("SELECT * FROM read_file('/etc/hostname', 0, ?)", [65 << 20])
    with pytest.raises(PluginError, match="chunk_size must be 1 or more"):
        query("SELECT * FROM read_file('/etc/hostname', 0, NULL, 0)")


def test_glob_joined_to_read_file_finds_magic_bytes(query: Query, tmp_path: Path) -> None:
    (tmp_path / "prog").write_bytes(b"\x7fELF" + b"\0" * 60)
    (tmp_path / "text").write_bytes(b"hello")
    rows = query(
        "SELECT g.name FROM glob(?) g JOIN read_file(g.path, 0, 4) r "
        "WHERE g.type = 'file' AND r.data = x'7f454c46'",
        [f"{tmp_path}/*"],
    )
    assert rows == [{"name": "prog"}]


def test_stat_columns_are_shared(tmp_path: Path) -> None:
    glob_columns = [c.name for c in files.glob.columns]
    stat_columns = [c.name for c in files.stat_table.columns]
    assert glob_columns == ["path", *stat_columns]


def test_hashes_are_not_in_select_star_but_can_be_named(query: Query, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    [row] = query("SELECT * FROM glob(?)", [f"{tmp_path}/f"])
    assert "sha256" not in row and "md5" not in row
    [named] = query("SELECT *, sha256 FROM glob(?)", [f"{tmp_path}/f"])
    assert named["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_an_empty_json_list_of_patterns_finds_nothing(query: Query) -> None:
    assert query("SELECT path FROM glob('[]')") == []
