"""Timelines over real result sets and event files, on SQLite and PostgreSQL alike: the
fixtures of ``tests/analysis``."""

from tests.analysis.conftest import *  # noqa: F403
