"""Migrations after ``RULE_SINCE`` only expand the schema, so the version still running during a
rolling upgrade keeps working against the newest one (docs/cluster.md, "Schema changes
across a rolling upgrade").

An expand migration creates tables and indexes and adds columns that are nullable or have a
server default; it never drops, renames or changes the type of anything. What it replaces is
removed by a *contract* migration in a later release, once no frontend runs the code that
used it: that migration says so with ``contracts = "<revision>"`` naming the expand
migration it follows, which must be older.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import peregrine.datastore

VERSIONS = Path(peregrine.datastore.__file__).parent / "migrations" / "versions"
#: The last migration written before the rule; the ones after it are checked.
RULE_SINCE = "0005"
#: ``op.<name>`` calls an expand migration may make.
EXPANDING = {"create_table", "create_index", "add_column", "batch_alter_table", "bulk_insert"}


def _revision(tree: ast.Module, name: str) -> str | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            value = node.value
            return value.value if isinstance(value, ast.Constant) else None
    return None


def _upgrade(tree: ast.Module) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "upgrade":
            return node
    raise AssertionError("no upgrade()")


def _column_may_be_missing(call: ast.Call) -> bool:
    """An added ``sa.Column(...)``: nullable (the default) or with a server default, so rows
    written by the older code, which does not know it, are still valid."""
    for arg in call.args:
        if isinstance(arg, ast.Call):
            keywords = {k.arg: k.value for k in arg.keywords}
            nullable = keywords.get("nullable")
            if isinstance(nullable, ast.Constant) and nullable.value is False:
                return "server_default" in keywords
    return True


def contracting_calls(source: str) -> list[str]:
    """What in a migration's ``upgrade()`` is not an expansion, one line each (empty: it
    only expands)."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(_upgrade(tree)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner, name = node.func.value, node.func.attr
        is_op = isinstance(owner, ast.Name) and owner.id in ("op", "batch")
        if not is_op:
            continue
        if name not in EXPANDING:
            found.append(f"line {node.lineno}: {owner.id}.{name}")  # type: ignore[union-attr]
        elif name == "add_column" and not _column_may_be_missing(node):
            found.append(f"line {node.lineno}: add_column NOT NULL without a server default")
    return found


def _after_rule() -> list[Path]:
    return sorted(p for p in VERSIONS.glob("*.py") if p.name.split("_")[0] > RULE_SINCE)


@pytest.mark.parametrize("path", _after_rule(), ids=lambda p: p.name)
def test_migrations_after_the_rule_only_expand(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source)
    contracts = _revision(tree, "contracts")
    if contracts is not None:
        revision = _revision(tree, "revision")
        assert revision is not None and contracts < revision, (
            f"{path.name}: contracts = {contracts!r} must name an older expand migration"
        )
        return
    assert contracting_calls(source) == [], (
        f"{path.name} changes the schema in a way the running version cannot live with; "
        "add instead (nullable columns, new tables), and remove the old in a later release "
        'with contracts = "<the expand revision>"'
    )


@pytest.mark.parametrize(
    "body",
    [
        'op.drop_column("flows", "rows")',
        'op.alter_column("flows", "rows", type_=sa.Text())',
        'op.alter_column("flows", "rows", new_column_name="row_count")',
        'op.rename_table("flows", "collections")',
        'op.drop_table("tasks")',
        'op.add_column("flows", sa.Column("x", sa.Integer(), nullable=False))',
        'with op.batch_alter_table("flows") as batch:\n        batch.drop_column("rows")',
    ],
)
def test_the_check_catches_what_the_older_version_cannot_live_with(body: str) -> None:
    source = f"def upgrade() -> None:\n    {body}\n"
    assert contracting_calls(source), body


def test_the_check_lets_expansions_through() -> None:
    source = (
        "def upgrade() -> None:\n"
        '    op.create_table("t", sa.Column("id", sa.Integer(), primary_key=True))\n'
        '    op.add_column("flows", sa.Column("a", sa.Text()))\n'
        '    op.add_column("flows", sa.Column("b", sa.Integer(), nullable=False,'
        ' server_default="0"))\n'
        '    op.create_index("ix", "flows", ["a"])\n'
    )
    assert contracting_calls(source) == []
