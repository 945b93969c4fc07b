"""An append-only JSONL file with a row index and a commit record: the storage of result sets
and flow logs.

Three files share a stem:

``<stem>.jsonl``
    One JSON object per line (UTF-8, ``\\n``-terminated). ``bytes`` values are written as
    ``{"$bytes": "<base64>"}``; a stored dict that would look like a tag (its only key is
    ``$bytes`` or ``$literal``) is wrapped as ``{"$literal": {...}}``, so every value
    round-trips. NaN and infinities become ``null`` (JSON has no such numbers).
``<stem>.idx``
    Fixed-width binary: little-endian unsigned 64-bit byte offsets into the ``.jsonl`` of rows
    0, 1000, 2000, ... (``INDEX_EVERY``), so reading any page seeks to the nearest entry and
    skips fewer than 1000 lines: no full scan. Entry 0 is always 0 and need not be on disk: a
    set of fewer than 1000 rows has no index file (one ``fsync`` less for small answers).
``<stem>.meta``
    JSON, replaced atomically (temporary file, fsync, rename, directory fsync): the commit
    record. ``last_seq`` (the highest agent batch stored), ``length`` (committed bytes of the
    ``.jsonl``), ``rows``, plus what the owner adds (artifact, source, columns).

Only what ``.meta`` records exists. Bytes past ``length`` (a crash mid-write) are cut off before
the next append, index entries past ``rows`` by the next append that adds one; readers never
look past the snapshot of ``.meta`` they read, so they need no lock. Writers take an ``flock`` on
the data file, which excludes other threads and other processes (several frontends on a shared
filestore).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from .durable import DurableBatch, PendingCommit
from .errors import StorageFull, is_space_error

INDEX_EVERY = 1000
FORMAT = "peregrine-jsonl/1"
_ENTRY = struct.Struct("<Q")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
_TAGS = ("$bytes", "$literal")


def _tag(value: Any) -> Any:
    """Make a value JSON-safe without losing bytes (see the module docstring)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or value is None or kind is bool:
        return value
    if kind is bytes or kind is bytearray or kind is memoryview:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        tagged = {key: _tag(item) for key, item in value.items()}
        if len(tagged) == 1 and next(iter(tagged)) in _TAGS:
            return {"$literal": tagged}
        return tagged
    if isinstance(value, list | tuple):
        return [_tag(item) for item in value]
    return value


