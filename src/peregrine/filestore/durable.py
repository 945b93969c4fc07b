"""Many appends made durable together: two sync rounds for a whole batch, not ~5 fsyncs each.

A hunt's answers arrive as thousands of first result batches of new flows at once. Stored one by
one, each costs five ``fsync`` calls (its new folders, the data, the commit record and its folder),
and on a disk whose ``fsync`` takes milliseconds that alone bounds the fan-out. A
:class:`DurableBatch` defers them: appends in a batch write their data and create their
folders without syncing, keep their result set's lock, and leave their commit record pending;
:meth:`DurableBatch.commit` then

1. writes every pending commit record to its temporary file,
2. syncs once (round 1: the data, the index entries, the new folders, the temporary records),
3. renames every temporary record over its commit record,
4. syncs once more (round 2: the renames),

and only then returns, so the caller may acknowledge. The order per result set is the one a
single append keeps: its data is durable before its commit record can be, so a crash at any
point leaves each result set at its old or its new commit, never at a record pointing to data
that was lost. A sync is one ``syncfs`` of the filestore's filesystem where the kernel reports
writeback errors through it (Linux 5.8 and later), else an ``fsync`` of every file and folder
written, in the same two rounds.

The batch holds its result sets' ``flock`` locks until it commits. An append that would wait for a
lock someone else holds commits the batch first (it then holds none), so two batches in
different threads or processes can never wait for each other.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peregrine.libc import libc_function

from .errors import StorageFull, is_space_error


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = platform.release().split(".")
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (IndexError, ValueError):
        return False


def _load_syncfs() -> Any:
    """libc's ``syncfs``, where it reports writeback errors (Linux >= 5.8); else None."""
    if platform.system() != "Linux" or not _kernel_at_least(5, 8):
        return None
    return libc_function("syncfs", [ctypes.c_int], use_errno=True)


_SYNCFS = _load_syncfs()


@dataclass(slots=True)
class PendingCommit:
    """A result set written in a batch whose commit record is not yet replaced."""

    fd: int  # the data file, locked (flock) until the batch commits
    meta_path: Path
    meta: dict[str, Any]  # the commit record to write
    committed_length: int  # the last commit's data length and rows: what a failure restores
    committed_rows: int
    index_path: Path | None = None  # set when this batch wrote index entries
    index_size: int = 0


@dataclass
class DurableBatch:
    """Appends made durable by one :meth:`commit` (see the module docstring). One thread."""

    root: Path
    use_syncfs: bool = field(default=_SYNCFS is not None)
    _pending: dict[Path, PendingCommit] = field(default_factory=dict)
    _new_dirs: set[str] = field(default_factory=set)
    _root_fd: int | None = None
    #: How many sync rounds this batch ran (two per commit with something pending).
    syncs: int = 0
    #: The first commit that failed: nothing written in the batch before it may be
    #: acknowledged, even when a later commit succeeds.
    failed: BaseException | None = None

    def __post_init__(self) -> None:
        # Opened first: syncfs reports the writeback errors since this descriptor was opened.
        self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def pending(self, data_path: Path) -> PendingCommit | None:
        return self._pending.get(data_path)

    def add(self, data_path: Path, commit: PendingCommit) -> None:
        self._pending[data_path] = commit

    def created_dir(self, directory: str | Path) -> None:
        """A folder made in this batch: its entry in its parent is synced with the batch
        (kept as text: a hunt's batch makes thousands, and hashing a ``Path`` costs more)."""
        self._new_dirs.add(os.path.dirname(directory))  # noqa: PTH120 (see above)

    def commit(self) -> None:
        """Make everything written in the batch durable, then release its locks.

        On an error nothing is acknowledged: before the renames, every result set is cut back
        to its last commit; after them, a resend is answered as a duplicate. ENOSPC and EDQUOT
        become :class:`StorageFull`.
        """
        pending, self._pending = self._pending, {}
        new_dirs, self._new_dirs = self._new_dirs, set()
        if not pending and not new_dirs:
            return
        renamed = False
        try:
            for item in pending.values():
                _write_file(_temporary(item.meta_path), _encode(item.meta))
            self._sync(pending.values(), new_dirs, first=True)
            for item in pending.values():
                _temporary(item.meta_path).replace(item.meta_path)
                renamed = True
            self._sync(pending.values(), set(), first=False)
        except OSError as exc:
            if not renamed:
                _roll_back(pending.values())
            if is_space_error(exc):
                full = StorageFull(f"filestore full while committing a batch: {exc}")
                self.failed = self.failed or full
                raise full from exc
            self.failed = self.failed or exc
            raise
        finally:
            for item in pending.values():
                with contextlib.suppress(OSError):
                    os.close(item.fd)  # releases the flock

    def close(self) -> None:
        """Drop what was never committed (cut back to the last commit) and the root's fd."""
        _roll_back(self._pending.values())
        for item in self._pending.values():
            with contextlib.suppress(OSError):
                os.close(item.fd)
        self._pending.clear()
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    def _sync(self, pending: Any, new_dirs: set[str], *, first: bool) -> None:
        self.syncs += 1
        if self.use_syncfs and self._root_fd is not None:
            if _SYNCFS(self._root_fd) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, os.strerror(errno))
            return
        folders = {Path(folder) for folder in new_dirs}
        for item in pending:
            folders.add(item.meta_path.parent)
            if first:
                os.fsync(item.fd)
                if item.index_path is not None:
                    _fsync_path(item.index_path)
                _fsync_path(_temporary(item.meta_path))
        for folder in sorted(folders, key=lambda p: len(p.parts)):
            _fsync_path(folder)


def _temporary(meta_path: Path) -> Path:
    return meta_path.with_name(meta_path.name + ".tmp")


def _encode(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta).encode()


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _roll_back(pending: Any) -> None:
    """Cut data and index files back to their last commit (shrinking needs no free space)."""
    for item in pending:
        with contextlib.suppress(OSError):
            os.ftruncate(item.fd, item.committed_length)
        if item.index_path is not None:
            with contextlib.suppress(OSError):
                os.truncate(item.index_path, item.index_size)
        with contextlib.suppress(OSError):
            _temporary(item.meta_path).unlink()
