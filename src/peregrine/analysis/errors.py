"""What an analysis query can fail with; each error says what to do next.

::

    AnalysisError            anything the engine refuses or fails with on purpose
    ├── QueryRefused         not one SELECT, a table function used wrongly, an unknown object
    ├── NotPermitted         the caller lacks a permission the query needs
    ├── QueryTimedOut        it ran past its time-out and was interrupted
    └── QueryFailed          DuckDB could not run it (syntax, types, memory limit...)
"""

from __future__ import annotations


class AnalysisError(Exception):
    """Base of the engine's errors; ``kind`` names it in API answers."""

    kind = "error"


class QueryRefused(AnalysisError):
    kind = "refused"


class NotPermitted(AnalysisError):
    kind = "forbidden"


class QueryTimedOut(AnalysisError):
    kind = "timeout"


class QueryFailed(AnalysisError):
    kind = "failed"
