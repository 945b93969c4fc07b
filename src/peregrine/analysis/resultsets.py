"""Which files ``flow(...)`` and ``hunt(...)`` read: the committed rows of each result set.

For each result set with rows, in order of preference:

* its Parquet copy, when one matches the committed length (``columnar.py``);
* the JSONL in place, when its collection is in a final state and the file holds exactly the
  committed bytes (then it is queued for a Parquet copy);
* otherwise (a collection still running) a copy of the committed bytes into the query's own
  temporary folder, so a batch being written meanwhile is never half read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from peregrine.datastore import FINAL_STATES, Datastore
from peregrine.filestore import Filestore
from peregrine.filestore.events import EventFiles
from peregrine.filestore.names import result_set_name
from peregrine.filestore.rowlog import read_json

from . import columnar
from .errors import QueryRefused
from .statement import TableCall, event_time

_HUNT_PAGE = 1000


@dataclass(frozen=True, slots=True)
class ResultFile:
    """One result set's rows on disk, of one client."""

    path: Path
    columnar: bool
    client_id: str
    hostname: str | None
    #: The columns the writer recorded, in first-seen order (files with the same can be read
    #: by one scan without matching columns by name).
    columns: tuple[str, ...]


@dataclass(slots=True)
class Resolved:
    """What one query reads: its files, and result sets worth a Parquet copy."""

    files: dict[TableCall, list[ResultFile]] = field(default_factory=dict)
    to_copy: list[Path] = field(default_factory=list)
    copied_bytes: int = 0


class ResultSets:
    """Resolves ``flow``/``hunt`` calls against the datastore and the filestore."""

    def __init__(self, datastore: Datastore, filestore: Filestore) -> None:
        self.datastore = datastore
        self.filestore = filestore

    def resolve(
        self,
        calls: list[TableCall],
        scratch: Path,
        max_copy_bytes: int,
        check_time: Callable[[], None] = lambda: None,
    ) -> Resolved:
        """The files of ``calls``; ``check_time`` is called per file (it raises past the
        query's deadline: a hunt has a file per client)."""
        resolved = Resolved()
        for call in calls:
            if call.function == "events":
                resolved.files[call] = self._events(call, scratch, resolved, check_time)
                _check_copied(resolved, max_copy_bytes)
                continue
            if call.function == "flow":
                targets = self._flow(call.args[0])
            elif call.function == "hunt":
                targets = self._hunt(call.args[0])
            else:
                continue
            files: list[ResultFile] = []
            for client_id, flow_id, hostname, state in targets:
                check_time()
                found = self._file(
                    call, client_id, flow_id, hostname, state in FINAL_STATES, scratch, resolved
                )
                if found is not None:
                    files.append(found)
                _check_copied(resolved, max_copy_bytes)
            resolved.files[call] = files
        return resolved

    def _flow(self, flow_id: str) -> list[tuple[str, str, str | None, str]]:
        record = self.datastore.collections.get(flow_id)
        if record is None:
            raise QueryRefused(f"no collection {flow_id}: list them with collections()")
        client = self.datastore.clients.get(record.client_id)
        hostname = client.hostname if client is not None else None
        return [(record.client_id, flow_id, hostname, record.state)]

    def _hunt(self, hunt_id: str) -> list[tuple[str, str, str | None, str]]:
        if self.datastore.hunts.get(hunt_id) is None:
            raise QueryRefused(f"no hunt {hunt_id}: list them with hunts()")
        found: list[tuple[str, str, str | None, str]] = []
        offset = 0
        while True:
            page = self.datastore.hunts.clients(hunt_id, limit=_HUNT_PAGE, offset=offset)
            found += [(c.client_id, c.flow_id, c.hostname, c.state) for c in page]
            if len(page) < _HUNT_PAGE:
                return found
            offset += _HUNT_PAGE

    def _file(
        self,
        call: TableCall,
        client_id: str,
        flow_id: str,
        hostname: str | None,
        settled: bool,
        scratch: Path,
        resolved: Resolved,
    ) -> ResultFile | None:
        stem = (
            self.filestore.flow_dir(client_id, flow_id)
            / "results"
            / result_set_name(call.artifact, call.source)
        )
        meta = read_json(stem.with_name(stem.name + ".meta"))
        if meta is None or int(meta.get("rows", 0)) == 0:
            return None
        length = int(meta["length"])
        columns = tuple(str(c) for c in meta.get("columns", []))
        parquet = columnar.current_copy(stem, length)
        if parquet is not None:
            return ResultFile(parquet, True, client_id, hostname, columns)
        data = stem.with_name(stem.name + ".jsonl")
        if settled and data.stat().st_size == length:
            resolved.to_copy.append(stem)
            return ResultFile(data, False, client_id, hostname, columns)
        snapshot = scratch / f"{flow_id}.{stem.name}.jsonl"
        _copy_prefix(data, snapshot, length)
        resolved.copied_bytes += length
        return ResultFile(snapshot, False, client_id, hostname, columns)

    def _events(
        self,
        call: TableCall,
        scratch: Path,
        resolved: Resolved,
        check_time: Callable[[], None],
    ) -> list[ResultFile]:
        """The day files of ``events(artifact, client, since, until)``: only the days the range
        touches; a day still being written is read up to its commit record (a copy)."""
        artifact, client, since, until = call.args
        start = event_time(since, "since") if since else None
        end = event_time(until, "until") if until else None
        events = EventFiles(self.filestore.root, self.filestore.check_space)
        clients = [client] if client else events.clients_of(artifact)
        found: list[ResultFile] = []
        for client_id in clients:
            check_time()
            stems = events.day_stems(client_id, artifact, start, end)
            if not stems:
                continue
            record = self.datastore.clients.get(client_id)
            hostname = record.hostname if record is not None else None
            for stem in stems:
                meta = read_json(stem.with_name(stem.name + ".meta"))
                if meta is None or int(meta.get("rows", 0)) == 0:
                    continue
                length = int(meta["length"])
                data = stem.with_name(stem.name + ".jsonl")
                if data.stat().st_size != length:  # a batch being written: its committed rows
                    snapshot = scratch / f"events.{client_id}.{stem.name}.jsonl"
                    _copy_prefix(data, snapshot, length)
                    resolved.copied_bytes += length
                    data = snapshot
                found.append(ResultFile(data, False, client_id, hostname, ()))
        return found


def _check_copied(resolved: Resolved, max_copy_bytes: int) -> None:
    if resolved.copied_bytes > max_copy_bytes:
        raise QueryRefused(
            f"the collections still running hold more than {max_copy_bytes:,} bytes "
            "of rows to snapshot: query again once they finish"
        )


def _copy_prefix(source: Path, target: Path, length: int) -> None:
    """Copy the first ``length`` bytes (the committed rows) of ``source``."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        remaining = length
        while remaining > 0:
            chunk = src.read(min(remaining, 1 << 20))
            if not chunk:
                raise OSError(f"{source} is shorter than its committed {length} bytes")
            dst.write(chunk)
            remaining -= len(chunk)
        os.fchmod(dst.fileno(), 0o600)
