"""A hunt's results: one combined result set per source across all its clients.

Rows stay where the flows wrote them (the filestore, per client and flow); the combined view adds
``client_id`` and ``hostname`` to each row and walks the flows in schedule order. A page skips
whole flows by their row counts (kept between pages for flows that are done:
``hunt_row_counts.py``) and then seeks inside one flow with its row index, so reading page 5,000
costs the same as page 1. Exports stream (CSV, JSONL, Parquet) batch by batch:
memory stays flat and nothing times out, whatever the size.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import IO, Any

from peregrine.datastore import Datastore
from peregrine.filestore import Filestore

from .hunt_row_counts import HuntRowCounts

BATCH_ROWS = 5000
EXPORT_FORMATS = ("csv", "jsonl", "parquet")


class HuntResults:
    def __init__(self, datastore: Datastore, filestore: Filestore) -> None:
        self.datastore = datastore
        self.filestore = filestore
        self.row_counts = HuntRowCounts(datastore, filestore)

    def _flows(self, hunt_id: str) -> Iterator[tuple[str, str, str | None]]:
        offset = 0
        while True:
            page = self.datastore.hunts.clients(hunt_id, limit=1000, offset=offset)
            for entry in page:
                yield entry.client_id, entry.flow_id, entry.hostname
            if len(page) < 1000:
                return
            offset += 1000

    def count(self, hunt_id: str, artifact: str, source: str = "") -> int:
        return self.row_counts.count(hunt_id, artifact, source)

    def iter_batches(
        self, hunt_id: str, artifact: str, source: str = "", batch: int = BATCH_ROWS
    ) -> Iterator[list[dict[str, Any]]]:
        for client_id, flow_id, hostname in self._flows(hunt_id):
            offset = 0
            while True:
                rows = self.filestore.read_rows(client_id, flow_id, artifact, source, offset, batch)
                if not rows:
                    break
                yield [{"client_id": client_id, "hostname": hostname, **row} for row in rows]
                if len(rows) < batch:
                    break
                offset += len(rows)

    def page(
        self, hunt_id: str, artifact: str, source: str = "", offset: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Rows ``offset`` to ``offset + limit`` of the combined result set."""
        out: list[dict[str, Any]] = []
        for span in self.row_counts.spans(hunt_id, artifact, source, from_row=offset):
            skip = max(0, offset - span.start)
            if skip >= span.rows:
                continue
            rows = self.filestore.read_rows(
                span.client_id, span.flow_id, artifact, source, skip, limit - len(out)
            )
            out += [{"client_id": span.client_id, "hostname": span.hostname, **r} for r in rows]
            if len(out) >= limit:
                break
        return out

    def export(self, hunt_id: str, artifact: str, source: str, fmt: str, out: IO[bytes]) -> int:
        """Stream the combined result set to ``out``; returns the rows written."""
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {fmt!r}: {', '.join(EXPORT_FORMATS)}")
        return write_export(self.iter_batches(hunt_id, artifact, source), fmt, out)


def write_export(batches: Iterator[list[dict[str, Any]]], fmt: str, out: IO[bytes]) -> int:
    """Write batches of rows as ``fmt`` (one of ``EXPORT_FORMATS``); the rows written."""
    if fmt == "jsonl":
        return _jsonl(batches, out)
    if fmt == "csv":
        return _csv(batches, out)
    return _parquet(batches, out)


def _value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def _jsonl(batches: Iterator[list[dict[str, Any]]], out: IO[bytes]) -> int:
    count = 0
    for batch in batches:
        out.write(b"".join(json.dumps(row, default=str).encode() + b"\n" for row in batch))
        count += len(batch)
    return count


def _csv(batches: Iterator[list[dict[str, Any]]], out: IO[bytes]) -> int:
    """The header comes from the first rows; every flow ran the same query, so later rows
    have the same columns (a column one agent version lacks is left empty)."""
    count = 0
    columns: list[str] | None = None
    for batch in batches:
        text = io.StringIO()
        if columns is None:
            columns = list(batch[0])
            csv.writer(text).writerow(columns)
        writer = csv.writer(text)
        for row in batch:
            writer.writerow([_csv_cell(row.get(c)) for c in columns])
        out.write(text.getvalue().encode())
        count += len(batch)
    return count


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return _value(value)


def _parquet(batches: Iterator[list[dict[str, Any]]], out: IO[bytes]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    count = 0
    try:
        for batch in batches:
            rows = [{k: _value(v) for k, v in row.items()} for row in batch]
            if schema is None:
                inferred = pa.Table.from_pylist(rows).schema
                # Columns that were all NULL in the first batch: text, the safest type.
                schema = pa.schema(
                    [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in inferred]
                )
                writer = pq.ParquetWriter(out, schema)
            assert writer is not None
            try:
                table = pa.Table.from_pylist(rows, schema=schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                # A later flow disagrees on a column's type: write that batch as text.
                fixed = [
                    {
                        k: _as_type(v, schema.field(k).type)
                        for k, v in r.items()
                        if k in schema.names
                    }
                    for r in rows
                ]
                table = pa.Table.from_pylist(fixed, schema=schema)
            writer.write_table(table)
            count += len(rows)
    finally:
        if writer is not None:
            writer.close()
    return count


def _as_type(value: Any, arrow_type: Any) -> Any:
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_string(arrow_type):
        return str(value)
    if pa.types.is_integer(arrow_type):
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    if pa.types.is_floating(arrow_type):
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return value
