"""Write an analysis result as it streams: JSONL, CSV or Parquet, the formats of the hunt
exports, with the same conventions (nested values as JSON text in CSV, bytes tagged as the
filestore tags them: ``{"$bytes": "<base64>"}``).

The writers take DuckDB's Arrow batches, so Parquet keeps DuckDB's column types exactly
(timestamps, lists, structs), where the hunt export infers them from JSON-shaped rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import IO, Any

from peregrine.filestore.rowlog import tag_record

#: Where a result is written: a file, or the API's stream.
Sink = IO[bytes] | io.RawIOBase

FORMATS = ("jsonl", "csv", "parquet")
MEDIA_TYPES = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}


def write(batches: Iterable[Any], schema: Any, fmt: str, out: Sink) -> int:
    """Write every batch to ``out`` in ``fmt``; returns the rows written."""
    if fmt == "jsonl":
        return _jsonl(batches, out)
    if fmt == "csv":
        return _csv(batches, schema, out)
    if fmt == "parquet":
        return _parquet(batches, schema, out)
    raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


def _jsonl(batches: Iterable[Any], out: Sink) -> int:
    count = 0
    for batch in batches:
        rows = batch.to_pylist()
        out.write(b"".join(json.dumps(tag_record(r), default=str).encode() + b"\n" for r in rows))
        count += len(rows)
    return count


def _csv(batches: Iterable[Any], schema: Any, out: Sink) -> int:
    text = io.StringIO()
    csv.writer(text).writerow(schema.names)
    out.write(text.getvalue().encode())
    count = 0
    for batch in batches:
        text = io.StringIO()
        writer = csv.writer(text)
        for row in batch.to_pylist():
            writer.writerow([_cell(value) for value in tag_record(row).values()])
        out.write(text.getvalue().encode())
        count += batch.num_rows
    return count


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return value


def _parquet(batches: Iterable[Any], schema: Any, out: Sink) -> int:
    import pyarrow.parquet as pq

    count = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            count += batch.num_rows
    return count
