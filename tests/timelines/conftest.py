"""Timelines over real result sets and event files (the filestore and datastore code of
``tests/analysis``), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from peregrine.analysis import AnalysisEngine
from peregrine.datastore import Datastore
from peregrine.timelines import TimelineService
from tests.analysis.conftest import (
    analysis,
    datastore,
    datastore_url,
    filestore,
    fleet,
    postgres_admin,
)

__all__ = ["analysis", "datastore", "datastore_url", "filestore", "fleet", "postgres_admin"]


@pytest.fixture
def timelines(datastore: Datastore, analysis: AnalysisEngine) -> TimelineService:
    return TimelineService(datastore, analysis)