def _untag(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        if len(value) == 1:
            key, inner = next(iter(value.items()))
            if key == "$bytes" and type(inner) is str:
                return base64.b64decode(inner)
            if key == "$literal" and type(inner) is dict:
                return {k: _untag(v) for k, v in inner.items()}
        return {k: _untag(v) for k, v in value.items()}
    if kind is list:
        return [_untag(item) for item in value]
    return value


def tag_record(record: dict[str, Any]) -> dict[str, Any]:
    """Tag a record's values; the top level is a plain dict (column -> value)."""
    return {key: _tag(value) for key, value in record.items()}


#: Types JSON stores as they are: a row made only of these needs no tagging.
_PLAIN = frozenset({str, int, float, bool, type(None)})


def row_record(keys: list[str], row: list[Any]) -> dict[str, Any]:
    """A row as a record (column -> value), tagged only when it holds bytes or containers;
    the type check runs in C (``issuperset`` over ``map(type, row)``), the common case is fast."""
    if _PLAIN.issuperset(map(type, row)):
        return dict(zip(keys, row, strict=True))
    return {key: _tag(value) for key, value in zip(keys, row, strict=True)}


def untag_record(record: dict[str, Any]) -> dict[str, Any]:
    return {key: _untag(value) for key, value in record.items()}


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old or the new content, never a mix.

    The temporary file is removed if anything fails before the rename. The caller fsyncs the
    directory (:func:`fsync_dir`) to make the rename itself durable.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            write_all(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """:func:`replace_atomic` then make the rename durable."""
    replace_atomic(path, data)
    fsync_dir(path.parent)


def write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    data: dict[str, Any] = json.loads(raw)
    return data


class RowLog:
    """One result set (or a flow's log): idempotent appends by ``seq``, paged reads."""

    def __init__(self, stem: Path, check_space: Callable[[int], None]) -> None:
        self.data_path = stem.with_name(stem.name + ".jsonl")
        self.index_path = stem.with_name(stem.name + ".idx")
        self.meta_path = stem.with_name(stem.name + ".meta")
        self._check_space = check_space

    def meta(self) -> dict[str, Any]:
        """The committed state (all zero if nothing was ever committed)."""
        meta = read_json(self.meta_path)
        if meta is None:
            return {"format": FORMAT, "last_seq": 0, "length": 0, "rows": 0}
        return meta

    def rows(self) -> int:
        return int(self.meta()["rows"])

    def append(
        self,
        seq: int,
        records: list[dict[str, Any]],
        describe: Callable[[dict[str, Any]], None] | None = None,
        batch: DurableBatch | None = None,
    ) -> int:
        """Store ``records`` as batch ``seq`` unless a batch ``>= seq`` is already committed.

        Returns the bytes written (0 for a duplicate). ``describe`` may add fields to the new
        commit record. On ENOSPC/EDQUOT the committed state is left exactly as it was and
        :class:`StorageFull` is raised. With a ``batch``, the append is durable (and visible)
        only once ``batch.commit()`` returns (see ``durable.py``).
        """
        pending = batch.pending(self.data_path) if batch is not None else None
        if seq <= (pending.meta if pending is not None else self.meta())["last_seq"]:
            return 0  # answered even when the disk is full, so the server can ack it again
        payload = _encoder.encode_lines(records)
        # Checked before any file is created, so a refused batch leaves no trace at all.
        self._check_space(len(payload) + 4096)
        if batch is not None:
            return self._append_in_batch(batch, pending, seq, records, payload, describe)
        fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            meta = self.meta()  # again, under the lock: another writer may have committed
            if seq <= meta["last_seq"]:
                return 0
            new_meta, entries = self._next_meta(meta, seq, records, payload, describe)
            self._commit(fd, int(meta["length"]), int(meta["rows"]), payload, entries, new_meta)
            return len(payload)
        finally:
            os.close(fd)  # also releases the flock

    def _next_meta(
        self,
        meta: dict[str, Any],
        seq: int,
        records: list[dict[str, Any]],
        payload: bytes,
        describe: Callable[[dict[str, Any]], None] | None,
    ) -> tuple[dict[str, Any], list[int]]:
        """The commit record after appending ``payload``, and its new index entries."""
        length, rows = int(meta["length"]), int(meta["rows"])
        new_meta = {
            **meta,
            "format": FORMAT,
            "last_seq": seq,
            "length": length + len(payload),
            "rows": rows + len(records),
            "index_every": INDEX_EVERY,
        }
        if describe is not None:
            describe(new_meta)
        return new_meta, _index_entries(payload, rows, length)

    def _append_in_batch(
        self,
        batch: DurableBatch,
        pending: PendingCommit | None,
        seq: int,
        records: list[dict[str, Any]],
        payload: bytes,
        describe: Callable[[dict[str, Any]], None] | None,
    ) -> int:
        """Write data and index now, the commit record when the batch commits."""
        if pending is None:
            fd = self._lock_for_batch(batch)
            meta = self.meta()  # under the lock
            if seq <= meta["last_seq"]:
                os.close(fd)
                return 0
            pending = PendingCommit(
                fd, self.meta_path, meta, int(meta["length"]), int(meta["rows"]),
                index_size=_entries_for(int(meta["rows"])) * _ENTRY.size,
            )  # fmt: skip
            batch.add(self.data_path, pending)
        meta = pending.meta
        length, rows = int(meta["length"]), int(meta["rows"])
        new_meta, entries = self._next_meta(meta, seq, records, payload, describe)
        try:
            if os.fstat(pending.fd).st_size != length:
                os.ftruncate(pending.fd, length)  # a crash left a partial batch: it never happened
            write_all(pending.fd, payload, length)
            if entries and entries != [0]:
                pending.index_path = self.index_path
                self._write_index(_entries_for(rows) * _ENTRY.size, entries, sync=False)
        except OSError as exc:
            os.ftruncate(pending.fd, length)
            if is_space_error(exc):
                raise StorageFull(
                    f"filestore full while writing {self.data_path.name}: {exc.strerror}"
                ) from exc
            raise
        pending.meta = new_meta
        return len(payload)

    def _lock_for_batch(self, batch: DurableBatch) -> int:
        """The data file, locked; if another writer holds it, the batch commits first, so it
        never waits for a lock while holding others (no deadlock between batches)."""
        fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                batch.commit()
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _write_index(self, index_size: int, entries: list[int], *, sync: bool) -> None:
        ifd = os.open(self.index_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            # Growing the file zero-fills, so an entry 0 never written reads as 0.
            os.ftruncate(ifd, index_size)
            write_all(ifd, b"".join(_ENTRY.pack(e) for e in entries), index_size)
            if sync:
                os.fsync(ifd)
        finally:
            os.close(ifd)

    def _commit(
        self,
        fd: int,
        length: int,
        rows: int,
        payload: bytes,
        entries: list[int],
        new_meta: dict[str, Any],
    ) -> None:
        index_size = _entries_for(rows) * _ENTRY.size
        committed = False
        try:
            if os.fstat(fd).st_size != length:
                os.ftruncate(fd, length)  # a crash left a partial batch: it never happened
            write_all(fd, payload, length)
            os.fsync(fd)
            # Only batches that add index entries touch the index (a sync saved per batch);
            # entry 0 is always offset 0, so a result set of one batch needs no index at all.
            if entries and entries != [0]:
                self._write_index(index_size, entries, sync=True)
            replace_atomic(self.meta_path, json.dumps(new_meta).encode())
            committed = True  # visible from here on: a later failure must not roll it back
            fsync_dir(self.meta_path.parent)
        except OSError as exc:
            if not committed:
                self._roll_back(fd, length, index_size)
                if is_space_error(exc):
                    raise StorageFull(
                        f"filestore full while writing {self.data_path.name}: {exc.strerror}"
                    ) from exc
            elif is_space_error(exc):
                # Committed but maybe not durable: do not ack; the resend is a duplicate.
                raise StorageFull(f"filestore full after committing: {exc.strerror}") from exc
            raise

    def _roll_back(self, fd: int, length: int, index_size: int) -> None:
        """Cut the files back to the committed state (shrinking needs no free space)."""
        with contextlib.suppress(OSError):
            os.ftruncate(fd, length)
        with contextlib.suppress(OSError):
            if self.index_path.exists():
                os.truncate(self.index_path, index_size)

    def read(self, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Records ``offset`` .. ``offset + limit - 1`` of the committed ones, via the index."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        rows = self.rows()
        if offset >= rows or limit == 0:
            return []
        count = min(limit, rows - offset)
        entry = offset // INDEX_EVERY
        start, skip = self._index_entry(entry), offset - entry * INDEX_EVERY
        if start is None:  # a missing index entry should not happen; fall back to a scan
            start, skip = 0, offset
        out: list[dict[str, Any]] = []
        with open(self.data_path, "rb") as handle:
            handle.seek(start)
            for _ in range(skip):
                handle.readline()
            for _ in range(count):
                out.append(untag_record(_decoder.decode(handle.readline())))
        return out

    def _index_entry(self, entry: int) -> int | None:
        if entry == 0:
            return 0  # not necessarily on disk: see _commit
        try:
            with open(self.index_path, "rb") as handle:
                handle.seek(entry * _ENTRY.size)
                raw = handle.read(_ENTRY.size)
        except FileNotFoundError:
            return None
        if len(raw) != _ENTRY.size:
            return None
        (value,) = _ENTRY.unpack(raw)
        return int(value)


def _entries_for(rows: int) -> int:
    """How many index entries ``rows`` committed rows have."""
    return (rows + INDEX_EVERY - 1) // INDEX_EVERY


def _index_entries(payload: bytes, rows: int, offset: int) -> list[int]:
    """Byte offsets of the rows in ``payload`` that get an index entry (every INDEX_EVERY-th
    row overall). JSON escapes newlines inside strings, so each ``\n`` ends exactly one row."""
    entries: list[int] = []
    count = payload.count(b"\n")
    if count == 0 or (rows % INDEX_EVERY and rows // INDEX_EVERY == (rows + count) // INDEX_EVERY):
        return entries  # no row of this batch starts an interval: no need to find rows
    position = 0
    row = rows
    end = len(payload)
    while position < end:
        if row % INDEX_EVERY == 0:
            entries.append(offset + position)
        position = payload.index(b"\n", position) + 1
        row += 1
    return entries
