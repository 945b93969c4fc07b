"""Docs that tests keep honest: every plugin, column, argument and command is documented."""

from __future__ import annotations

from pathlib import Path

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
    _, sql = example
    try:
        result = engine.execute(sql, limits=QueryLimits(timeout=5, max_rows=1))
        result.close()
    except (QuerySyntaxError, MissingArgumentError):
        raise
    except QueryError:
        pass  # e.g. a time-out or a missing file on this machine: the SQL itself was fine


def test_every_cli_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    group = get_command(app)
    names = sorted(group.commands)  # type: ignore[attr-defined]
    for name in names:
        if name == "version":
            continue
        assert f"peregrine {name}" in readme, f"README does not mention `peregrine {name}`"
