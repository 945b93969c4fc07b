"""Notebooks over real result sets (the filestore and datastore code of ``tests/analysis``),
on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from peregrine.analysis import AnalysisEngine
from peregrine.datastore import Datastore
from peregrine.filestore import Filestore
from peregrine.notebooks import NotebookService
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
def notebooks(
    datastore: Datastore, filestore: Filestore, analysis: AnalysisEngine
) -> NotebookService:
    return NotebookService(datastore, filestore, analysis)
