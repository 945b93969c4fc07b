"""Counting what the ingestor stored: messages, rows, bytes, and what agents reported failing."""

from __future__ import annotations

from collections.abc import Sequence

from peregrine.engine.errors import WorkerKilled
from peregrine.metrics.instruments import (
    BYTES_STORED,
    ERRORS,
    MESSAGES_INGESTED,
    QUERY_WORKER_KILLS,
    ROWS_INGESTED,
)
from peregrine.protocol.messages import FlowMessage, ResultBatch, SourceFinished

#: How the agent's artifact runner words a source whose worker was killed (``Type: message``).
_KILLED = f"{WorkerKilled.__name__}: "


def count_stored(
    messages: Sequence[FlowMessage], written: Sequence[int], full: Exception | None
) -> None:
    """A run of flow messages was stored and acknowledged (``written``: filestore bytes each)."""
    MESSAGES_INGESTED.inc(len(messages))
    rows = sum(len(m.rows) for m in messages if isinstance(m, ResultBatch))
    if rows:
        ROWS_INGESTED.inc(rows)
    stored = sum(written)
    if stored:
        BYTES_STORED.inc(stored)
    for message in messages:
        if isinstance(message, SourceFinished) and message.status == "error":
            ERRORS.labels(kind="source").inc()
            if (message.error or "").startswith(_KILLED):
                QUERY_WORKER_KILLS.inc()
    if full is not None:
        ERRORS.labels(kind="storage_full").inc()


def count_chunk(offset: int, size: int, length: int) -> None:
    """An upload chunk was written (counted only when it landed, not a resend)."""
    if size and length == offset + size:
        BYTES_STORED.inc(size)
