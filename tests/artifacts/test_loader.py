"""Loading artifact YAML: every problem is reported with its file, line and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from peregrine.artifacts.loader import ArtifactError, parse_artifacts
from peregrine.artifacts.repository import ArtifactRepository

GOOD = """\
name: Test.Good.One
description: A good artifact.
parameters:
  - name: Pattern
    type: string
    default: /etc/hostname
    description: What to stat.
sources:
  - query: SELECT path, size FROM stat(:Pattern)
"""


def problems_of(text: str) -> list[str]:
    _, problems = parse_artifacts(text, "test.yaml")
    return [str(p) for p in problems]


def test_a_good_artifact_loads_without_problems() -> None:
    definitions, problems = parse_artifacts(GOOD, "good.yaml")
    assert problems == []
    [definition] = definitions
    artifact = definition.artifact
    assert artifact.name == "Test.Good.One"
    assert artifact.origin == "good.yaml"
    assert artifact.parameters[0].default == "/etc/hostname"
    assert definition.line("sources", 0, "query") == 9


def test_yaml_syntax_error_has_a_line() -> None:
    [problem] = problems_of("name: X.Y\nsources:\n  - query: [unclosed\n")
    assert problem.startswith("test.yaml:")
    assert "YAML syntax" in problem


def test_unknown_field_is_named_with_its_line() -> None:
    text = GOOD.replace("description: A good artifact.", "descripton: typo")
    [problem] = problems_of(text)
    assert problem.startswith("test.yaml:")
    assert "unknown field `descripton`" in problem


def test_wrong_type_points_at_the_value() -> None:
    text = GOOD + "resources:\n  timeout: soon\n"
    [problem] = problems_of(text)
    assert problem.startswith("test.yaml:11:")
    assert "Expected `float | null`, got `str`" in problem


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("name: Test.Good.One", "name: nodots"), "must be dotted words"),
        (("type: string", "type: colour"), "unknown parameter type 'colour'"),
        (("name: Pattern", "name: 'bad name'"), "is not a word"),
    ],
)
def test_semantic_errors(change: tuple[str, str], message: str) -> None:
    [problem] = problems_of(GOOD.replace(*change))
    assert message in problem


def test_choices_parameter_needs_choices() -> None:
    [problem] = problems_of(GOOD.replace("type: string", "type: choices"))
    assert "needs a list of choices" in problem


def test_several_sources_need_names() -> None:
    text = GOOD + "  - query: SELECT 1\n"
    assert any("each needs a name" in p for p in problems_of(text))


def test_sql_is_compiled_against_plugins_with_the_line(tmp_path: Path) -> None:
    bad = GOOD.replace("FROM stat(:Pattern)", "FROM stat()").replace("Good.One", "Bad.Sql")
    bad += "---\n" + GOOD.replace("Good.One", "Bad.Param").replace(":Pattern", ":Undeclared")
    bad += "---\n" + GOOD.replace("Good.One", "Bad.Table").replace("stat(", "no_such_table(")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    repo = ArtifactRepository()
    names = [d.artifact.name for d in repo.load_file(path)]
    problems = {p.artifact: str(p) for p in repo.check(names)}
    assert problems["Test.Bad.Sql"].startswith(f"{path}:9:")
    assert "stat() needs its required argument path" in problems["Test.Bad.Sql"]
    assert "not declared: :Undeclared" in problems["Test.Bad.Param"]
    assert "unknown table 'no_such_table'" in problems["Test.Bad.Table"]


def test_a_later_definition_with_the_same_name_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("A good artifact.", "The override."))
    repo = ArtifactRepository()
    repo.load_directory(tmp_path)
    [warning] = repo.problems
    assert warning.severity == "warning"
    assert "also defined in" in warning.message and str(tmp_path / "a.yaml") in warning.message
    assert repo.get("Test.Good.One").description == "The override."


def test_unknown_artifact_suggests_names() -> None:
    repo = ArtifactRepository()
    repo.load_texts([("x.yaml", GOOD)])
    with pytest.raises(ArtifactError, match=r"did you mean Test\.Good\.One"):
        repo.get("Test.Good.Onee")
