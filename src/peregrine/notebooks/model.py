"""What a notebook may hold: cell kinds, chart specifications, sizes; checked on every write
and on import, so a stored notebook is always one the API and the report can show."""

from __future__ import annotations

from typing import Any

from peregrine.auth.sharing import NotAllowed, NotVisible, SharingError

KINDS = ("markdown", "sql")
CHART_TYPES = ("table", "bar", "line")
MAX_CELLS = 200
MAX_TEXT = 100_000
MAX_TITLE = 200
#: A cell keeps at most this many rows of its last result, and at most this many bytes of them.
RESULT_ROWS = 1000
RESULT_BYTES = 1 << 20


class NotebookError(SharingError):
    """A request a notebook cannot take; the message says what to change."""


class NotebookNotFound(NotebookError, NotVisible):
    pass


class NotebookForbidden(NotebookError, NotAllowed):
    pass


def check_title(title: str) -> str:
    title = title.strip()
    if not title or len(title) > MAX_TITLE or any(ord(ch) < 32 for ch in title):
        raise NotebookError(f"a title is 1 to {MAX_TITLE} printable characters")
    return title


def check_cell(kind: str, text: str, chart: Any) -> dict[str, Any] | None:
    """Validate one cell; returns its chart specification in canonical form."""
    if kind not in KINDS:
        raise NotebookError(f"cell kind {kind!r}: one of {', '.join(KINDS)}")
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise NotebookError(f"a cell's text is a string of at most {MAX_TEXT:,} characters")
    if chart is None:
        return None
    if kind != "sql":
        raise NotebookError("only a SQL cell has a chart")
    return check_chart(chart)


def check_chart(chart: Any) -> dict[str, Any]:
    """``{"type": "table"}``, ``{"type": "bar", "x": col, "y": col}`` (categories and counts)
    or ``{"type": "line", "x": time column, "y": col}``; column names are checked against a
    result when it is drawn, since the SQL may change."""
    if not isinstance(chart, dict):
        raise NotebookError('a chart is an object: {"type": "bar", "x": "name", "y": "n"}')
    unknown = set(chart) - {"type", "x", "y", "title"}
    if unknown:
        raise NotebookError(f"a chart has type, x, y and title; not {', '.join(sorted(unknown))}")
    kind = chart.get("type")
    if kind not in CHART_TYPES:
        raise NotebookError(f"chart type {kind!r}: one of {', '.join(CHART_TYPES)}")
    spec: dict[str, Any] = {"type": kind}
    for key in ("x", "y", "title"):
        value = chart.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not 0 < len(value) <= 200:
            raise NotebookError(f"chart {key}: a column name of 1 to 200 characters")
        spec[key] = value
    if kind in ("bar", "line") and not ("x" in spec and "y" in spec):
        raise NotebookError(f"a {kind} chart names its x and y columns")
    return spec
