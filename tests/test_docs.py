"""Docs that tests keep honest: every plugin, column, argument and command is documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from peregrine.cli import app
from peregrine.cli.plugins_cmd import render_markdown
from peregrine.engine import Engine, QueryError, QueryLimits, QuerySyntaxError, TablePlugin
from peregrine.engine.errors import MissingArgumentError
from peregrine.plugin_manager import default_registry

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = list(default_registry())


def test_docs_plugins_md_is_up_to_date() -> None:
    expected = render_markdown(PLUGINS)
    actual = (ROOT / "docs" / "plugins.md").read_text()
    assert actual == expected, "docs/plugins.md is stale: run scripts/gen-docs"


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_every_plugin_documents_itself(plugin: TablePlugin) -> None:
    assert len(plugin.description) > 10, f"{plugin.name}: description"
    for arg in plugin.arguments:
        assert arg.doc, f"{plugin.name}: argument {arg.name} has no doc"
    for col in getattr(plugin, "columns", ()):
        assert col.doc, f"{plugin.name}: column {col.name} has no doc"
    assert plugin.examples, f"{plugin.name}: give at least one example query"


@pytest.mark.parametrize(
    "example",
    [(p.name, e) for p in PLUGINS for e in p.examples],
    ids=lambda pe: pe[0],
)
def test_every_example_query_compiles(example: tuple[str, str]) -> None:
    """Examples must name real plugins and supply required arguments; running them fully
    could take long (a walk of /), so only planning errors fail this test."""
    engine = Engine()
    name, sql = example
    plugin = default_registry().get(name)
    if getattr(plugin, "events", False):
        engine.prepare(sql)  # it waits for an event that may never come on this machine
        return
    try:
        result = engine.execute(sql, limits=QueryLimits(timeout=5, max_rows=1))
        result.close()
    except (QuerySyntaxError, MissingArgumentError):
        raise
    except QueryError:
        pass  # e.g. a time-out or a missing file on this machine: the SQL itself was fine


def cli_commands() -> list[str]:
    """``peregrine <command> [<sub-command>]`` of every command; a group's default command is
    its group (``peregrine flows C.…`` lists)."""
    found: list[str] = []

    def walk(command: Any, words: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            found.append(" ".join(["peregrine", *words]))
            return
        for name, sub in subcommands.items():
            default = getattr(command, "default_name", None) == name
            walk(sub, words if default else [*words, name])

    walk(get_command(app), [])
    return sorted(set(found) - {"peregrine version"})


def test_every_cli_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [c for c in cli_commands() if not re.search(rf"{re.escape(c)}(?![\w-])", readme)]
    assert "peregrine users revoke" in cli_commands()  # sub-commands are counted
    assert not missing, f"README does not mention {missing}"


# `tests/x.py`, `tests/x.py::test_y`, and `::test_z` (another test of the file named last in
# the same table row): how THREAT_MODEL.md names the test behind each claim.
_TEST_FILE = re.compile(r"^tests/[\w/.-]+\.py$")
_TEST_NAME = re.compile(r"^test_\w+$")


def threat_model_references() -> list[tuple[str, str, str | None]]:
    """(the row's threat, test file, test name or None) for every test THREAT_MODEL.md names."""
    found: list[tuple[str, str, str | None]] = []
    for line in (ROOT / "THREAT_MODEL.md").read_text().splitlines():
        if not line.startswith("| ") or line.startswith("| threat |"):
            continue
        threat, current = line.split(" | ")[0].removeprefix("| "), ""
        for ref in re.findall(r"`([^`]+)`", line):
            path, sep, name = ref.partition("::")
            if _TEST_FILE.match(path):
                current = path
                found.append((threat, path, name or None))
            elif not path and sep:
                found.append((threat, current, name))
            elif _TEST_NAME.match(ref):
                found.append((threat, "", ref))  # a bare name: which file is it in?
    return found


def test_every_test_the_threat_model_names_exists() -> None:
    problems = []
    for threat, path, name in threat_model_references():
        source = ROOT / path
        if not path:
            problems.append(f"{threat}: {name} needs its file: tests/….py::{name}")
        elif not source.is_file():
            problems.append(f"{threat}: {path} does not exist")
        elif name and f"def {name.split('::')[-1]}(" not in source.read_text():
            problems.append(f"{threat}: {path} has no test {name}")
    assert not problems, "THREAT_MODEL.md:\n" + "\n".join(problems)
