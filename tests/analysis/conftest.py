"""Analysis tests run on real result sets written by the real filestore and a real datastore,
SQLite and PostgreSQL alike (the datastore fixtures of ``tests/datastore``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peregrine.analysis import AnalysisEngine
from peregrine.datastore import FINISHED, IN_PROGRESS, Datastore, FlowRecord, HuntRecord
from peregrine.filestore import Filestore
from peregrine.notebooks import NotebookService
from peregrine.timelines import TimelineService
from tests.datastore.conftest import datastore, datastore_url, postgres_admin

__all__ = [
    "analysis", "datastore", "datastore_url", "filestore", "fleet", "notebooks", "postgres_admin",
    "timelines",
]  # fmt: skip

NOW = 1_700_000_000.0


class Fleet:
    """Clients, collections and hunts written through the datastore and filestore code."""

    def __init__(self, datastore: Datastore, filestore: Filestore) -> None:
        self.datastore = datastore
        self.filestore = filestore
        self._seq: dict[tuple[str, str, str], int] = {}

    def client(self, number: int, hostname: str, labels: list[str] | None = None) -> str:
        client_id = f"C.{number:016x}"
        self.datastore.clients.enroll(client_id, client_id.encode(), NOW + number)
        info = {"hostname": hostname, "os": "linux", "ip_addresses": [f"10.0.0.{number}"]}
        self.datastore.clients.set_info(client_id, info, NOW + number)
        if labels:
            self.datastore.clients.set_labels(client_id, labels)
        return client_id

    def flow(self, client_id: str, number: int, artifact: str, hunt_id: str | None = None) -> str:
        flow_id = f"F.{number:016X}"
        record = FlowRecord(
            flow_id=flow_id,
            client_id=client_id,
            artifacts=[{"name": artifact, "parameters": {}}],
            request={},
            creator="alice",
            created=NOW + number,
        )
        if hunt_id is None:
            self.datastore.collections.create(record)
        else:
            assert self.datastore.hunts.schedule_client(
                hunt_id, record, b"task", NOW + number, respect_limit=False
            )
        self.datastore.collections.transition(flow_id, IN_PROGRESS, NOW + number)
        return flow_id

    def rows(
        self,
        client_id: str,
        flow_id: str,
        artifact: str,
        columns: list[str],
        rows: list[list[Any]],
        source: str = "",
    ) -> None:
        key = (flow_id, artifact, source)
        self._seq[key] = self._seq.get(key, 0) + 1
        self.filestore.append_rows(
            client_id, flow_id, artifact, source, self._seq[key], columns, rows
        )

    def finish(self, flow_id: str) -> None:
        assert self.datastore.collections.transition(flow_id, FINISHED, NOW + 1000)

    def hunt(self, number: int, artifact: str) -> str:
        hunt_id = f"H.{number:016x}"
        self.datastore.hunts.create(
            HuntRecord(
                hunt_id=hunt_id,
                description="stack processes",
                tags=["ir-1"],
                artifacts=[{"name": artifact, "parameters": {}}],
                limits={},
                include_labels=[],
                exclude_labels=[],
                os=[],
                client_limit=None,
                expires=NOW + 86_400,
                creator="alice",
                created=NOW,
            )
        )
        return hunt_id


@pytest.fixture
def filestore(tmp_path: Path) -> Filestore:
    return Filestore(tmp_path / "filestore", min_free_bytes=0)


@pytest.fixture
def fleet(datastore: Datastore, filestore: Filestore) -> Fleet:
    return Fleet(datastore, filestore)


@pytest.fixture
def analysis(
    datastore: Datastore, filestore: Filestore, tmp_path: Path
) -> Iterator[AnalysisEngine]:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    yield AnalysisEngine(datastore, filestore, scratch_dir=scratch)


@pytest.fixture
def notebooks(
    datastore: Datastore, filestore: Filestore, analysis: AnalysisEngine
) -> NotebookService:
    return NotebookService(datastore, filestore, analysis)


@pytest.fixture
def timelines(datastore: Datastore, analysis: AnalysisEngine) -> TimelineService:
    return TimelineService(datastore, analysis)
