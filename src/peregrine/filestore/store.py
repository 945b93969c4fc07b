"""The filestore: result sets, flow logs and uploaded files in a directory tree.

The server writes everything an agent sends for a flow here (the datastore only keeps the
flow's state and statistics). Each write is durable (fsync) before the call returns, or, given
a ``batch`` (``durable.py``), once the batch commits, so the server can acknowledge right after;
each write is idempotent (by ``seq`` for rows and logs, by
offset for upload chunks), so the agent can resend anything not acknowledged. Layout::

    <root>/clients/<client_id>/flows/<flow_id>/
        results/<artifact>__<source>__<hash>.{jsonl,idx,meta}   one result set (rowlog.py)
        logs.{jsonl,idx,meta}                                    the flow's log
        uploads/...  uploads.partial/  uploads.records/  uploads.corrupt/   (uploads.py)

The root may be a local disk or a shared mount (distributed mode): the locks are ``flock``
locks on files in the tree, so several server processes can share it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from .durable import DurableBatch
from .errors import StorageFull, UnknownUpload, UploadCorrupt, is_space_error
from .names import CLIENT_ID_RE, FLOW_ID_RE, UPLOAD_ID_RE, check_id, result_set_name
from .rowlog import (
    RowLog,
    fsync_dir,
    read_json,
    row_record,
    tag_record,
    write_all,
    write_atomic,
)
from .uploads import UploadRecord, make_dirs, place

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
#: Clients remembered as having a ``flows`` folder (then forgotten all at once).
KNOWN_CLIENTS = 200_000
_HASH_BLOCK = 1024 * 1024
_T = TypeVar("_T")


def _unique_columns(columns: list[str]) -> list[str]:
    """Column names as JSON keys: a repeated name (``SELECT a, a``) becomes ``a_2``, ..."""
    seen: set[str] = set()
    out: list[str] = []
    for name in columns:
        candidate, number = str(name), 1
        while candidate in seen:
            number += 1
            candidate = f"{name}_{number}"
        seen.add(candidate)
        out.append(candidate)
    return out


class Filestore:
    """Durable, idempotent storage of what agents send for their flows (thread-safe)."""

    def __init__(self, root: Path, min_free_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        # Evidence: owner-only. Everything below inherits the protection of this folder.
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)
        #: Clients whose ``flows`` folder was made or found here: where a new flow's folders
        #: start (a hint: a client removed since costs one failed ``mkdir``).
        self._clients_seen: set[str] = set()

    # -- space ----------------------------------------------------------------------------------

    def free_bytes(self) -> int:
        """Bytes available to this process on the root's filesystem."""
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def check_space(self, needed: int = 0) -> None:
        """Raise :class:`StorageFull` if writing ``needed`` bytes would leave less than
        ``min_free_bytes`` free: the server then refuses result data (the agents keep their
        spool) until space returns, instead of filling the disk its datastore shares."""
        free = self.free_bytes()
        if free - needed < self.min_free_bytes:
            raise StorageFull(
                f"filestore {self.root} is full: {free} bytes free, {needed} needed, "
                f"{self.min_free_bytes} kept in reserve"
            )

    # -- layout ---------------------------------------------------------------------------------

    def flow_dir(self, client_id: str, flow_id: str) -> Path:
        """``<root>/clients/<client_id>/flows/<flow_id>`` (ids validated; not created)."""
        check_id(client_id, CLIENT_ID_RE, "client id")
        check_id(flow_id, FLOW_ID_RE, "flow id")
        return self.root / "clients" / client_id / "flows" / flow_id

    def _ensure(self, directory: Path, batch: DurableBatch | None = None) -> Path:
        make_dirs(self.root, directory, batch)
        return directory

    def _ensure_in_flow(self, client_id: str, directory: Path, batch: DurableBatch | None) -> None:
        """Make a folder of one of the client's flows, from the deepest folder known to
        exist: the client's ``flows`` once one of its flows was written here, else
        ``clients`` (a hunt's new flows: a ``mkdir`` per folder made, nothing more)."""
        clients = self.root / "clients"
        known = clients / client_id / "flows" if client_id in self._clients_seen else clients
        make_dirs(self.root, directory, batch, known=known)
        if len(self._clients_seen) >= KNOWN_CLIENTS:
            self._clients_seen.clear()  # only a hint
        self._clients_seen.add(client_id)

    def batch(self) -> DurableBatch:
        """A batch of appends made durable together by its ``commit()`` (two sync rounds for
        all of them: see ``durable.py``); pass it as ``batch=`` and ``close()`` it after."""
        return DurableBatch(self.root)

    def _result_set(self, client_id: str, flow_id: str, artifact: str, source: str) -> RowLog:
        results = self.flow_dir(client_id, flow_id) / "results"
        return RowLog(results / result_set_name(artifact, source), self.check_space)

    def _logs(self, client_id: str, flow_id: str) -> RowLog:
        return RowLog(self.flow_dir(client_id, flow_id) / "logs", self.check_space)

    # -- result sets ----------------------------------------------------------------------------

    def append_rows(
        self,
        client_id: str,
        flow_id: str,
        artifact: str,
        source: str,
        seq: int,
        columns: list[str],
        rows: list[list[Any]],
        batch: DurableBatch | None = None,
    ) -> int:
        """Store one batch of rows durably; returns bytes written, 0 if ``seq`` is a duplicate.

        Raises :class:`StorageFull` (nothing stored) when there is no room, ``ValueError`` for
        a row whose width is not the number of columns. With a ``batch``, durable and visible
        once the batch commits.
        """
        keys = _unique_columns(columns)
        width = len(keys)
        for number, row in enumerate(rows):
            if len(row) != width:
                raise ValueError(f"row {number} has {len(row)} values for {width} columns")
        log = self._result_set(client_id, flow_id, artifact, source)
        if batch is None and seq <= log.meta()["last_seq"]:
            return 0  # cheap duplicate answer without encoding; append() re-checks under lock
        records = [row_record(keys, row) for row in rows]

        def describe(meta: dict[str, Any]) -> None:
            known = list(meta.get("columns", []))
            known.extend(key for key in keys if key not in known)
            meta.update(artifact=artifact, source=source, columns=known)

        self._ensure_in_flow(client_id, log.data_path.parent, batch)
        return self._space_checked(lambda: log.append(seq, records, describe, batch))

    def read_rows(
        self,
        client_id: str,
        flow_id: str,
        artifact: str,
        source: str,
        offset: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """A page of committed rows (column -> value), found through the row index."""
        log = self._result_set(client_id, flow_id, artifact, source)
        if not log.meta_path.exists():
            return []
        return log.read(offset, limit)

    def row_count(self, client_id: str, flow_id: str, artifact: str, source: str) -> int:
        return self._result_set(client_id, flow_id, artifact, source).rows()

    def columns(self, client_id: str, flow_id: str, artifact: str, source: str) -> list[str]:
        """Every column name seen in the result set, in first-seen order."""
        meta = self._result_set(client_id, flow_id, artifact, source).meta()
        return list(meta.get("columns", []))

    def result_sets(self, client_id: str, flow_id: str) -> list[tuple[str, str, int]]:
        """``(artifact, source, rows)`` of every result set with committed rows, sorted."""
        results = self.flow_dir(client_id, flow_id) / "results"
        found: list[tuple[str, str, int]] = []
        with contextlib.suppress(FileNotFoundError):
            for meta_path in results.glob("*.meta"):
                meta = read_json(meta_path)
                if meta is not None:
                    found.append((meta["artifact"], meta["source"], int(meta["rows"])))
        return sorted(found)

    # -- logs -----------------------------------------------------------------------------------

    def append_logs(
        self,
        client_id: str,
        flow_id: str,
        seq: int,
        entries: list[dict[str, Any]],
        batch: DurableBatch | None = None,
    ) -> int:
        """Store a batch of log entries; same idempotency and errors as :meth:`append_rows`."""
        log = self._logs(client_id, flow_id)
        records: list[dict[str, Any]] = []
        for number, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(f"log entry {number} is not a mapping")
            records.append(tag_record({str(k): v for k, v in entry.items()}))
        self._ensure_in_flow(client_id, log.data_path.parent, batch)
        return self._space_checked(lambda: log.append(seq, records, batch=batch))

    def read_logs(
        self, client_id: str, flow_id: str, offset: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        log = self._logs(client_id, flow_id)
        if not log.meta_path.exists():
            return []
        return log.read(offset, limit)

    def log_count(self, client_id: str, flow_id: str) -> int:
        return self._logs(client_id, flow_id).rows()

    # -- uploads --------------------------------------------------------------------------------

    def _upload_paths(self, client_id: str, flow_id: str, upload_id: str) -> tuple[Path, ...]:
        check_id(upload_id, UPLOAD_ID_RE, "upload id")
        flow = self.flow_dir(client_id, flow_id)
        return (
            flow / "uploads.partial" / f"{upload_id}.part",
            flow / "uploads.partial" / f"{upload_id}.json",
            flow / "uploads.records" / f"{upload_id}.json",
        )

    @contextlib.contextmanager
    def _uploads_lock(self, client_id: str, flow_id: str) -> Iterator[None]:
        """Serialises starting and finishing uploads in one flow (threads and processes)."""
        flow = self._ensure(self.flow_dir(client_id, flow_id))
        fd = os.open(flow / ".uploads.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _record(self, record_path: Path) -> UploadRecord | None:
        data = read_json(record_path)
        return None if data is None else UploadRecord.from_json(data)

    def upload_offset(self, client_id: str, flow_id: str, upload_id: str) -> int:
        """Bytes of the upload already stored: where the agent resumes (its size if finished)."""
        part, _, record_path = self._upload_paths(client_id, flow_id, upload_id)
        record = self._record(record_path)
        if record is not None:
            return record.size
        try:
            return part.stat().st_size
        except FileNotFoundError:
            return 0

    def start_upload(
        self, client_id: str, flow_id: str, upload_id: str, path: str, size: int, sha256: str
    ) -> int:
        """Record what the agent is about to send; returns the offset to resume from.

        Starting again (after a disconnect) keeps the bytes already stored, unless the declared
        size or hash changed (the file changed on the agent): then it starts over at 0.
        """
        part, partial_meta, record_path = self._upload_paths(client_id, flow_id, upload_id)
        sha256 = sha256.lower()
        if _SHA256_RE.fullmatch(sha256) is None:
            raise ValueError(f"upload {upload_id}: {sha256!r} is not a SHA-256 hex digest")
        if size < 0:
            raise ValueError(f"upload {upload_id}: negative size {size}")
        with self._uploads_lock(client_id, flow_id):
            record = self._record(record_path)
            if record is not None:
                if (record.size, record.sha256) != (size, sha256):
                    raise ValueError(f"upload {upload_id} already finished with other content")
                return record.size
            declared = {"upload_id": upload_id, "path": path, "size": size, "sha256": sha256}
            existing = read_json(partial_meta)
            if existing is not None and part.exists():
                same = all(existing.get(k) == v for k, v in declared.items())
                if same:
                    return part.stat().st_size
            self.check_space(size)
            self._ensure(part.parent)

            def begin() -> None:
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
                os.close(fd)
                write_atomic(partial_meta, json.dumps(declared).encode())

            self._space_checked(begin)
            return 0

    def write_chunk(
        self, client_id: str, flow_id: str, upload_id: str, offset: int, data: bytes
    ) -> int:
        """Append ``data`` if ``offset`` is exactly the stored length; returns the new length.

        A chunk at any other offset (a resend, or one out of order) is ignored and the current
        length returned, which is where the agent must continue. Durable (fsync) on return.
        """
        part, partial_meta, record_path = self._upload_paths(client_id, flow_id, upload_id)
        record = self._record(record_path)
        if record is not None:
            return record.size
        declared = read_json(partial_meta)
        if declared is None:
            raise UnknownUpload(f"upload {upload_id} of flow {flow_id} was not started")
        try:
            fd = os.open(part, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise UnknownUpload(f"upload {upload_id} of flow {flow_id} was not started") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            length = os.fstat(fd).st_size
            if offset != length or not data:
                return length
            if offset + len(data) > int(declared["size"]):
                raise ValueError(
                    f"upload {upload_id}: chunk ends at {offset + len(data)}, past the declared "
                    f"size {declared['size']}"
                )
            self.check_space(len(data))
            try:
                write_all(fd, data, offset)
                os.fsync(fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, length)
                if is_space_error(exc):
                    raise StorageFull(f"filestore full while storing an upload: {exc}") from exc
                raise
            return offset + len(data)
        finally:
            os.close(fd)

    def finish_upload(self, client_id: str, flow_id: str, upload_id: str) -> UploadRecord:
        """Verify size and SHA-256, then move the file under ``uploads/`` (idempotent).

        Raises :class:`UploadCorrupt` on a mismatch (the data is moved to ``uploads.corrupt``
        and the upload can start over).
        """
        part, partial_meta, record_path = self._upload_paths(client_id, flow_id, upload_id)
        with self._uploads_lock(client_id, flow_id):
            record = self._record(record_path)
            if record is not None:
                return record
            declared = read_json(partial_meta)
            if declared is None:
                raise UnknownUpload(f"upload {upload_id} of flow {flow_id} was not started")
            uploads_dir = self.flow_dir(client_id, flow_id) / "uploads"
            stored = declared.get("stored_name")
            if part.exists():
                self._verify(part, partial_meta, declared)
                destination = place(uploads_dir, str(declared["path"]))
                stored = destination.relative_to(uploads_dir).as_posix()
                # Write down the destination before moving, so a crash in between is resumable.
                self._space_checked(
                    lambda: write_atomic(
                        partial_meta, json.dumps({**declared, "stored_name": stored}).encode()
                    )
                )
                part.replace(destination)
                fsync_dir(destination.parent)
            elif stored is None or not (uploads_dir / stored).is_file():
                raise UnknownUpload(f"upload {upload_id} of flow {flow_id} has no data")
            record = UploadRecord(
                upload_id=upload_id,
                path=str(declared["path"]),
                stored_name=str(stored),
                size=int(declared["size"]),
                sha256=str(declared["sha256"]),
                finished=time.time(),
            )
            self._ensure(record_path.parent)
            self._space_checked(
                lambda: write_atomic(record_path, json.dumps(record.to_json()).encode())
            )
            partial_meta.unlink()
            fsync_dir(partial_meta.parent)
            return record

    def _verify(self, part: Path, partial_meta: Path, declared: dict[str, Any]) -> None:
        digest = hashlib.sha256()
        size = 0
        with open(part, "rb") as handle:
            while block := handle.read(_HASH_BLOCK):
                digest.update(block)
                size += len(block)
        problem = None
        if size != declared["size"]:
            problem = f"{size} bytes received, {declared['size']} declared"
        elif digest.hexdigest() != declared["sha256"]:
            problem = f"SHA-256 {digest.hexdigest()} received, {declared['sha256']} declared"
        if problem is None:
            return
        corrupt = self._ensure(part.parent.parent / "uploads.corrupt")
        aside = corrupt / f"{declared['upload_id']}.{time.time_ns()}"
        part.replace(aside.with_name(aside.name + ".part"))
        partial_meta.replace(aside.with_name(aside.name + ".json"))
        fsync_dir(corrupt)
        fsync_dir(part.parent)
        raise UploadCorrupt(f"upload {declared['upload_id']} ({declared['path']}): {problem}")

    def uploads(self, client_id: str, flow_id: str) -> list[UploadRecord]:
        """Every finished upload of the flow, oldest first."""
        records_dir = self.flow_dir(client_id, flow_id) / "uploads.records"
        found: list[UploadRecord] = []
        try:  # asked at every flow's end: most have no uploads, and no folder
            names = os.listdir(records_dir)  # noqa: PTH208 (names, no Path per entry)
        except FileNotFoundError:
            return found
        for name in names:
            if name.endswith(".json"):
                record = self._record(records_dir / name)
                if record is not None:
                    found.append(record)
        return sorted(found, key=lambda r: (r.finished, r.upload_id))

    def open_upload(self, client_id: str, flow_id: str, stored_name: str) -> BinaryIO:
        """Open a finished upload for reading; ``stored_name`` must stay inside ``uploads/``."""
        uploads_dir = (self.flow_dir(client_id, flow_id) / "uploads").resolve()
        target = (uploads_dir / stored_name).resolve()
        if not target.is_relative_to(uploads_dir) or target == uploads_dir:
            raise ValueError(f"{stored_name!r} is not inside the flow's uploads")
        if not target.is_file():
            raise FileNotFoundError(f"no upload {stored_name!r} in flow {flow_id}")
        return open(target, "rb")

    # -- deletion -------------------------------------------------------------------------------

    def remove_flows(self, client_id: str, flow_ids: list[str]) -> int:
        """Delete these flows' files (a deleted client's), then the client's folders if nothing
        else is left in them; returns the bytes freed. Only the flows named go: a client that
        enrolls again at once may already be writing a new flow beside them."""
        freed = 0
        for flow_id in flow_ids:
            directory = self.flow_dir(client_id, flow_id)
            freed += _tree_size(directory)
            shutil.rmtree(directory, ignore_errors=True)
        self._clients_seen.discard(client_id)
        client_dir = self.root / "clients" / client_id
        for empty in (client_dir / "flows", client_dir):
            with contextlib.suppress(OSError):  # missing, or not empty: kept
                empty.rmdir()
        return freed

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _space_checked(write: Callable[[], _T]) -> _T:
        """Run a write, turning ENOSPC/EDQUOT into :class:`StorageFull`."""
        try:
            return write()
        except OSError as exc:
            if is_space_error(exc):
                raise StorageFull(f"filestore full: {exc}") from exc
            raise


def _tree_size(directory: Path) -> int:
    """Bytes in the files under ``directory`` (0 if it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total
