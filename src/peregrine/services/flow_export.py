"""A collection's result set exported whole (CSV, JSONL, Parquet), streamed from the filestore
batch by batch in its stored order, with the hunt exports' writers and conventions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from peregrine.filestore import Filestore
from peregrine.services.hunt_results import BATCH_ROWS, EXPORT_FORMATS, write_export


class FlowExport:
    """One client's collections; ``export`` has the signature the API's export stream calls."""

    def __init__(self, filestore: Filestore, client_id: str) -> None:
        self.filestore = filestore
        self.client_id = client_id

    def batches(self, flow_id: str, artifact: str, source: str) -> Iterator[list[dict[str, Any]]]:
        offset = 0
        while True:
            rows = self.filestore.read_rows(
                self.client_id, flow_id, artifact, source, offset, BATCH_ROWS
            )
            if not rows:
                return
            yield rows
            offset += len(rows)

    def export(self, flow_id: str, artifact: str, source: str, fmt: str, out: IO[bytes]) -> int:
        """Stream the result set to ``out``; returns the rows written."""
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {fmt!r}: {', '.join(EXPORT_FORMATS)}")
        return write_export(self.batches(flow_id, artifact, source), fmt, out)
