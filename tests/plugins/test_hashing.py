"""md5/sha1/sha256(path), hash_text and the hash table, against hashlib on real files."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from peregrine.engine import PluginError, QueryTimeout
from peregrine.plugins.hashing import CHUNK

Query = Callable[..., list[dict[str, Any]]]
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17]


def read_io() -> int:
    """Bytes this process has read through read(2) so far (Linux task I/O accounting)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.parametrize("size", SIZES)
def test_file_hash_functions_equal_hashlib(query: Query, tmp_path: Path, size: int) -> None:
    target = tmp_path / "f"
    data = os.urandom(size)
    target.write_bytes(data)
    row = query("SELECT md5(?1) AS md5, sha1(?1) AS sha1, sha256(?1) AS sha256", [str(target)])
    assert row == [
        {
            "md5": hashlib.md5(data).hexdigest(),
            "sha1": hashlib.sha1(data).hexdigest(),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    ]


def test_file_hash_follows_a_symlink(query: Query, tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"abc")
    (tmp_path / "link").symlink_to("file")
    rows = query("SELECT sha256(?) AS h", [str(tmp_path / "link")])
    assert rows == [{"h": hashlib.sha256(b"abc").hexdigest()}]


@pytest.mark.timeout(10)
def test_file_hash_is_null_for_what_is_not_a_regular_file(engine: Any, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")  # reading it would block forever
    (tmp_path / "dangling").symlink_to("nowhere")
    names = ["missing", "fifo", "dangling", "."]
    result = engine.execute(
        "SELECT sha256(?), md5(?), sha1(?), sha256(?), sha256(NULL)",
        [str(tmp_path / n) for n in names],
    )
    assert list(result) == [(None, None, None, None, None)]
    assert result.warnings == []
    assert list(engine.execute("SELECT md5('/dev/null')")) == [(None,)]


def test_unreadable_file_is_null_with_a_warning(engine: Any) -> None:
    # Write-only for everyone, root included: /proc/sys checks its mode bits even for root.
    path = "/proc/sys/vm/compact_memory"
    if not Path(path).exists():
        pytest.skip(f"{path} does not exist here")
    result = engine.execute("SELECT sha256(?)", [path])
    assert list(result) == [(None,)]
    assert result.warnings == [f"sha256(): cannot read {path}: Permission denied"]


@pytest.mark.timeout(30)
def test_hashing_a_huge_file_stops_at_the_timeout(query: Query, tmp_path: Path) -> None:
    target = tmp_path / "sparse"
    with open(target, "wb") as handle:
        handle.truncate(64 << 30)  # 64 GiB of holes: minutes to hash, no disk used
    start = time.monotonic()
    with pytest.raises(QueryTimeout):
        query("SELECT sha256(?)", [str(target)], timeout=0.3)
    assert time.monotonic() - start < 5


def test_hash_text(query: Query) -> None:
    rows = query(
        "SELECT hash_text('abc') AS a, hash_text(x'00ff', 'md5') AS b, "
        "hash_text('é', 'SHA1') AS c, hash_text(42) AS d, hash_text(NULL) AS e"
    )
    assert rows == [
        {
            "a": hashlib.sha256(b"abc").hexdigest(),
            "b": hashlib.md5(b"\x00\xff").hexdigest(),
            "c": hashlib.sha1("é".encode()).hexdigest(),
            "d": hashlib.sha256(b"42").hexdigest(),
            "e": None,
        }
    ]
    with pytest.raises(PluginError, match="unknown algorithm 'crc32'"):
        query("SELECT hash_text('x', 'crc32')")


def test_hash_table_gives_every_digest(query: Query, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 3)
    target = tmp_path / "f"
    target.write_bytes(data)
    rows = query("SELECT path, size, md5, sha1, sha256 FROM hash(?)", [str(target)])
    assert rows == [
        {
            "path": str(target),
            "size": len(data),
            "md5": hashlib.md5(data).hexdigest(),
            "sha1": hashlib.sha1(data).hexdigest(),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    ]


def test_hash_table_computes_only_the_requested_algorithms(query: Query, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    rows = query("SELECT md5, sha1, sha256 FROM hash(?, 'sha256')", [str(tmp_path / "f")])
    assert rows == [{"md5": None, "sha1": None, "sha256": hashlib.sha256(b"abc").hexdigest()}]
    with pytest.raises(PluginError, match="unknown algorithm 'sha999'"):
        query("SELECT * FROM hash(?, 'md5,sha999')", [str(tmp_path / "f")])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs task I/O accounting")
def test_hash_table_reads_the_file_once_for_all_algorithms(engine: Any, tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(os.urandom(8 << 20))
    before = read_io()
    rows = list(engine.execute("SELECT md5, sha1, sha256 FROM hash(?)", [str(target)]))
    read = read_io() - before
    assert len(rows) == 1 and all(rows[0])
    assert 8 << 20 <= read < 9 << 20
    before = read_io()
    list(engine.execute("SELECT size FROM hash(?)", [str(target)]))
    assert read_io() - before < 1 << 20  # no hash column selected: nothing read


def test_hash_table_has_no_row_for_missing_or_non_files(query: Query, tmp_path: Path) -> None:
    assert query("SELECT * FROM hash(?)", [str(tmp_path / "missing")]) == []
    assert query("SELECT * FROM hash(?)", [str(tmp_path)]) == []


def test_hash_table_joined_to_glob(query: Query, tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(name.encode())
    rows = query(
        "SELECT g.name, h.sha256 FROM glob(?) g JOIN hash(g.path, 'sha256') h", [f"{tmp_path}/*"]
    )
    assert rows == [
        {"name": "a", "sha256": hashlib.sha256(b"a").hexdigest()},
        {"name": "b", "sha256": hashlib.sha256(b"b").hexdigest()},
    ]
