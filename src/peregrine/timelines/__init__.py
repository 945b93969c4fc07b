"""Timelines: rows of many result sets and event logs on one time axis, read through the
analysis engine ordered by time, filtered and paged, exported for Timesketch."""

from __future__ import annotations

from .model import Source, TimelineError
from .service import TimelineService

__all__ = ["Source", "TimelineError", "TimelineService"]
