"""Artifacts as tables, so artifacts compose: ``SELECT * FROM "Linux.Sys.Users"()``.

Each source of an artifact becomes a table plugin named ``"Artifact.Name/source"`` (and plain
``"Artifact.Name"`` for its first source). Its arguments are the artifact's parameters, converted
and bound exactly as in a collection, and its columns are what its query returns (found by
preparing the query, never by running it). Only the artifacts a query names are turned into
tables, recursively, and a cycle is an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from peregrine.artifacts.model import Artifact, Source
from peregrine.artifacts.parameters import ParameterError, bind_values
from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PermissionDenied, PluginError, QueryError
from peregrine.engine.registry import Arg, Col, Registry, TablePlugin

if TYPE_CHECKING:
    from peregrine.engine.executor import Engine

#: A quoted identifier that looks like an artifact name: "A.B", `A.B/src`, [A.B].
_REFERENCE = re.compile(
    r'["`\[]([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)+(?:/[A-Za-z0-9_]+)?)["`\]]'
)

Lookup = Callable[[str], Artifact | None]


def table_name(artifact: Artifact, source: Source) -> str:
    return f"{artifact.name}/{source.name}" if source.name else artifact.name


def split_reference(reference: str) -> tuple[str, str | None]:
    name, _, source = reference.partition("/")
    return name, source or None


def references(sql: str) -> list[str]:
    """Artifact table names a query mentions (possibly not all real artifacts)."""
    return list(dict.fromkeys(_REFERENCE.findall(sql)))


class ArtifactTables:
    """Builds the registry a query needs: the base plugins plus the artifacts it names.

    Turning an artifact into a table prepares its query, so SQLite (the executor) is imported
    then, not with this module: a process that only ships artifacts to query workers (the
    agent) uses :func:`dependencies` and never loads it."""

    def __init__(self, lookup: Lookup, base: Registry | None = None) -> None:
        if base is None:
            from peregrine.plugin_manager import default_registry

            base = default_registry()
        self.lookup = lookup
        self.base = base
        self._tables: dict[str, TablePlugin] = {}
        self._resolving: list[str] = []

    def registry_for(self, *queries: str) -> Registry:
        """``base`` plus a table for every artifact reference in ``queries``, transitively."""
        registry = self.base.copy()
        for sql in queries:
            for reference in references(sql):
                for plugin in self._tables_for(reference):
                    if plugin.name not in registry:
                        registry.add(plugin)
        return registry

    def _tables_for(self, reference: str) -> list[TablePlugin]:
        name, source_name = split_reference(reference)
        artifact = self.lookup(name)
        if artifact is None:
            return []  # not an artifact: SQLite reports it as an unknown table if it is used
        source = artifact.source(source_name) if source_name else artifact.sources[0]
        if source is None:
            raise QueryError(
                f"artifact {name} has no source {source_name!r}; it has: "
                + ", ".join(s.name or "(unnamed)" for s in artifact.sources)
            )
        if reference in self._resolving:
            cycle = " → ".join([*self._resolving, reference])
            raise QueryError(f"artifacts use each other in a cycle: {cycle}")
        plugins = [self._table(reference, artifact, source)]
        self._resolving.append(reference)
        try:
            for dependency in references(source.query):
                plugins += self._tables_for(dependency)
        finally:
            self._resolving.pop()
        return plugins

    def _table(self, reference: str, artifact: Artifact, source: Source) -> TablePlugin:
        if reference in self._tables:
            return self._tables[reference]
        self._resolving.append(reference)
        try:
            registry = self.registry_for(
                source.query, artifact.precondition or "", source.precondition or ""
            )
        finally:
            self._resolving.pop()
        from peregrine.engine.executor import Engine

        columns = result_columns(Engine(registry), source.query)
        arguments = tuple(
            Arg(p.name, "ANY", p.description or f"{p.type} parameter", default=None)
            for p in artifact.parameters
        )
        taken = {c.name.lower() for c in columns}
        # A parameter named like a column would become a filter; keep only distinct names.
        arguments = tuple(a for a in arguments if a.name.lower() not in taken)
        plugin = TablePlugin(
            name=reference,
            description=artifact.summary or f"Rows of artifact {artifact.name}",
            columns=tuple(columns),
            func=_runner(artifact, source, registry),
            arguments=arguments,
            events=artifact.type == "CLIENT_EVENT",
        )
        self._tables[reference] = plugin
        return plugin


def result_columns(engine: Engine, sql: str) -> list[Col]:
    """The columns a query would return, found by preparing it (it is not run).
    Repeated names (``SELECT a.x, b.x``) get a suffix so each column can be addressed."""
    columns: list[Col] = []
    seen: dict[str, int] = {}
    for column in engine.prepare(sql).columns:
        count = seen.get(column.name.lower(), 0)
        seen[column.name.lower()] = count + 1
        name = column.name if count == 0 else f"{column.name}_{count + 1}"
        columns.append(Col(name, "ANY", "from the query"))
    return columns


def _runner(
    artifact: Artifact, source: Source, registry: Registry
) -> Callable[..., Iterator[tuple[Any, ...]]]:
    def run(ctx: QueryContext, **given: Any) -> Iterator[tuple[Any, ...]]:
        missing = [p for p in artifact.required_permissions if p not in ctx.permissions]
        if missing:
            raise PermissionDenied(
                f"artifact {artifact.name} needs the {', '.join(missing)} permission"
            )
        try:
            values = bind_values(
                artifact.parameters, {k: v for k, v in given.items() if v is not None}
            )
        except ParameterError as exc:
            raise PluginError(artifact.name, str(exc)) from None
        from peregrine.engine.executor import Engine

        engine = Engine(registry)
        for condition in (artifact.precondition, source.precondition):
            if condition and not any(True for _ in engine.execute(condition, ctx=ctx.child())):
                return
        yield from engine.execute(source.query, values, ctx=ctx.child())

    return run


def dependencies(lookup: Lookup, *queries: str) -> list[Artifact]:
    """Every artifact the queries use as a table, directly or through other artifacts."""
    found: dict[str, Artifact] = {}
    pending = [r for sql in queries for r in references(sql)]
    while pending:
        name, _ = split_reference(pending.pop())
        artifact = lookup(name)
        if artifact is None or name in found:
            continue
        found[name] = artifact
        pending += [r for s in artifact.sources for r in references(s.query)]
        for condition in [artifact.precondition, *(s.precondition for s in artifact.sources)]:
            pending += references(condition or "")
    return list(found.values())


def registry_for_artifacts(artifacts: Mapping[str, Artifact], *queries: str) -> Registry:
    """The registry for ``queries`` given a fixed set of artifacts (used by the query worker)."""
    return ArtifactTables(artifacts.get).registry_for(*queries)
