"""Sorting and column filters of the API's result pages (collections' and hunts').

A page asked for with neither keeps using the filestore's row index; with either, it is one
query of the analysis engine (``analysis/pages.py``) over the result set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException, Query, Request

from peregrine.analysis import AnalysisError, QueryTimedOut
from peregrine.analysis.pages import MAX_FILTERS, BadRowQuery, RowQuery, page
from peregrine.api.deps import context

SORT = Query(None, min_length=1, max_length=200, description="A column to order the rows by.")
ORDER = Query("asc", pattern="^(asc|desc)$", description="asc or desc (nulls last either way).")
FILTERS = Query(
    [],
    max_length=MAX_FILTERS,
    description="column:text keeps rows whose column contains text (any case); "
    "column:>10, :<=2.5, :=x, :!=x compare.",
)


def row_query(sort: str | None, order: str, filters: Sequence[str]) -> RowQuery:
    try:
        return RowQuery.parse(sort, order, filters)
    except BadRowQuery as exc:
        raise HTTPException(400, str(exc)) from None


async def sorted_page(
    request: Request,
    table: str,
    columns: Sequence[str] | None,
    query: RowQuery,
    offset: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    """The page, or a 400 that says which columns there are (504 past the engine's time-out,
    which the page's queries share)."""
    engine = context(request).services.analysis
    try:
        return await asyncio.to_thread(page, engine, table, columns, query, offset, limit)
    except BadRowQuery as exc:
        raise HTTPException(400, str(exc)) from None
    except QueryTimedOut as exc:
        raise HTTPException(
            504, f"sorting or filtering ran out of time: {exc}; or page without sorting",
            headers={"Retry-After": "60"},
        ) from None  # fmt: skip
    except AnalysisError as exc:
        raise HTTPException(400, f"cannot sort or filter these rows: {exc}") from None
