"""A timeline in Timesketch's import formats: JSONL or CSV with the fields Timesketch requires
(``message``, ``datetime`` in ISO 8601, ``timestamp_desc``) plus ``timestamp`` (microseconds)
and where each row came from. In JSONL a row's own columns ride along as fields (one named
like a required field is kept as ``field_<name>``); in CSV, as one JSON column ``data``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import IO, Any

FORMATS = ("jsonl", "csv")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
_REQUIRED = ("message", "datetime", "timestamp", "timestamp_desc")
_CSV_COLUMNS = (*_REQUIRED, "source", "client_id", "hostname", "data")
_BATCH = 1000


def write(rows: Iterable[dict[str, Any]], fmt: str, out: IO[bytes]) -> int:
    """Write every timeline row to ``out``; how many."""
    if fmt == "jsonl":
        return _batched(rows, out, _jsonl)
    if fmt == "csv":
        header = io.StringIO()
        csv.writer(header).writerow(_CSV_COLUMNS)
        out.write(header.getvalue().encode())
        return _batched(rows, out, _csv)
    raise ValueError(f"export a timeline as {' or '.join(FORMATS)}, not {fmt!r}")


def record(row: dict[str, Any]) -> dict[str, Any]:
    """One Timesketch event (JSONL)."""
    event = {name: row[name] for name in _REQUIRED}
    event["source"] = row["source"]
    for key, value in row["data"].items():
        name = f"field_{key}" if key in event else key
        event[name] = value
    return event


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record(r), default=str) + "\n" for r in rows)


def _csv(rows: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.writer(text)
    for row in rows:
        data = row["data"]
        writer.writerow(
            [*(row[name] for name in _REQUIRED), row["source"], data.get("client_id", ""),
             data.get("hostname", ""), json.dumps(data, default=str)]
        )  # fmt: skip
    return text.getvalue()


def _batched(rows: Iterable[dict[str, Any]], out: IO[bytes], encode: Any) -> int:
    count = 0
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _BATCH:
            out.write(encode(batch).encode())
            count += len(batch)
            batch = []
    if batch:
        out.write(encode(batch).encode())
        count += len(batch)
    return count
