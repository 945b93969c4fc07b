"""Server-side analysis: ``POST /analysis`` runs one SELECT (DuckDB) over collected results and
streams the rows as JSONL, CSV or Parquet (see ``peregrine.analysis``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import IO, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from peregrine.analysis import (
    AnalysisEngine,
    AnalysisError,
    AnalysisResult,
    NotPermitted,
)
from peregrine.analysis.output import MEDIA_TYPES, write
from peregrine.api.deps import Audit, context, require
from peregrine.api.schemas import MAX_INT
from peregrine.api.streaming import ReaderGone, produced
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import ANALYZE

router = APIRouter(tags=["analysis"])
log = logging.getLogger(__name__)
#: Response header: the row limit that applied (a result of exactly that many rows was
#: probably cut).
MAX_ROWS_HEADER = "X-Peregrine-Max-Rows"


class AnalysisIn(BaseModel):
    """One analysis query."""

    sql: str = Field(
        min_length=1,
        max_length=100_000,
        description="One SELECT. Tables: flow('F.…', 'Artifact/Source'), hunt('H.…', "
        "'Artifact/Source') (with client_id, hostname), clients(), collections(), hunts(), "
        "events('Artifact', client => 'C.…', since => …, until => …).",
        examples=["SELECT name, count(*) AS n FROM hunt('H.0123456789abcdef', "
                  "'Generic.System.Pslist') GROUP BY name ORDER BY n"],
    )  # fmt: skip
    format: Literal["jsonl", "csv", "parquet"] = "jsonl"
    max_rows: int | None = Field(
        default=None, ge=1, le=MAX_INT, description="Fewer rows than the server's limit."
    )
    timeout: float | None = Field(
        default=None, gt=0, le=86_400, description="A shorter time-out than the server's."
    )


def _engine(request: Request) -> AnalysisEngine:
    """The services' engine (duckdb loads on its first query)."""
    return context(request).services.analysis


@router.post(
    "/analysis",
    summary="Run SQL over collected results (streamed)",
    response_class=StreamingResponse,
    responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}},
)
async def analyze(
    request: Request, body: AnalysisIn, principal: Principal = Depends(require(ANALYZE))
) -> StreamingResponse:
    """Read-only, with a time-out, a memory limit and a row limit; the rows stream as they
    come. A result cut at the row limit ends with the limit's rows and no error: ask for an
    aggregate, or a lower ``max_rows`` to look first."""
    engine = _engine(request)
    limits = engine.limits.narrowed(body.timeout, body.max_rows)
    audit = Audit(request, principal)
    parameters = body.model_dump()
    try:
        result = await asyncio.to_thread(engine.run, body.sql, principal.permissions, limits)
    except AnalysisError as exc:
        await audit.record(
            "analysis.query", parameters=parameters, result="refused", reason=str(exc)
        )
        raise HTTPException(403 if isinstance(exc, NotPermitted) else 400, str(exc)) from None
    await audit.record(
        "analysis.query", target=", ".join(result.reads) or "(no tables)", parameters=parameters
    )
    return StreamingResponse(
        _stream(result, body.format, principal.name),
        media_type=MEDIA_TYPES[body.format],
        headers={MAX_ROWS_HEADER: str(limits.max_rows)},
    )


def _stream(result: AnalysisResult, fmt: str, who: str) -> Iterator[bytes]:
    """The result written in a thread as the client reads it (``api/streaming.py``): a
    failure after the first bytes breaks the response off, and a client that goes away stops
    the query."""

    def write_all(sink: IO[bytes]) -> None:
        try:
            rows = write(result, result.schema, fmt, sink)
            log.info(
                "analysis by %s: %d rows in %.2f s%s", who, rows, result.elapsed,
                " (cut at the row limit)" if result.truncated else "",
            )  # fmt: skip
        except ReaderGone:
            raise
        except BaseException as exc:
            log.warning("analysis by %s broke off: %s", who, exc)
            raise
        finally:
            result.close()

    return produced(write_all, stop=result.cancel)
