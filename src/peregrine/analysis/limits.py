"""What one analysis query may use: time, rows, memory, threads, disk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peregrine.config.model import AnalysisSettings


@dataclass(frozen=True, slots=True)
class AnalysisLimits:
    """Per-query limits; a request may lower them, never raise them (``narrowed``)."""

    #: Seconds before the query is interrupted (parsing, reading files and fetching included).
    timeout: float = 60.0
    #: Rows returned at most; the result says when it was cut.
    max_rows: int = 1_000_000
    #: DuckDB's memory limit; past it a query spills to its temporary folder, then fails.
    memory_mb: int = 2048
    #: Threads DuckDB may use for the query.
    threads: int = 2
    #: Disk a query may spill to.
    temp_mb: int = 4096
    #: Bytes of rows of collections still running that a query may snapshot (copy) to read.
    snapshot_bytes: int = 1 << 30
    #: Queries running at once in this process; others wait (within their time-out).
    concurrent: int = 2

    @classmethod
    def from_settings(cls, settings: AnalysisSettings) -> AnalysisLimits:
        """The limits the server's ``analysis:`` configuration section sets."""
        return cls(
            timeout=settings.timeout,
            max_rows=settings.max_rows,
            memory_mb=settings.memory_mb,
            threads=settings.threads,
            concurrent=settings.concurrent,
        )

    def narrowed(self, timeout: float | None = None, max_rows: int | None = None) -> AnalysisLimits:
        """These limits, with a shorter time-out or fewer rows if asked."""
        from dataclasses import replace

        return replace(
            self,
            timeout=min(self.timeout, timeout) if timeout else self.timeout,
            max_rows=min(self.max_rows, max_rows) if max_rows else self.max_rows,
        )
