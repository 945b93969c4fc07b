"""The columns of an event artifact's rows, found by preparing its queries (nothing runs), so a
rule can be checked against them and a batch missing a column still has it (as NULL)."""

from __future__ import annotations

from collections.abc import Sequence

from peregrine.artifacts.repository import ArtifactRepository
from peregrine.engine.errors import QueryError

from .engine import ColumnsOf


def event_columns(repository: ArtifactRepository) -> ColumnsOf:
    """Columns by artifact name; None for a name that is not a CLIENT_EVENT artifact."""
    from peregrine.engine.executor import Engine

    def columns(name: str) -> Sequence[str] | None:
        artifact = repository.find(name)
        if artifact is None or artifact.type != "CLIENT_EVENT":
            return None
        tables = repository.tables()
        names: dict[str, None] = {}
        for source in artifact.sources:
            try:
                prepared = Engine(tables.registry_for(source.query)).prepare(source.query)
            except QueryError:
                continue  # the artifact's own check reports it; the rule sees fewer columns
            names.update(dict.fromkeys(column.name for column in prepared.columns))
        return tuple(names)

    return columns


def cached(columns: ColumnsOf) -> ColumnsOf:
    """``columns`` asked once per artifact name (the engine asks for every batch)."""
    known: dict[str, Sequence[str] | None] = {}

    def lookup(name: str) -> Sequence[str] | None:
        if name not in known:
            known[name] = columns(name)
        return known[name]

    return lookup
