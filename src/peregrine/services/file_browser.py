"""The file browser (a client's virtual file system): listings and downloads are collections.

Each directory listing is a run of ``System.VFS.ListDirectory`` and each download a run of
``System.VFS.DownloadFile`` on the client, so they are authorised, audited, stored and kept
exactly as any collection is. What the browser shows for a path is derived from the client's
stored collections (the newest finished one for that path, and any newer one still running),
so it can never disagree with them and needs no table of its own.
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import dataclass
from typing import Any

from peregrine.datastore import Datastore, FlowRecord
from peregrine.datastore.records import FINAL_STATES, FINISHED
from peregrine.filestore import Filestore

LIST_DIRECTORY = "System.VFS.ListDirectory"
DOWNLOAD_FILE = "System.VFS.DownloadFile"
#: A client's collections read per datastore query while looking for a path's latest run.
SCAN_PAGE = 500
#: How many of a client's newest collections are looked through for a path's latest run.
SCAN_LIMIT = 20_000
MAX_PATH = 4096


class PathRefused(ValueError):
    """A path the file browser will not ask a client about (the message says why)."""


def clean_path(path: str) -> str:
    """The absolute, normalised form of ``path`` (no ``..``, no trailing slash)."""
    if not path.startswith("/"):
        raise PathRefused(f"the path must be absolute, starting with '/': {path!r}")
    if "\x00" in path:
        raise PathRefused("the path must not contain a NUL character")
    if len(path) > MAX_PATH:
        raise PathRefused(f"the path is longer than {MAX_PATH} characters")
    return "/" + posixpath.normpath(path).lstrip("/")


@dataclass
class PathRuns:
    """A path's newest finished run, a newer run still going, and a newer one that failed."""

    finished: FlowRecord | None = None
    pending: FlowRecord | None = None
    failed: FlowRecord | None = None


def _is_run(record: FlowRecord, artifact: str, path: str) -> bool:
    calls = record.artifacts
    return (
        len(calls) == 1
        and calls[0].get("name") == artifact
        and (calls[0].get("parameters") or {}).get("Path") == path
    )


class FileBrowser:
    def __init__(self, datastore: Datastore, filestore: Filestore) -> None:
        self.datastore = datastore
        self.filestore = filestore

    def runs(self, client_id: str, artifact: str, path: str) -> PathRuns:
        """The client's runs of ``artifact`` for ``path``, newest first, up to a finished one."""
        found = PathRuns()
        store = self.datastore.collections
        for offset in range(0, SCAN_LIMIT, SCAN_PAGE):
            page = store.list_for_client(client_id, SCAN_PAGE, offset)
            for record in page:
                if not _is_run(record, artifact, path):
                    continue
                if record.state == FINISHED:
                    found.finished = record
                    return found
                if record.state not in FINAL_STATES:
                    found.pending = found.pending or record
                elif found.failed is None:
                    found.failed = record
            if len(page) < SCAN_PAGE:
                break
        return found

    def rows(self, record: FlowRecord, offset: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """A page of the rows a run returned."""
        name = record.artifacts[0]["name"]
        rows: list[dict[str, Any]] = self.filestore.read_rows(
            record.client_id, record.flow_id, name, "", offset, limit
        )
        return rows

    def row_count(self, record: FlowRecord) -> int:
        name = record.artifacts[0]["name"]
        return self.filestore.row_count(record.client_id, record.flow_id, name, "")

    async def listing(self, client_id: str, path: str) -> PathRuns:
        return await asyncio.to_thread(self.runs, client_id, LIST_DIRECTORY, clean_path(path))

    async def download(self, client_id: str, path: str) -> PathRuns:
        return await asyncio.to_thread(self.runs, client_id, DOWNLOAD_FILE, clean_path(path))
