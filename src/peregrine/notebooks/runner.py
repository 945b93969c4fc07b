"""Run one SQL cell through the analysis engine and keep what the notebook stores: the first
``RESULT_ROWS`` rows (at most ``RESULT_BYTES`` of JSON), whether there were more, and the
error if it failed. Values become JSON: times as ISO 8601 text, bytes tagged as the filestore
tags them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from peregrine.analysis import AnalysisEngine, AnalysisError
from peregrine.analysis.values import jsonable

from .model import RESULT_BYTES, RESULT_ROWS


@dataclass(frozen=True, slots=True)
class CellRun:
    result: dict[str, Any]
    ran: float
    duration: float


def run_sql(engine: AnalysisEngine, sql: str, permissions: frozenset[str]) -> CellRun:
    """Run ``sql`` for a caller holding ``permissions``; a failure is kept as the result."""
    ran = time.time()
    started = time.monotonic()
    limits = engine.limits.narrowed(max_rows=RESULT_ROWS + 1)
    try:
        with engine.run(sql, permissions, limits) as result:
            columns = list(result.columns)
            rows: list[list[Any]] = []
            size = 0
            cut = False
            for batch in result:
                for record in batch.to_pylist():
                    row = [jsonable(record[name]) for name in columns]
                    size += len(json.dumps(row, default=str))
                    if len(rows) >= RESULT_ROWS or size > RESULT_BYTES:
                        cut = True
                        break
                    rows.append(row)
                if cut:
                    break
        body: dict[str, Any] = {
            "columns": columns,
            "rows": rows,
            "more": cut or result.truncated,
            "error": None,
        }
    except AnalysisError as exc:
        body = {
            "columns": [],
            "rows": [],
            "more": False,
            "error": {"kind": exc.kind, "message": str(exc)},
        }
    return CellRun(body, ran, time.monotonic() - started)
