"""Running artifacts: composition, preconditions, permissions, limits, offline archives."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from peregrine.artifacts.archive import read_manifest, read_rows
from peregrine.artifacts.loader import ArtifactError
from peregrine.artifacts.offline import collect
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.artifacts.runner import ArtifactRunner, SourceOutcome
from peregrine.engine import QueryError, QueryLimits

ARTIFACTS = """\
name: T.Numbers
description: Numbers from 1 to Count.
parameters:
  - {name: Count, type: int, default: 3, description: How many.}
sources:
  - query: |
      WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :Count)
      SELECT n, n * n AS square FROM c
---
name: T.Evens
description: Even numbers, from T.Numbers used as a table.
parameters:
  - {name: Count, type: int, default: 6, description: Up to.}
sources:
  - query: SELECT n FROM "T.Numbers"(:Count) WHERE n % 2 = 0
---
name: T.Skipped
description: Never runs here.
precondition: SELECT 1 FROM info() WHERE os = 'plan9'
sources:
  - query: SELECT 1 AS x
---
name: T.TwoSources
description: One source runs, one is skipped, one fails.
sources:
  - name: ok
    query: SELECT 'yes' AS answer
  - name: skipped
    precondition: SELECT 1 WHERE 0
    query: SELECT 1 AS x
  - name: broken
    query: SELECT regex_extract('text', '(unclosed') AS oops
---
name: T.Exec
description: Needs EXECVE.
required_permissions: [EXECVE]
sources:
  - query: SELECT stdout FROM execve('["echo", "hi"]')
---
name: T.Upload
description: Uploads a file.
parameters:
  - {name: Path, type: string, description: The file.}
sources:
  - query: SELECT upload(:Path) AS stored
---
name: T.Cycle.A
description: Uses B.
sources:
  - query: SELECT * FROM "T.Cycle.B"()
---
name: T.Cycle.B
description: Uses A.
sources:
  - query: SELECT * FROM "T.Cycle.A"()
