"""`peregrine artifacts ...` as a user runs it: a real subprocess, a real archive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

GOOD = """\
name: Custom.Test.Hello
description: Says hello to a name.
parameters:
  - {name: Who, type: string, default: world, description: Whom to greet.}
sources:
  - query: SELECT 'hello ' || :Who AS greeting
"""


def peregrine(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peregrine", "artifacts", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={
            **os.environ,
            "PEREGRINE_STATE_DIR": str(cwd / "state"),
            "COLUMNS": "200",
            **(env or {}),
        },
        timeout=120,
        check=False,
    )


def test_list_search_and_show(tmp_path: Path) -> None:
    listed = peregrine("list", "--search", "authorized", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {a["name"] for a in json.loads(listed.stdout)}
    assert "Linux.Ssh.AuthorizedKeys" in names
    shown = peregrine("show", "Linux.Sys.Users", "--json", cwd=tmp_path)
    doc = json.loads(shown.stdout)
    assert doc["parameters"][0]["name"] == "UserRegex"
    missing = peregrine("show", "Linux.Sys.Userz", cwd=tmp_path)
    assert missing.returncode == 1 and "did you mean Linux.Sys.Users" in missing.stderr


def test_check_reports_file_and_line(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert peregrine("check", str(good), cwd=tmp_path).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("AS greeting", "AS greeting FROM no_such_plugin()"))
    run = peregrine("check", str(bad), cwd=tmp_path)
    assert run.returncode == 1
    assert f"{bad}:6: [Custom.Test.Hello] error: SQL: unknown table 'no_such_plugin'" in run.stdout


def test_collect_custom_artifact_from_a_directory_into_an_archive(tmp_path: Path) -> None:
    artifacts = tmp_path / "mine"
    artifacts.mkdir()
    (artifacts / "hello.yaml").write_text(GOOD)
    out = tmp_path / "c.zip"
    run = peregrine(
        "collect",
        "Custom.Test.Hello",
        "Linux.Sys.Users",
        "-p",
        "Custom.Test.Hello:Who=peregrine",
        "-p",
        "UserRegex=^root$",
        "-o",
        str(out),
        "--artifacts-dir",
        str(artifacts),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        hello = archive.read("results/Custom.Test.Hello/default.jsonl").decode()
        users = archive.read("results/Linux.Sys.Users/default.jsonl").decode()
    assert json.loads(hello) == {"greeting": "hello peregrine"}
    assert [json.loads(line)["username"] for line in users.splitlines()] == ["root"]
    assert {a["name"] for a in manifest["artifacts"]} == {"Custom.Test.Hello", "Linux.Sys.Users"}


def test_collect_refuses_bad_parameters_before_running(tmp_path: Path) -> None:
    run = peregrine("collect", "Linux.Sys.Users", "-p", "UserRegex=(", cwd=tmp_path)
    assert run.returncode == 1
    assert "not a valid regular expression" in run.stderr
    assert not list(tmp_path.glob("collection-*.zip"))
    typo = peregrine("collect", "Linux.Sys.Users", "-p", "UserRegx=x", cwd=tmp_path)
    assert typo.returncode == 1 and "no artifact being collected has a parameter" in typo.stderr
