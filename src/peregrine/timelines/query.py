"""The SQL of a timeline: each source's rows, one per time column, as ``(ts, timestamp_desc,
source, data)`` with ``ts`` in microseconds since the epoch (UTC) and ``data`` the row as JSON;
all of them in one ``UNION ALL`` ordered by time, filtered and paged by DuckDB.

Every name and value from a definition or a filter enters the SQL quoted (``sqltext``), and the
text runs through the analysis engine like an analyst's own query: one SELECT, the caller's
permissions, the engine's limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peregrine.analysis.sqltext import artifact_source, identifier, literal

from .model import Source, TimelineError

_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1}
_TIME_TYPES = ("TIMESTAMP", "DATE")
_NUMBER_TYPES = ("INT", "DOUBLE", "FLOAT", "DECIMAL", "HUGEINT", "REAL")


@dataclass(frozen=True, slots=True)
class Filters:
    """What a page or an export shows: a time range (epoch seconds), text in the row, sources."""

    start: float | None = None
    end: float | None = None
    text: str = ""
    sources: list[str] = field(default_factory=list)


def table(source: Source) -> str:
    """The table function call that reads ``source``."""
    if source.kind == "events":
        options = [f"client => {literal(source.id)}"] if source.id else []
        if source.since is not None:
            options.append(f"since => {int(source.since)}")
        if source.until is not None:
            options.append(f"until => {int(source.until)}")
        return f"events({', '.join([literal(source.artifact), *options])})"
    target = literal(artifact_source(source.artifact, source.source))
    return f"{source.kind}({literal(source.id)}, {target})"


def probe(source: Source) -> str:
    """A query for the source's columns and their types (no rows)."""
    return f"SELECT * FROM {table(source)} LIMIT 0"


def time_expression(column: str, duckdb_type: str, unit: str) -> str:
    """Microseconds since the epoch from a column of any type; NULL when it holds no time
    (numbers of 0 or less, as bodyfiles write for a time not kept)."""
    name = f"r.{identifier(column)}"
    kind = duckdb_type.upper()
    if kind.startswith(_TIME_TYPES):
        return f"epoch_us(CAST({name} AS TIMESTAMPTZ))"
    if any(word in kind for word in _NUMBER_TYPES):
        return f"CASE WHEN {name} > 0 THEN TRY_CAST({name} * {_MICROS[unit]} AS BIGINT) END"
    return f"epoch_us(TRY_CAST(CAST({name} AS VARCHAR) AS TIMESTAMPTZ))"


def source_select(source: Source, types: dict[str, str]) -> list[str]:
    """One SELECT per time column of ``source``, given its columns' types."""
    missing = [t for t in source.time if t not in types]
    if missing:
        raise TimelineError(
            f"source {source.name!r} has no column {', '.join(map(repr, missing))}; "
            f"its columns: {', '.join(types) or '(no rows yet)'}"
        )
    selects = []
    for column in source.time:
        ts = time_expression(column, types[column], source.unit)
        selects.append(
            f"SELECT {ts} AS ts, {literal(source.describe(column))} AS timestamp_desc, "
            f"{literal(source.name)} AS source, to_json(r)::VARCHAR AS data "
            f"FROM {table(source)} r"
        )
    return selects


def timeline_sql(
    selects: list[str], filters: Filters, limit: int | None = None, offset: int = 0
) -> str:
    """All sources' rows in time order, filtered; a page of them when ``limit`` is given."""
    where = ["ts IS NOT NULL"]
    if filters.start is not None:
        where.append(f"ts >= {int(filters.start * 1_000_000)}")
    if filters.end is not None:
        where.append(f"ts < {int(filters.end * 1_000_000)}")
    if filters.text:
        where.append(f"contains(lower(data), lower({literal(filters.text)}))")
    if filters.sources:
        where.append(f"source IN ({', '.join(literal(s) for s in filters.sources)})")
    union = "\nUNION ALL\n".join(selects)
    sql = (
        f"SELECT ts, timestamp_desc, source, data FROM (\n{union}\n) AS t\n"
        f"WHERE {' AND '.join(where)}\nORDER BY ts, source, timestamp_desc"
    )
    if limit is not None:
        sql += f"\nLIMIT {int(limit)} OFFSET {int(offset)}"
    return sql


def column_types(schema: Any) -> dict[str, str]:
    """Column name -> DuckDB-ish type name, from an Arrow schema."""
    return {f.name: _arrow_type(f.type) for f in schema}


def _arrow_type(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_integer(arrow_type):
        return "BIGINT"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE"
    if pa.types.is_decimal(arrow_type):
        return "DECIMAL"
    return "VARCHAR"
