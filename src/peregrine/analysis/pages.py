"""Sorted and filtered pages of one result set (a collection's or a hunt's), by DuckDB.

Plain pages come from the filestore's row index, where any page costs what the first does.
Ordering or filtering needs every row, so those pages are one query of the analysis engine
over the result set's Parquet copy (or its JSONL): rows are never loaded into Python beyond
the page asked for. Column names are checked against the result set's own columns and quoted;
filter text only ever becomes a quoted SQL string or a number.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from peregrine.auth.roles import ANALYZE, READ_RESULTS
from peregrine.filestore.rowlog import tag_record

from .engine import AnalysisEngine

#: What a results page may read: result sets, nothing else (the SQL is the server's own).
PAGE_PERMISSIONS = frozenset({ANALYZE, READ_RESULTS})
_TOTAL = "__peregrine_total"
_COMPARISON = re.compile(r"^(>=|<=|!=|>|<|=)\s*(.*)$", re.DOTALL)
#: Filters one page may combine.
MAX_FILTERS = 20


class BadRowQuery(ValueError):
    """A sort or filter this result set cannot have (the message says what it can)."""


@dataclass(frozen=True)
class RowQuery:
    """How rows are ordered and which are kept; the default is the stored order, all rows."""

    sort: str | None = None
    descending: bool = False
    filters: tuple[tuple[str, str], ...] = ()

    @property
    def plain(self) -> bool:
        return self.sort is None and not self.filters

    @classmethod
    def parse(cls, sort: str | None, order: str, filters: Iterable[str]) -> RowQuery:
        """From the API's ``sort``, ``order`` (asc, desc) and ``filter=column:text`` values."""
        pairs: list[tuple[str, str]] = []
        for raw in filters:
            column, colon, text = raw.partition(":")
            if not colon or not column:
                raise BadRowQuery(f"a filter is column:text, e.g. name:ssh, not {raw!r}")
            if text.strip():
                pairs.append((column, text.strip()))
        if len(pairs) > MAX_FILTERS:
            raise BadRowQuery(f"at most {MAX_FILTERS} column filters at once")
        return cls(sort or None, order == "desc", tuple(pairs))


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def condition(column: str, text: str) -> str:
    """``>10``, ``<=2.5``, ``=x``, ``!=x`` compare; anything else is a case-insensitive
    substring of the value's text."""
    col = ident(column)
    match = _COMPARISON.match(text)
    if match:
        op, value = match.groups()
        try:
            number: float | None = float(value)
        except ValueError:
            number = None
        if number is not None and math.isfinite(number):
            return f"TRY_CAST({col} AS DOUBLE) {op} {number!r}"
        if op == "=":
            return f"CAST({col} AS VARCHAR) = {literal(value)}"
        if op == "!=":
            return f"CAST({col} AS VARCHAR) IS DISTINCT FROM {literal(value)}"
    pattern = re.sub(r"([\\%_])", r"\\\1", text)
    return f"CAST({col} AS VARCHAR) ILIKE {literal('%' + pattern + '%')} ESCAPE '\\'"


def table_call(function: str, object_id: str, artifact: str, source: str) -> str:
    """``flow('F.…', 'Artifact/Source')`` or ``hunt(…)``: the engine's table of a result set."""
    name = f"{artifact}/{source}" if source else artifact
    return f"{function}({literal(object_id)}, {literal(name)})"


def select_sql(table: str, columns: Sequence[str], query: RowQuery, extra: str = "") -> str:
    wanted = ([query.sort] if query.sort else []) + [c for c, _ in query.filters]
    for column in wanted:
        if column not in columns:
            raise BadRowQuery(
                f"no column {column!r} in this result set; its columns: {', '.join(columns)}"
            )
    sql = f"SELECT *{extra} FROM {table}"
    if query.filters:
        sql += " WHERE " + " AND ".join(condition(c, t) for c, t in query.filters)
    if query.sort:
        direction = "DESC" if query.descending else "ASC"
        sql += f" ORDER BY {ident(query.sort)} {direction} NULLS LAST"
    return sql


def columns_of(engine: AnalysisEngine, table: str, deadline: float | None = None) -> list[str]:
    """The columns of a result set's table as the engine reads it (a hunt's gain
    ``client_id`` and ``hostname``)."""
    sql = f"SELECT * FROM {table} LIMIT 0"
    with engine.run(sql, PAGE_PERMISSIONS, deadline=deadline) as result:
        return result.columns


def page(
    engine: AnalysisEngine,
    table: str,
    columns: Sequence[str] | None,
    query: RowQuery,
    offset: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    """One page of the rows ``query`` keeps, in its order, and how many it keeps in all.
    ``columns`` (None: asked of the engine) are those a sort or filter may name. Its
    queries share the engine's one time-out: the page is one answer."""
    deadline = time.monotonic() + engine.limits.timeout
    if columns is None:
        columns = columns_of(engine, table, deadline)
    if query.sort is None:
        # No window here: it would give up the stored order (DuckDB keeps insertion order
        # through scans, filters and projections, not through a window or a join), and pages
        # would repeat or skip rows. A hunt's view keeps it too (its clients are looked up).
        sql = select_sql(table, columns, query)
        rows = _rows(engine, f"{sql} LIMIT {int(limit)} OFFSET {int(offset)}", deadline)
        if 0 < len(rows) < limit or (not rows and offset == 0):
            return rows, offset + len(rows)
    else:
        sql = select_sql(table, columns, query, f", count(*) OVER () AS {_TOTAL}")
        rows = _rows(engine, f"{sql} LIMIT {int(limit)} OFFSET {int(offset)}", deadline)
    if rows and _TOTAL in rows[0]:
        total = int(rows[0][_TOTAL])
    else:  # unsorted, or past the end: count on its own
        counted = _rows(
            engine,
            f"SELECT count(*) AS {_TOTAL} FROM ({select_sql(table, columns, query)})",
            deadline,
        )
        total = int(counted[0][_TOTAL])
    for row in rows:
        row.pop(_TOTAL, None)
    return rows, total


def _rows(engine: AnalysisEngine, sql: str, deadline: float) -> list[dict[str, Any]]:
    with engine.run(sql, PAGE_PERMISSIONS, deadline=deadline) as result:
        return [tag_record(r) for batch in result for r in batch.to_pylist()]
