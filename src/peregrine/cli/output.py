"""Writers that stream query rows to a terminal or a pipe: table, json, jsonl, csv.

Every writer takes rows one at a time and keeps nothing it has written, so memory stays flat on
huge results. The table writer shows a boxed table when the whole result arrives quickly, and
otherwise switches to aligned streaming lines with widths taken from the first rows.

A boxed table never cuts an id (``client_id``, ``flow id``…): when it is wider than the terminal
its other columns wrap, and when even that would leave them too narrow to read, each row is
shown as a record (one ``column  value`` line each). Cell text is never read as Rich markup.
"""

from __future__ import annotations

import base64
import csv
import enum
import time
from collections.abc import Collection, Iterable, Sequence
from typing import IO, Any

import msgspec
import yaml
from rich.console import Console, Group, RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text


class OutputFormat(enum.StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


#: How long, and how many rows, the table writer waits before it starts streaming.
TABLE_BUFFER_SECONDS = 0.5
TABLE_BUFFER_ROWS = 200
MAX_CELL = 80
#: Narrowest a wrapped column may get before the table turns into records.
MIN_WRAPPED = 12


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
        rows = [[_clip(c, MAX_CELL * 2) for c in cells] for cells in buffered]
        print_table(console, columns, rows)
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


def is_id_column(name: str) -> bool:
    """``id``, ``client_id``, ``flow id``: columns whose values must never be cut."""
    lowered = name.lower()
    return lowered == "id" or lowered.endswith(("_id", " id"))


def fit_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    ids: Collection[str] = (),
) -> RenderableType:
    """The rows as a table that fits ``width``: whole, wrapped, or as records. Id columns
    (by their name, or named in ``ids``) are never wrapped or cut."""
    natural = [
        max([len(name), *(len(line) for r in rows for line in r[i].splitlines() or [""])])
        for i, name in enumerate(columns)
    ]
    whole = [is_id_column(name) or name in ids for name in columns]
    frame = 3 * len(columns) + 1  # borders and padding
    if sum(natural) + frame > width:
        pairs = zip(natural, whole, strict=True)
        narrowest = sum(n if is_id else min(n, MIN_WRAPPED) for n, is_id in pairs)
        if narrowest + frame > width:
            return _records(columns, rows, width, whole)
    table = Table(header_style="bold")
    for name, n, is_id in zip(columns, natural, whole, strict=True):
        if is_id:
            table.add_column(name, no_wrap=True, min_width=n)
        else:
            table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _records(
    columns: Sequence[str], rows: Sequence[Sequence[str]], width: int, whole: Sequence[bool]
) -> RenderableType:
    """One block per row, rows apart by a rule: ``column  value`` lines whose values wrap, or,
    when an id would not fit beside its column's name, each value on a line of its own."""
    label = max(len(name) for name in columns) + 2
    longest_id = max(
        (len(row[i]) for row in rows for i, is_id in enumerate(whole) if is_id and i < len(row)),
        default=0,
    )
    stacked = label + longest_id > width
    parts: list[RenderableType] = []
    for n, row in enumerate(rows, start=1):
        parts.append(Rule(f"row {n}", align="left", style="dim"))
        if stacked:
            for name, cell in zip(columns, row, strict=False):
                parts += [Text(name, style="bold"), Text("  " + cell, overflow="fold")]
            continue
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, cell in zip(columns, row, strict=False):
            grid.add_row(Text(name), Text(cell))
        parts.append(grid)
    return Group(*parts)


def print_table(
    console: Console,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    ids: Collection[str] = (),
) -> None:
    """Print rows as a table that fits the console, or ``0 rows``."""
    if not rows:
        console.print("0 rows", markup=False, highlight=False)
        return
    console.print(fit_table(columns, rows, console.width, ids))


class _ReadableDumper(yaml.SafeDumper):
    """YAML for people: a multi-line string (a query) as a ``|`` block, not "...\\n..."."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        # A block cannot hold trailing spaces, so YAML would quote the whole query for one.
        value = "\n".join(line.rstrip() for line in value.splitlines()) + "\n"
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_ReadableDumper.add_representer(str, _str)


def yaml_text(data: Any) -> str:
    """``data`` as YAML to read: keys in their order, queries as blocks, Unicode as is."""
    return yaml.dump(data, Dumper=_ReadableDumper, sort_keys=False, allow_unicode=True, width=100)
