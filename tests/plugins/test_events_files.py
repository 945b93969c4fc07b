"""file_changes(): real files changed under real inotify watches."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from peregrine.engine import Engine, PluginError, QueryLimits
from tests.plugins.event_queries import rows_while

SQL = "SELECT action, path, name, is_dir, size FROM file_changes(:paths, :recursive, :rescan) "


def _watch(paths: object, action: object, where: str = "1", limit: int = 1, **kw: float) -> list:
    params = {
        "paths": paths if isinstance(paths, str) else json.dumps(paths),
        "recursive": kw.get("recursive", 0),
        "rescan": kw.get("rescan", 10),
    }
    return rows_while(SQL + f"WHERE {where} LIMIT {limit}", action, params=params)  # type: ignore[arg-type]


def test_touching_a_watched_file_is_seen(tmp_path: Path) -> None:
    target = tmp_path / "watched.conf"
    target.write_text("a\n")
    rows = _watch(str(target), lambda: target.touch(), "action = 'attributes'")
    assert rows == [
        {
            "action": "attributes",
            "path": str(target),
            "name": "watched.conf",
            "is_dir": 0,
            "size": 2,
        }
    ]


def test_a_file_that_does_not_exist_yet_is_seen_appearing_and_nothing_else(
    tmp_path: Path,
) -> None:
    target = tmp_path / "ld.so.preload"

    def write() -> None:
        (tmp_path / "unrelated").write_text("x")
        target.write_text("/tmp/evil.so\n")

    rows = _watch(str(target), write, limit=2)
    assert [(r["action"], r["name"]) for r in rows] == [
        ("created", "ld.so.preload"),
        ("modified", "ld.so.preload"),
    ]


def test_recursive_watches_a_directory_made_after_the_query_started(tmp_path: Path) -> None:
    def make_then_write() -> None:
        (tmp_path / "new").mkdir()
        time.sleep(0.3)  # the watch on the new directory is added when its creation is read
        (tmp_path / "new" / "late.txt").write_text("y")

    rows = _watch(str(tmp_path), make_then_write, "name = 'late.txt'", recursive=1)
    assert rows[0]["path"] == str(tmp_path / "new" / "late.txt")


def test_a_glob_is_expanded_again_so_a_new_ssh_directory_is_watched(tmp_path: Path) -> None:
    home = tmp_path / "home" / "alice"
    home.mkdir(parents=True)
    pattern = str(tmp_path / "home" / "*" / ".ssh" / "authorized_keys")

    def add_key() -> None:
        (home / ".ssh").mkdir()
        time.sleep(0.6)  # past the rescan
        with open(home / ".ssh" / "authorized_keys", "a") as keys:
            keys.write("ssh-ed25519 AAAA attacker\n")

    rows = _watch([pattern], add_key, "action = 'written'", rescan=0.2)
    assert rows[0]["path"] == str(home / ".ssh" / "authorized_keys")
    assert rows[0]["size"] == len("ssh-ed25519 AAAA attacker\n")


def test_deletes_and_moves_are_seen(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")

    def change() -> None:
        os.rename(tmp_path / "a", tmp_path / "b")
        (tmp_path / "b").unlink()

    rows = _watch(str(tmp_path), change, limit=3)
    assert [(r["action"], r["name"], r["size"]) for r in rows] == [
        ("moved_from", "a", None),
        ("moved_to", "b", None),
        ("deleted", "b", None),
    ]


def test_it_needs_the_filesystem_read_permission() -> None:
    from peregrine.engine import PermissionDenied

    with pytest.raises(PermissionDenied, match="FILESYSTEM_READ"):
        Engine().execute("SELECT * FROM file_changes('/tmp')", permissions=frozenset())


def test_a_bad_paths_argument_says_what_it_wants() -> None:
    with pytest.raises(PluginError, match="must be an array of strings"):
        Engine().execute("SELECT * FROM file_changes('[1]')", limits=QueryLimits(timeout=2))
