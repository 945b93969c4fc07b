"""The audit log: every state-changing action, in the datastore and as JSON lines for a SIEM.

The datastore copy is what the API and CLI query. The file copy is for shipping: one JSON object
a line, appended and written with one ``write`` per line (so a shipper tailing it never sees half
a line), under a lock shared by this process's threads and an ``flock`` shared with other
processes (the server and ``peregrine users`` may write at once). The file is created owner-only.
When log rotation renames it, the next line goes to a new file at the configured path.

Parameters whose names look secret (password, token, secret...) are replaced by ``"***"`` before
they are stored anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from peregrine.datastore import AUDIT_RESULTS, AuditEntry, AuditStore

from .accounts import Principal

if TYPE_CHECKING:
    from peregrine.datastore.group_commit import GroupCommitter

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the thread lock alone
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: ``area.verb``: lower case words joined by dots, e.g. ``collection.create``, ``user.grant``.
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_SECRET_KEY = re.compile(r"password|passwd|secret|token|session_id|cookie|api_key", re.I)
#: Keys that name a token without being one.
_NOT_SECRET = frozenset({"token_id", "token_name"})
REDACTED = "***"


def default_audit_path(data_dir: str | os.PathLike[str]) -> Path:
    """Where the server and ``peregrine users`` write the audit file: ``<data_dir>/audit.jsonl``."""
    return Path(data_dir) / "audit.jsonl"


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-looking keys' values replaced, at any depth."""
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED
            if _SECRET_KEY.search(str(key)) and str(key) not in _NOT_SECRET
            else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def entry_json(entry: AuditEntry) -> str:
    """One entry as the file's JSON object (no newline)."""
    stamp = datetime.datetime.fromtimestamp(entry.time, datetime.UTC)
    return json.dumps(
        {
            "audit_id": entry.audit_id or None,
            "time": entry.time,
            "timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "actor": entry.actor,
            "credential": entry.credential,
            "address": entry.address,
            "action": entry.action,
            "target": entry.target,
            "parameters": entry.parameters,
            "result": entry.result,
            "reason": entry.reason,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )


class AuditLog:
    """Record actions to the datastore and, when ``path`` is given, to a JSON-lines file."""

    def __init__(
        self,
        store: AuditStore,
        path: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = None

    def record(
        self,
        actor: str | Principal,
        action: str,
        *,
        target: str | None = None,
        address: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        result: str = "ok",
        reason: str | None = None,
    ) -> AuditEntry:
        """Record one action. ``actor`` is a Principal or a name (``local:root``, ``system``).

        The file gets the line even when the datastore fails (with ``audit_id`` null); then
        the datastore's error is raised. A file that cannot be written is logged, not raised:
        the datastore copy is the record of truth.
        """
        entry = self._entry(actor, action, target, address, parameters, result, reason)
        try:
            stored = self._add(entry)
        except Exception:
            self._write(entry)
            raise
        self._write(stored)
        return stored

    async def record_grouped(
        self,
        group: GroupCommitter,
        actor: str | Principal,
        action: str,
        *,
        target: str | None = None,
        address: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        result: str = "ok",
        reason: str | None = None,
    ) -> AuditEntry:
        """``record`` with the row written in the datastore's group commit: under a flood of
        requests, their records cost one synced commit together instead of one each (and do
        not queue on the default thread pool)."""
        entry = self._entry(actor, action, target, address, parameters, result, reason)
        try:
            stored = await group.run(self._add, entry)
        except Exception:
            await asyncio.to_thread(self._write, entry)
            raise
        await asyncio.to_thread(self._write, stored)
        return stored

    def _entry(
        self,
        actor: str | Principal,
        action: str,
        target: str | None,
        address: str | None,
        parameters: Mapping[str, Any] | None,
        result: str,
        reason: str | None,
    ) -> AuditEntry:
        """The entry to store (no id yet): checked, secrets redacted, timestamped."""
        if not _ACTION.fullmatch(action) or len(action) > 64:
            raise ValueError(f"audit action {action!r} must look like 'area.verb' (lower case)")
        if result not in AUDIT_RESULTS:
            raise ValueError(f"audit result must be one of {', '.join(AUDIT_RESULTS)}")
        if isinstance(actor, Principal):
            name, credential = actor.name, actor.credential
        else:
            name, credential = actor, None
        clean = redact(dict(parameters or {}))
        return AuditEntry(
            0, self._clock(), name, action, target, address, clean, result, reason, credential
        )

    def _add(self, entry: AuditEntry) -> AuditEntry:
        return self._store.add(
            entry.time,
            entry.actor,
            entry.action,
            target=entry.target,
            address=entry.address,
            parameters=entry.parameters,
            result=entry.result,
            reason=entry.reason,
            credential=entry.credential,
        )

    def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        result: str | None = None,
        before: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """A page of entries, newest first (see ``AuditStore.query`` for the filters)."""
        return self._store.query(
            since=since,
            until=until,
            actor=actor,
            action=action,
            target=target,
            result=result,
            before=before,
            limit=limit,
            offset=offset,
        )

    def count(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        result: str | None = None,
    ) -> int:
        """How many entries match."""
        return self._store.count(
            since=since, until=until, actor=actor, action=action, target=target, result=result
        )

    # -- the file ------------------------------------------------------------------------------

    def _write(self, entry: AuditEntry) -> None:
        if self.path is None:
            return
        data = (entry_json(entry) + "\n").encode()
        with self._lock:
            try:
                fd = self._open()
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError as exc:
                log.error("cannot write the audit file %s: %s", self.path, exc)
                self._close_fd()

    def _open(self) -> int:
        """The file's descriptor, reopened when rotation replaced or removed the file."""
        assert self.path is not None
        if self._fd is not None:
            try:
                on_disk = self.path.stat()
                mine = os.fstat(self._fd)
                if (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino):
                    return self._fd
            except FileNotFoundError:
                pass
            self._close_fd()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        info = os.fstat(fd)
        if info.st_mode & 0o077 and hasattr(os, "geteuid") and info.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
        self._fd = fd
        return fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Close the file (the next record reopens it)."""
        with self._lock:
            self._close_fd()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