"""


@pytest.fixture(scope="module")
def repo() -> ArtifactRepository:
    repo = ArtifactRepository()
    repo.load_texts([("t.yaml", ARTIFACTS)])
    assert [p for p in repo.problems if p.severity == "error"] == []
    return repo


def run(runner: ArtifactRunner, name: str, **params: object) -> list[SourceOutcome]:
    planned = runner.plan(name, params)
    outcomes = []
    for source in planned.artifact.sources:
        outcome = SourceOutcome(name, source.name)
        outcome.columns = []
        rows = list(runner.run_source(planned, source, outcome))
        outcome.warnings = [repr(rows)]  # keep rows for the assertions below
        outcomes.append(outcome)
    return outcomes


@pytest.mark.parametrize("isolated", [False, True], ids=["in-process", "worker"])
def test_artifact_used_as_a_table_with_a_bound_parameter(
    repo: ArtifactRepository, isolated: bool
) -> None:
    runner = ArtifactRunner(repo, isolated=isolated)
    [outcome] = run(runner, "T.Evens", Count=7)
    assert outcome.status == "finished"
    assert outcome.warnings == ["[(2,), (4,), (6,)]"]


def test_precondition_skips_and_failures_stay_in_their_source(repo: ArtifactRepository) -> None:
    runner = ArtifactRunner(repo, isolated=False)
    [skipped] = run(runner, "T.Skipped")
    assert skipped.status == "skipped" and "precondition" in (skipped.error or "")
    ok, source_skipped, broken = run(runner, "T.TwoSources")
    assert (ok.status, ok.rows) == ("finished", 1)
    assert source_skipped.status == "skipped"
    assert broken.status == "error" and "regex_extract" in (broken.error or "")


def test_required_permission_is_enforced_before_running(repo: ArtifactRepository) -> None:
    with pytest.raises(ArtifactError, match="needs the EXECVE permission"):
        ArtifactRunner(repo, permissions=frozenset()).plan("T.Exec", {})
    [outcome] = run(ArtifactRunner(repo, isolated=False), "T.Exec")
    assert outcome.warnings == ["[('hi\\n',)]"]


def test_bad_parameter_is_refused_before_running(repo: ArtifactRepository) -> None:
    with pytest.raises(ArtifactError, match=r"T\.Numbers: parameter Count .* expects an integer"):
        ArtifactRunner(repo).plan("T.Numbers", {"Count": "many"})
    with pytest.raises(ArtifactError, match="unknown parameter Nope"):
        ArtifactRunner(repo).plan("T.Numbers", {"Nope": 1})


def test_resource_limits_apply(repo: ArtifactRepository) -> None:
    runner = ArtifactRunner(repo, isolated=False)
    planned = runner.plan("T.Numbers", {"Count": 1000}, QueryLimits(max_rows=10))
    outcome = SourceOutcome("T.Numbers", "")
    assert len(list(runner.run_source(planned, planned.artifact.sources[0], outcome))) == 10
    assert outcome.truncated


def test_artifacts_using_each_other_is_an_error(repo: ArtifactRepository) -> None:
    [outcome] = run(ArtifactRunner(repo, isolated=False), "T.Cycle.A")
    assert outcome.status == "error" and "cycle" in (outcome.error or "")
    with pytest.raises(QueryError, match="cycle"):
        repo.tables().registry_for('SELECT * FROM "T.Cycle.A"()')


def test_offline_collection_writes_a_complete_archive(
    repo: ArtifactRepository, tmp_path: Path
) -> None:
    evidence = tmp_path / "evidence.bin"
    evidence.write_bytes(b"\x00evidence" * 1000)
    runner = ArtifactRunner(repo)
    plans = [
        runner.plan("T.Numbers", {"Count": 5}),
        runner.plan("T.Upload", {"Path": str(evidence)}),
        runner.plan("T.TwoSources", {}),
    ]
    archive = tmp_path / "out.zip"
    seen: list[str] = []
    collect(runner, plans, archive, lambda o: seen.append(o.status))
    manifest = read_manifest(archive)
    assert manifest["host"]["hostname"]
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    [numbers] = by_name["T.Numbers"]["sources"]
    assert numbers["rows"] == 5 and numbers["columns"] == ["n", "square"]
    assert read_rows(archive, "T.Numbers") == [{"n": i, "square": i * i} for i in range(1, 6)]
    with zipfile.ZipFile(archive) as z:
        content = z.read(numbers["file"])
        assert hashlib.sha256(content).hexdigest() == numbers["sha256"]
        [upload] = manifest["uploads"]
        assert upload["path"] == str(evidence)
        assert upload["sha256"] == hashlib.sha256(evidence.read_bytes()).hexdigest()
        assert z.read(f"uploads/{upload['stored']}") == evidence.read_bytes()
        assert b"T.Numbers" in z.read("log.jsonl")
    statuses = [s["status"] for s in by_name["T.TwoSources"]["sources"]]
    assert statuses == ["finished", "skipped", "error"]
    assert "running" in seen and "finished" in seen


@pytest.mark.parametrize("isolated", [True, False])
def test_every_warning_is_counted_in_the_outcome_and_the_archive(
    tmp_path: Path, isolated: bool
) -> None:
    """1,500 warnings: the outcome and the offline archive's manifest count them all, though a
    query keeps only its first 1,000 (its last warning says how many more there were)."""
    repo = ArtifactRepository()
    repo.load_texts(
        [
            (
                "noisy.yaml",
                "name: T.Noisy\ndescription: 1500 warnings.\nparameters:\n  - name: Dir\n"
                "sources:\n  - query: |\n"
                "      WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                "WHERE x < 1500)\n"
                "      SELECT count(*) AS n FROM c JOIN read_file(:Dir || substr(x, 1, 0))\n",
            )
        ]
    )
    runner = ArtifactRunner(repo, isolated=isolated)
    planned = runner.plan("T.Noisy", {"Dir": str(tmp_path)})
    outcome = SourceOutcome("T.Noisy", "")
    assert list(runner.run_source(planned, planned.artifact.sources[0], outcome)) == [(0,)]
    assert (outcome.warning_count, outcome.warnings_dropped) == (1500, 500)
    assert outcome.warnings[-1].startswith("500 more warnings were dropped")
    archive = tmp_path / "noisy.zip"
    collect(runner, [planned], archive)
    [artifact] = read_manifest(archive)["artifacts"]
    assert artifact["sources"][0]["warnings"] == 1500
