"""A cell's chart drawn as inline SVG on the server, for the HTML report: a bar chart of
categories and values, or a line of values over time. Every text is escaped; the SVG holds
no script, link or external reference."""

from __future__ import annotations

import datetime
from html import escape
from typing import Any

WIDTH = 640
BAR_HEIGHT = 18
_MAX_BARS = 30
_LINE_HEIGHT = 220
_MARGIN = 40
_LABEL = 170


def svg(chart: dict[str, Any], columns: list[str], rows: list[list[Any]]) -> str | None:
    """The chart as SVG markup, or None when the result cannot draw it (the table is shown)."""
    kind = chart.get("type")
    x, y = chart.get("x"), chart.get("y")
    if kind not in ("bar", "line") or x not in columns or y not in columns:
        return None
    xi, yi = columns.index(x), columns.index(y)
    points: list[tuple[Any, float]] = []
    for row in rows:
        value = _number(row[yi])
        if value is not None:
            points.append((row[xi], value))
    if not points:
        return None
    if kind == "bar":
        return _bars(points[:_MAX_BARS], str(chart.get("title") or f"{y} by {x}"))
    timed: list[tuple[float, float]] = []
    for label, value in points:
        moment = _time(label)
        if moment is not None:
            timed.append((moment, value))
    if len(timed) < 2:
        return None
    return _line(sorted(timed), str(chart.get("title") or f"{y} over {x}"))


def _bars(points: list[tuple[Any, float]], title: str) -> str:
    top = max((v for _, v in points), default=0.0) or 1.0
    height = 30 + len(points) * (BAR_HEIGHT + 4)
    parts = [_open(height, title), _text(4, 16, title, bold=True)]
    span = WIDTH - _LABEL - 80
    for number, (label, value) in enumerate(points):
        y = 26 + number * (BAR_HEIGHT + 4)
        length = max(1.0, span * max(value, 0.0) / top)
        parts.append(_text(_LABEL - 6, y + 13, _short(label), anchor="end"))
        parts.append(
            f'<rect x="{_LABEL}" y="{y}" width="{length:.1f}" height="{BAR_HEIGHT}" '
            'fill="#3b6ea5"/>'
        )
        parts.append(_text(_LABEL + length + 4, y + 13, _format(value)))
    parts.append("</svg>")
    return "".join(parts)


def _line(points: list[tuple[float, float]], title: str) -> str:
    t0, t1 = points[0][0], points[-1][0]
    low = min(v for _, v in points)
    high = max(v for _, v in points)
    span_t = (t1 - t0) or 1.0
    span_v = (high - low) or 1.0
    inner_w, inner_h = WIDTH - 2 * _MARGIN, _LINE_HEIGHT - 2 * _MARGIN
    coords = " ".join(
        f"{_MARGIN + inner_w * (t - t0) / span_t:.1f},"
        f"{_MARGIN + inner_h - inner_h * (v - low) / span_v:.1f}"
        for t, v in points
    )
    return "".join(
        [
            _open(_LINE_HEIGHT, title),
            _text(4, 16, title, bold=True),
            f'<polyline fill="none" stroke="#3b6ea5" stroke-width="2" points="{coords}"/>',
            _text(_MARGIN, _LINE_HEIGHT - 8, _iso(t0)),
            _text(WIDTH - _MARGIN, _LINE_HEIGHT - 8, _iso(t1), anchor="end"),
            _text(4, _MARGIN, _format(high)),
            _text(4, _MARGIN + inner_h, _format(low)),
            "</svg>",
        ]
    )


def _open(height: int, title: str) -> str:
    return (
        f'<svg width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">'
    )


def _text(x: float, y: float, text: str, anchor: str = "start", bold: bool = False) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="12" text-anchor="{anchor}"{weight}>'
        f"{escape(text)}</text>"
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _time(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        parsed = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short(value: Any) -> str:
    text = "(null)" if value is None else str(value)
    return text if len(text) <= 28 else text[:27] + "…"


def _format(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.3g}"
