"""A notebook as one self-contained HTML file (for an incident report): inline CSS, charts as
inline SVG drawn here, tables of each cell's stored result, Markdown shown as escaped text in
paragraphs and headings. Nothing is loaded from anywhere: no script, no link, no URL; a
Content-Security-Policy meta tag says so to the browser too. Every value is HTML-escaped."""

from __future__ import annotations

import datetime
import json
from html import escape
from typing import Any

from peregrine.datastore.notebooks import CellRecord, NotebookRecord

from .charts import svg

#: Rows of a cell's stored result shown in the report.
REPORT_ROWS = 200

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#1c1c1c}
h1,h2,h3{font-weight:600}.meta{color:#555;font-size:12px}
pre{background:#f4f4f4;padding:.6em;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse;margin:.5em 0;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#eee}.cell{margin:1.5em 0}.error{color:#a00}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def html(notebook: NotebookRecord, exported_by: str) -> str:
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>{escape(notebook.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(notebook.title)}</h1>",
        f'<p class="meta">{escape(_about(notebook, exported_by))}</p>',
    ]
    if notebook.description:
        parts.append(f"<p>{escape(notebook.description)}</p>")
    for cell in notebook.cells:
        parts.append(_cell(cell))
    parts.append("</body></html>\n")
    return "".join(parts)


def _about(notebook: NotebookRecord, exported_by: str) -> str:
    about = f"Notebook {notebook.notebook_id} by {notebook.owner}"
    if notebook.hunt_id:
        about += f", about hunt {notebook.hunt_id}"
    if notebook.client_id:
        about += f", about client {notebook.client_id}"
    return f"{about}; exported by {exported_by} at {_when(datetime.datetime.now(datetime.UTC))}"


def _cell(cell: CellRecord) -> str:
    if cell.kind == "markdown":
        return f'<div class="cell">{_markdown(cell.text)}</div>'
    parts = [f'<div class="cell"><pre>{escape(cell.text)}</pre>']
    result = cell.result
    if result is None:
        parts.append('<p class="meta">Not run.</p></div>')
        return "".join(parts)
    ran = datetime.datetime.fromtimestamp(cell.ran or 0, datetime.UTC)
    parts.append(
        f'<p class="meta">Ran {escape(_when(ran))} by {escape(cell.ran_by or "?")} '
        f"in {cell.duration or 0:.2f} s.</p>"
    )
    error = result.get("error")
    if error:
        parts.append(f'<p class="error">{escape(str(error.get("message", error)))}</p></div>')
        return "".join(parts)
    columns = [str(c) for c in result.get("columns", [])]
    rows = result.get("rows", [])
    if cell.chart and cell.chart.get("type") != "table":
        drawn = svg(cell.chart, columns, rows)
        if drawn:
            parts.append(drawn)
    parts.append(_table(columns, rows[:REPORT_ROWS]))
    shown = min(len(rows), REPORT_ROWS)
    if result.get("more") or len(rows) > shown:
        parts.append(f'<p class="meta">First {shown} rows shown; the result has more.</p>')
    parts.append("</div>")
    return "".join(parts)


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_text(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _markdown(text: str) -> str:
    """Headings, paragraphs and code blocks; everything else is text (escaped, never markup)."""
    out: list[str] = []
    paragraph: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{escape(' '.join(paragraph))}</p>")
            paragraph.clear()

    for line in text.splitlines():
        if line.startswith("```"):
            if code is None:
                flush()
                code = []
            else:
                out.append(f"<pre>{escape(chr(10).join(code))}</pre>")
                code = None
            continue
        if code is not None:
            code.append(line)
        elif line.startswith("#"):
            flush()
            level = min(len(line) - len(line.lstrip("#")), 3) + 1
            out.append(f"<h{level}>{escape(line.lstrip('#').strip())}</h{level}>")
        elif not line.strip():
            flush()
        else:
            paragraph.append(line.strip())
    if code is not None:
        out.append(f"<pre>{escape(chr(10).join(code))}</pre>")
    flush()
    return "".join(out)


def _when(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
