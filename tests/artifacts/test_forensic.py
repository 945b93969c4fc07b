"""ForensicArtifacts: every definition of the pinned ``artifacts`` package loads, compiles, and
every Linux one collects on this machine without an error."""

from __future__ import annotations

import hashlib
import os
import pwd
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from peregrine.artifacts.composition import ArtifactTables
from peregrine.artifacts.forensic import PREFIX, catalog, forensic_artifacts, read_definitions
from peregrine.artifacts.loader import ArtifactError
from peregrine.artifacts.model import NAME_RE, semantic_errors
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.artifacts.runner import ArtifactRunner, SourceOutcome
from peregrine.engine import Engine
from peregrine.engine.context import QueryContext, QueryLimits, UploadSink
from peregrine.engine.errors import PermissionDenied, PluginError

LIMITS = QueryLimits(timeout=20)


@pytest.fixture(scope="module")
def repo() -> ArtifactRepository:
    return ArtifactRepository.default()


@pytest.fixture(scope="module")
def runner(repo: ArtifactRepository) -> ArtifactRunner:
    return ArtifactRunner(repo, isolated=False)


def collect(
    runner: ArtifactRunner,
    name: str,
    source: str,
    given: dict[str, object] | None = None,
    uploads: UploadSink | None = None,
) -> tuple[SourceOutcome, list[dict[str, object]]]:
    planned = runner.plan(name, given or {}, LIMITS)
    found = planned.artifact.source(source)
    assert found is not None, f"{name} has no source {source}"
    outcome = SourceOutcome(name, source)
    rows = list(runner.run_source(planned, found, outcome, uploads=uploads))
    return outcome, [dict(zip(outcome.columns, row, strict=True)) for row in rows]


def linux_definitions() -> list[str]:
    found, _ = read_definitions()
    return [
        PREFIX + fa.definition.name
        for fa in found
        if not fa.definition.supported_os or "Linux" in fa.definition.supported_os
    ]


# --- loading -------------------------------------------------------------------------------------


def test_every_definition_of_the_package_loads() -> None:
    _, registry = read_definitions()
    expected = sorted(PREFIX + d.name for d in registry.GetDefinitions())
    converted = forensic_artifacts()
    assert len(converted) == len(expected)
    assert sorted(a.name for a in converted) == expected
    for artifact in converted:
        assert NAME_RE.match(artifact.name), artifact.name
        assert semantic_errors(artifact) == [], artifact.name
        assert artifact.origin.startswith("forensicartifacts:")
        assert artifact.origin.endswith(".yaml")
        assert artifact.sources


def test_repository_holds_them_without_problems(repo: ArtifactRepository) -> None:
    for artifact in forensic_artifacts():
        assert artifact.name in repo
    assert [p for p in repo.problems if p.artifact and p.artifact.startswith(PREFIX)] == []


def test_no_group_names_a_missing_member() -> None:
    assert catalog().missing_members == []


def test_every_fa_source_becomes_a_peregrine_source() -> None:
    """Each non-group FA source is one source with the FA values as its parameter's default;
    each group source gives one source per source of each member."""
    found, _ = read_definitions()
    by_name = {a.name: a for a in forensic_artifacts()}
    kinds: Counter[str] = Counter()
    for fa in found:
        artifact = by_name[PREFIX + fa.definition.name]
        for index, source in enumerate(fa.definition.sources):
            kind = source.type_indicator
            kinds[kind] += 1
            if kind == "ARTIFACT_GROUP":
                for member in source.names:
                    member_sources = by_name[PREFIX + member].sources
                    assert any(
                        f'"{PREFIX}{member}/{s.name}"' in q.query
                        for q in artifact.sources
                        for s in member_sources
                    )
                continue
            name = f"{kind.lower()}_{index}"
            assert artifact.source(name) is not None, (artifact.name, name)
            if kind in ("FILE", "PATH", "DIRECTORY"):
                parameter = artifact.parameter(f"{name}_paths")
                assert parameter is not None and parameter.default == list(source.paths)
            if kind == "COMMAND":
                parameter = artifact.parameter(f"{name}_argv")
                assert parameter is not None
                assert parameter.default == [source.cmd, *source.args]
                assert "EXECVE" in artifact.required_permissions
    assert sum(kinds.values()) == sum(len(fa.definition.sources) for fa in found)


def test_every_query_compiles(repo: ArtifactRepository) -> None:
    names = [a.name for a in forensic_artifacts()]
    assert [str(p) for p in repo.check(names)] == []


