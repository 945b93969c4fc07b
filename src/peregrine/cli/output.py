"""Writers that stream query rows to a terminal or a pipe: table, json, jsonl, csv.

Every writer takes rows one at a time and keeps nothing it has written, so memory stays flat on
huge results. The table writer shows a boxed table when the whole result arrives quickly, and
otherwise switches to aligned streaming lines with widths taken from the first rows.
"""

from __future__ import annotations

import base64
import csv
import enum
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any

import msgspec
from rich.console import Console
from rich.table import Table


class OutputFormat(enum.StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


#: How long, and how many rows, the table writer waits before it starts streaming.
TABLE_BUFFER_SECONDS = 0.5
TABLE_BUFFER_ROWS = 200
MAX_CELL = 80


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


_json = msgspec.json.Encoder(enc_hook=_json_default)


def cell_text(value: Any) -> str:
    """How a value reads in a table or CSV cell. Blobs show as base64, like in JSON."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".")
    return str(value)


def write_rows(
    rows: Iterable[Sequence[Any]],
    columns: Sequence[str],
    fmt: OutputFormat,
    out: IO[str],
    console: Console | None = None,
) -> int:
    """Write every row in ``fmt``; return how many were written."""
    if fmt is OutputFormat.jsonl:
        return _write_jsonl(rows, columns, out)
    if fmt is OutputFormat.json:
        return _write_json(rows, columns, out)
    if fmt is OutputFormat.csv:
        return _write_csv(rows, columns, out)
    return _write_table(rows, columns, out, console or Console(file=out))


def _write_jsonl(rows: Iterable[Sequence[Any]], columns: Sequence[str], out: IO[str]) -> int:
    n = 0
    for row in rows:
        out.write(_json.encode(dict(zip(columns, row, strict=False))).decode())
        out.write("\n")
        n += 1
    return n


def _write_json(rows: Iterable[Sequence[Any]], columns: Sequence[str], out: IO[str]) -> int:
    n = 0
    out.write("[")
    for n, row in enumerate(rows, start=1):
        out.write(",\n " if n > 1 else "\n ")
        out.write(_json.encode(dict(zip(columns, row, strict=False))).decode())
    out.write("\n]\n" if n else "]\n")
    return n


def _write_csv(rows: Iterable[Sequence[Any]], columns: Sequence[str], out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(columns)
    n = 0
    for row in rows:
        writer.writerow([cell_text(v) for v in row])
        n += 1
    return n


def _clip(text: str, width: int) -> str:
    text = text.replace("\n", "\\n").replace("\t", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _write_table(
    rows: Iterable[Sequence[Any]], columns: Sequence[str], out: IO[str], console: Console
) -> int:
    iterator = iter(rows)
    buffered: list[list[str]] = []
    started = time.monotonic()
    finished = False
    while len(buffered) < TABLE_BUFFER_ROWS and time.monotonic() - started < TABLE_BUFFER_SECONDS:
        try:
            row = next(iterator)
        except StopIteration:
            finished = True
            break
        buffered.append([cell_text(v) for v in row])
    if finished:
        table = Table(*columns, show_lines=False, header_style="bold")
        for cells in buffered:
            table.add_row(*(_clip(c, MAX_CELL * 2) for c in cells))
        console.print(table)
        return len(buffered)
    # Streaming: widths from the rows so far, then one aligned line per row as it arrives.
    widths = [
        min(MAX_CELL, max([len(name)] + [len(r[i]) for r in buffered]))
        for i, name in enumerate(columns)
    ]

    def line(cells: Sequence[str]) -> str:
        # A wider value widens its column from here on (up to MAX_CELL): nothing short is cut.
        for i, cell in enumerate(cells):
            if len(cell) > widths[i]:
                widths[i] = min(MAX_CELL, len(cell))
        return "  ".join(_clip(c, w).ljust(w) for c, w in zip(cells, widths, strict=False))

    console.print(line(columns), style="bold", markup=False, highlight=False, soft_wrap=True)
    out.write("  ".join("─" * w for w in widths) + "\n")
    n = 0
    for cells in buffered:
        out.write(line(cells).rstrip() + "\n")
        n += 1
    for row in iterator:
        out.write(line([cell_text(v) for v in row]).rstrip() + "\n")
        n += 1
        if n % 64 == 0:
            out.flush()
    return n
