"""kb_expand, knowledge_base, which and windows_only, on this machine's real accounts."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from peregrine.engine import Engine, QueryLimits
from peregrine.engine.errors import PluginError
from peregrine.plugins.knowledgebase import DEFAULT_GLOBSTAR_DEPTH, KbUser, expand

Query = Callable[..., list[dict[str, Any]]]


def test_users_homedir_expands_once_per_distinct_home(query: Query) -> None:
    rows = query("SELECT path, max_depth, users FROM kb_expand('%%users.homedir%%/.bash_history')")
    homes: dict[str, list[str]] = {}
    for entry in pwd.getpwall():
        if entry.pw_dir.startswith("/"):
            path = (entry.pw_dir.rstrip("/") + "/.bash_history").replace("//", "/")
            homes.setdefault(path, []).append(entry.pw_name)
    assert {r["path"]: json.loads(r["users"]) for r in rows} == homes
    root = next(r for r in rows if r["path"] == "/root/.bash_history")
    assert "root" in json.loads(root["users"])


def test_users_username_is_filled_in_per_user(query: Query) -> None:
    rows = query("SELECT path, users FROM kb_expand('/var/mail/%%users.username%%')")
    assert {"path": "/var/mail/root", "users": '["root"]'} in rows


def test_a_path_without_variables_is_itself(query: Query) -> None:
    rows = query("SELECT * FROM kb_expand('/etc/passwd')")
    assert rows == [{"path": "/etc/passwd", "max_depth": DEFAULT_GLOBSTAR_DEPTH, "users": "[]"}]


def test_globstar_depth_becomes_max_depth(query: Query) -> None:
    rows = query("SELECT path, max_depth FROM kb_expand('/var/lib/gems/**2/*.gemspec')")
    assert rows == [{"path": "/var/lib/gems/**/*.gemspec", "max_depth": 2}]
    rows = query("SELECT path, max_depth FROM kb_expand('/etc/xinetd.d/**')")
    assert rows == [{"path": "/etc/xinetd.d/**", "max_depth": DEFAULT_GLOBSTAR_DEPTH}]


def test_globstar_depth_limits_the_walk(query: Query, tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("one", "a/two", "a/b/three"):
        (tmp_path / name).write_text(name)
    rows = query(
        "SELECT g.path FROM kb_expand(:p) k JOIN glob(k.path, NULL, k.max_depth, 0, 0, 0) g",
        {"p": f"{tmp_path}/**2"},
    )
    assert sorted(r["path"] for r in rows) == [f"{tmp_path}/a/two", f"{tmp_path}/one"]


def test_windows_separator_is_turned_into_slashes(query: Query) -> None:
    rows = query("SELECT path FROM kb_expand('\\Program Files\\*\\x.dll', '\\')")
    assert rows == [{"path": "/Program Files/*/x.dll"}]


def test_windows_variable_has_no_value_here_so_nothing_and_a_warning(engine: Engine) -> None:
    result = engine.execute(
        "SELECT * FROM kb_expand('%%environ_systemroot%%\\System32\\config\\SAM', '\\')",
        limits=QueryLimits(timeout=10),
    )
    assert list(result) == []
    assert any("%%environ_systemroot%% has no value on linux" in w for w in result.warnings)


def test_windows_user_variable_has_no_value_here(engine: Engine) -> None:
    result = engine.execute("SELECT * FROM kb_expand('%%users.appdata%%\\x', '\\')")
    assert list(result) == []
    assert any("%%users.appdata%%" in w for w in result.warnings)


def test_a_relative_result_is_never_globbed_from_the_working_directory(query: Query) -> None:
    assert query("SELECT * FROM kb_expand('Windows\\System32', '\\')") == []


def test_glob_characters_in_values_match_only_themselves(query: Query, tmp_path: Path) -> None:
    home = tmp_path / "we[ir]d*home"
    home.mkdir()
    (home / ".profile").write_text("x")
    (tmp_path / "wei").mkdir()  # what '[ir]' would match if it were a pattern
    (tmp_path / "wei" / ".profile").write_text("y")
    expansions, missing = expand("%%users.homedir%%/.profile", users=[KbUser("u", str(home))])
    assert missing == []
    assert [e.users for e in expansions] == [("u",)]
    rows = query("SELECT path FROM glob(?)", [expansions[0].path])
    assert rows == [{"path": f"{home}/.profile"}]


def test_empty_pattern_is_an_error(engine: Engine) -> None:
    with pytest.raises(PluginError, match="must not be empty"):
        list(engine.execute("SELECT * FROM kb_expand('')"))


def test_knowledge_base_lists_each_users_home(query: Query) -> None:
    rows = query("SELECT name, value, username FROM knowledge_base()")
    assert {"name": "users.homedir", "value": "/root", "username": "root"} in rows
    assert {"name": "users.username", "value": "root", "username": "root"} in rows
    homes = {r["username"] for r in rows if r["name"] == "users.homedir"}
    assert homes == {e.pw_name for e in pwd.getpwall() if e.pw_dir}


def test_which_finds_programs_on_path_and_by_absolute_path(query: Query) -> None:
    rows = query("SELECT path FROM which('sh')")
    assert len(rows) == 1
    assert os.path.isabs(rows[0]["path"])
    assert os.access(rows[0]["path"], os.X_OK)
    assert query("SELECT path FROM which('/bin/sh')") == [{"path": "/bin/sh"}]


def test_which_gives_no_row_for_a_missing_program(query: Query, tmp_path: Path) -> None:
    assert query("SELECT * FROM which('peregrine-no-such-program')") == []
    assert query("SELECT * FROM which(?)", [str(tmp_path / "missing")]) == []
    (tmp_path / "plain").write_text("not executable")
    assert query("SELECT * FROM which(?)", [str(tmp_path / "plain")]) == []


def test_windows_only_says_so_on_linux(engine: Engine) -> None:
    message = r"REGISTRY_KEY sources are Windows only \(this is linux\)"
    with pytest.raises(PluginError, match=message):
        list(engine.execute("SELECT * FROM windows_only('REGISTRY_KEY', '[\"HKEY_USERS\"]')"))
