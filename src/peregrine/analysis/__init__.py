"""Server-side analysis: SQL (DuckDB) over every collected result set and the datastore's
tables, read-only and within limits (see ``engine.py``)."""

from __future__ import annotations

from .engine import AnalysisEngine, AnalysisResult
from .errors import AnalysisError, NotPermitted, QueryFailed, QueryRefused, QueryTimedOut
from .limits import AnalysisLimits

__all__ = [
    "AnalysisEngine",
    "AnalysisError",
    "AnalysisLimits",
    "AnalysisResult",
    "NotPermitted",
    "QueryFailed",
    "QueryRefused",
    "QueryTimedOut",
]