def test_group_source_compiles_as_a_table_of_its_member() -> None:
    artifacts = {a.name: a for a in forensic_artifacts()}
    sql = f'SELECT path, sha256 FROM "{PREFIX}LinuxPasswdFile/file_0"()'
    prepared = Engine(ArtifactTables(artifacts.get).registry_for(sql)).prepare(sql)
    assert [c.name for c in prepared.columns] == ["path", "sha256"]


# --- collecting ----------------------------------------------------------------------------------


def test_every_linux_definition_collects_without_an_error(runner: ArtifactRunner) -> None:
    names = linux_definitions()
    assert len(names) > 200
    statuses: Counter[str] = Counter()
    errors: list[str] = []
    with_rows = 0
    started = time.monotonic()
    for name in names:
        planned = runner.plan(name, {}, LIMITS)
        rows = 0
        for source in planned.artifact.sources:
            outcome = SourceOutcome(name, source.name)
            for _ in runner.run_source(planned, source, outcome):
                pass
            statuses[outcome.status] += 1
            rows += outcome.rows
            if outcome.status == "error":
                errors.append(f"{name}/{source.name}: {outcome.error}")
        with_rows += rows > 0
    elapsed = time.monotonic() - started
    assert errors == []
    assert set(statuses) <= {"finished", "skipped"}
    assert with_rows > 0
    print(
        f"\n{len(names)} Linux definitions, {with_rows} with rows, sources {dict(statuses)}, "
        f"{elapsed:.1f} s"
    )


def test_file_source_finds_etc_passwd_with_its_sha256(runner: ArtifactRunner) -> None:
    outcome, rows = collect(runner, f"{PREFIX}LinuxPasswdFile", "file_0")
    assert outcome.status == "finished", outcome.error
    expected = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    assert [(r["path"], r["type"], r["sha256"], r["uploaded"]) for r in rows] == [
        ("/etc/passwd", "file", expected, None)
    ]


def test_file_source_uploads_when_asked(runner: ArtifactRunner, tmp_path: Path) -> None:
    outcome, rows = collect(
        runner, f"{PREFIX}LinuxPasswdFile", "file_0", {"upload": True}, UploadSink(str(tmp_path))
    )
    assert outcome.status == "finished", outcome.error
    assert len(rows) == 1
    stored = tmp_path / "files" / "etc" / "passwd"
    assert stored.read_bytes() == Path("/etc/passwd").read_bytes()
    assert '"sha256": "' + str(rows[0]["sha256"]) in str(rows[0]["uploaded"])


def test_users_homedir_expands_to_real_homes(runner: ArtifactRunner) -> None:
    """A file made in this user's home is found through %%users.homedir%%, using a real FA
    artifact's FILE source with its paths parameter set."""
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    name = f".peregrine-test-{uuid.uuid4().hex}"
    target = home / name
    target.write_text("found me\n")
    try:
        outcome, rows = collect(
            runner,
            f"{PREFIX}BashShellHistoryFile",
            "file_0",
            {"file_0_paths": [f"%%users.homedir%%/{name}", "%%users.homedir%%/.no-such-file"]},
        )
    finally:
        target.unlink()
    assert outcome.status == "finished", outcome.error
    assert [(r["path"], r["sha256"]) for r in rows] == [
        (str(target), hashlib.sha256(b"found me\n").hexdigest())
    ]


