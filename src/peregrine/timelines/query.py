"""The SQL of a timeline: each source's rows, one per time column, as ``(ts, timestamp_desc,
source, data_<n>)`` with ``ts`` in microseconds since the epoch (UTC) and ``data_<n>`` the row
of source ``n``; all of them in one ``UNION ALL BY NAME`` ordered by time, filtered and paged
by DuckDB.

Every name and value from a definition or a filter enters the SQL quoted (``sqltext``), and the
text runs through the analysis engine like an analyst's own query: one SELECT, the caller's
permissions, the engine's limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peregrine.analysis.sqltext import artifact_source, identifier, literal

from .model import Source

_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1}


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


def time_expression(column: str, unit: str) -> str:
    """Microseconds since the epoch from a column of any type, chosen by DuckDB per value: a
    time or ISO 8601 text as it is, a number (or numeric text) as ``unit`` since the epoch;
    NULL when it holds no time (numbers of 0 or less, as bodyfiles write for a time not
    kept). No probe of the column's type is needed first."""
    name = f"r.{identifier(column)}"
    number = f"TRY_CAST({name} AS DOUBLE)"
    return (
        f"COALESCE(epoch_us(TRY_CAST({name} AS TIMESTAMPTZ)), "
        f"CASE WHEN {number} > 0 THEN TRY_CAST({number} * {_MICROS[unit]} AS BIGINT) END)"
    )


def source_select(source: Source, index: int, text: str = "") -> list[str]:
    """One SELECT per time column of ``source``: its row as the struct ``data_<index>`` (made
    into JSON only for the rows of the page), only rows holding ``text`` if given."""
    where = f" WHERE contains(lower(to_json(r)::VARCHAR), lower({literal(text)}))" if text else ""
    return [
        f"SELECT {time_expression(column, source.unit)} AS ts, "
        f"{literal(source.describe(column))} AS timestamp_desc, "
        f"{literal(source.name)} AS source, r AS data_{index} FROM {table(source)} r{where}"
        for column in source.time
    ]


def timeline_sql(
    sources: list[Source], filters: Filters, limit: int | None = None, offset: int = 0
) -> str:
    """All sources' rows in time order, filtered; a page of them when ``limit`` is given.
    Each source's rows carry their own ``data_<n>`` column (``UNION ALL BY NAME``), so no row
    is serialised before the sort has chosen the page."""
    selects = [
        q
        for index, source in enumerate(sources)
        for q in source_select(source, index, filters.text)
    ]
    where = ["ts IS NOT NULL"]
    if filters.start is not None:
        where.append(f"ts >= {int(filters.start * 1_000_000)}")
    if filters.end is not None:
        where.append(f"ts < {int(filters.end * 1_000_000)}")
    if filters.sources:
        where.append(f"source IN ({', '.join(literal(s) for s in filters.sources)})")
    union = "\nUNION ALL BY NAME\n".join(selects)
    sql = (
        f"SELECT * FROM (\n{union}\n) AS t\n"
        f"WHERE {' AND '.join(where)}\nORDER BY ts, source, timestamp_desc"
    )
    if limit is not None:
        sql += f"\nLIMIT {int(limit)} OFFSET {int(offset)}"
    return sql