def test_fa_globstar_depth_is_honoured(runner: ArtifactRunner, tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for relative in ("one", "a/two", "a/b/three"):
        (tmp_path / relative).write_text(relative)
    outcome, rows = collect(
        runner, f"{PREFIX}LinuxPasswdFile", "file_0", {"file_0_paths": [f"{tmp_path}/**2"]}
    )
    assert outcome.status == "finished", outcome.error
    assert sorted(str(r["path"]) for r in rows) == [f"{tmp_path}/a/two", f"{tmp_path}/one"]


def test_path_source_describes_directories_too(runner: ArtifactRunner, tmp_path: Path) -> None:
    outcome, rows = collect(
        runner, f"{PREFIX}DockerRootDirectory", "path_0", {"path_0_paths": [str(tmp_path)]}
    )
    assert outcome.status == "finished", outcome.error
    assert [(r["path"], r["type"]) for r in rows] == [(str(tmp_path), "dir")]


def test_a_missing_path_is_no_rows_not_an_error(runner: ArtifactRunner, tmp_path: Path) -> None:
    outcome, rows = collect(
        runner,
        f"{PREFIX}LinuxPasswdFile",
        "file_0",
        {"file_0_paths": [f"{tmp_path}/missing/**", f"{tmp_path}/nothing"]},
    )
    assert (outcome.status, outcome.error, rows) == ("finished", None, [])


def test_windows_registry_source_is_windows_only(runner: ArtifactRunner) -> None:
    name = f"{PREFIX}WindowsRunKeys"
    planned = runner.plan(name, {}, LIMITS)
    source = planned.artifact.sources[0]
    assert source.name.startswith("registry_key_")
    # Collected normally, the Windows precondition skips it ...
    outcome = SourceOutcome(name, source.name)
    assert list(runner.run_source(planned, source, outcome)) == []
    assert outcome.status == "skipped"
    # ... and run directly, it says why it cannot work here.
    with pytest.raises(PluginError, match=r"REGISTRY_KEY sources are Windows only \(this is linux"):
        list(runner.query(planned, source.query))


def test_windows_only_source_inside_a_multi_os_artifact_is_skipped_here(
    runner: ArtifactRunner,
) -> None:
    artifact = runner.repository.get(f"{PREFIX}CrowdstrikeAgentID")
    registry = next(s for s in artifact.sources if s.name.startswith("registry_value_"))
    outcome, rows = collect(runner, artifact.name, registry.name)
    assert (outcome.status, rows) == ("skipped", [])


def test_command_source_is_refused_without_execve(repo: ArtifactRepository) -> None:
    name = f"{PREFIX}LinuxMountCmd"
    assert repo.get(name).required_permissions == ["EXECVE", "FILESYSTEM_READ"]
    limited = ArtifactRunner(repo, permissions=frozenset({"FILESYSTEM_READ"}), isolated=False)
    with pytest.raises(ArtifactError, match="EXECVE"):
        limited.plan(name, {}, LIMITS)
    sql = f'SELECT * FROM "{name}/command_0"()'
    ctx = QueryContext(limits=LIMITS, permissions=frozenset({"FILESYSTEM_READ"}))
    with pytest.raises(PermissionDenied, match="EXECVE"):
        list(Engine(repo.tables().registry_for(sql)).execute(sql, ctx=ctx))


def test_command_source_runs_with_execve(runner: ArtifactRunner) -> None:
    outcome, rows = collect(runner, f"{PREFIX}LinuxMountCmd", "command_0")
    assert outcome.status == "finished", outcome.error
    assert len(rows) == 1
    assert rows[0]["return_code"] == 0
    assert " on / " in str(rows[0]["stdout"])


def test_command_that_is_not_installed_gives_no_rows(runner: ArtifactRunner) -> None:
    outcome, rows = collect(
        runner,
        f"{PREFIX}LinuxMountCmd",
        "command_0",
        {"command_0_argv": ["/nonexistent/peregrine-tool", "-x"]},
    )
    assert (outcome.status, outcome.error, rows) == ("finished", None, [])


def test_artifact_group_collects_its_members(runner: ArtifactRunner, tmp_path: Path) -> None:
    group = f"{PREFIX}TriageSystemConfiguration"
    _, member_rows = collect(runner, f"{PREFIX}LinuxPasswdFile", "file_0")
    outcome, rows = collect(runner, group, "LinuxPasswdFile")
    assert outcome.status == "finished", outcome.error
    assert [r["sha256"] for r in rows] == [r["sha256"] for r in member_rows]
    assert [r["path"] for r in rows] == ["/etc/passwd"]
    # The group's upload parameter reaches its members.
    outcome, rows = collect(
        runner, group, "LinuxPasswdFile", {"upload": True}, UploadSink(str(tmp_path))
    )
    assert outcome.status == "finished", outcome.error
    assert (tmp_path / "files" / "etc" / "passwd").is_file()


def test_group_member_for_another_os_is_skipped(runner: ArtifactRunner) -> None:
    group = runner.repository.get(f"{PREFIX}TriageSystemConfiguration")
    windows = [s for s in group.sources if s.precondition and "'windows'" in s.precondition]
    assert windows
    outcome, rows = collect(runner, group.name, windows[0].name)
    assert (outcome.status, rows) == ("skipped", [])


def test_supported_os_is_a_precondition(runner: ArtifactRunner) -> None:
    artifact = runner.repository.get(f"{PREFIX}MacOSLoadedKexts")
    assert artifact.precondition == "SELECT 1 FROM info() WHERE os IN ('darwin')"
    outcome, rows = collect(runner, artifact.name, artifact.sources[0].name)
    assert (outcome.status, rows) == ("skipped", [])
