"""Event rows in the filestore: per client, per artifact, per day, with a retention period.

Layout (beside ``clients/``)::

    <root>/events/<client_id>/<artifact>__<hash>/<YYYY-MM-DD>.{jsonl,idx,meta}

Each day file is a ``RowLog`` (``rowlog.py``): the same durability, locking and row index as a
result set, and appends idempotent by ``seq`` — a stream's numbers grow, and a batch always goes
to the same day (the agent's time of the batch, which travels in the spooled message), so a
batch sent again is recognised and stored once. Each stored record is the row plus ``_seq`` (its
number in the client's stream of the artifact), ``_time`` (the agent's time of its batch) and
``_source``. A read over a time range opens only that range's days.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from .names import CLIENT_ID_RE, check_id, result_set_name
from .rowlog import RowLog, row_record
from .uploads import make_dirs

DAY = 86400.0
#: Records read from a day file at a time.
READ_PAGE = 1000


def day_of(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).date().isoformat()


def _days(start: float, end: float) -> list[str]:
    """The UTC days that ``[start, end)`` touches, oldest first."""
    first = datetime.fromtimestamp(max(start, 0.0), UTC).date()
    last = datetime.fromtimestamp(max(end, start, 0.0), UTC).date()
    out: list[str] = []
    while first <= last:
        out.append(first.isoformat())
        first += timedelta(days=1)
    return out


class EventFiles:
    """Durable, idempotent, time-partitioned storage of event rows (thread-safe)."""

    def __init__(
        self,
        filestore_root: Path,
        check_space: Callable[[int], None],
        retention_days: float = 30.0,
    ) -> None:
        self.base = filestore_root
        self.root = filestore_root / "events"
        self.check_space = check_space
        self.retention_days = retention_days

    def _artifact_dir(self, client_id: str, artifact: str) -> Path:
        check_id(client_id, CLIENT_ID_RE, "client id")
        return self.root / client_id / result_set_name(artifact, "")

    def _day(self, client_id: str, artifact: str, day: str) -> RowLog:
        return RowLog(self._artifact_dir(client_id, artifact) / day, self.check_space)

    def filed_under(self, when: float, now: float | None = None) -> str:
        """The day a batch of agent time ``when`` is stored under: that day, unless the agent's
        clock is off by more than the retention period back or a day ahead (then the nearest
        such day), so a wrong clock can neither write where expiry already ran nor fill years
        of folders."""
        now = time.time() if now is None else now
        return day_of(min(max(when, now - self.retention_days * DAY), now + DAY))

    def append(
        self,
        client_id: str,
        artifact: str,
        source: str,
        seq: int,
        when: float,
        columns: list[str],
        rows: list[list[Any]],
    ) -> tuple[str, int] | None:
        """Store a batch durably; where its rows are (the day file and the number of rows
        before them there), None if the batch was stored before.

        ``StorageFull`` when there is no room (nothing stored); ``ValueError`` for a row whose
        width is not the number of columns."""
        width = len(columns)
        for number, row in enumerate(rows):
            if len(row) != width:
                raise ValueError(f"event row {number} has {len(row)} values for {width} columns")
        directory = self._artifact_dir(client_id, artifact)
        day = self.filed_under(when)
        log = self._day(client_id, artifact, day)
        if seq <= log.meta()["last_seq"]:
            return None
        keys = [str(c) for c in columns]
        records = [
            {**row_record(keys, row), "_seq": seq + i, "_time": when, "_source": source}
            for i, row in enumerate(rows)
        ]
        make_dirs(self.base, directory)  # each new folder made durable

        before: list[int] = []

        def describe(meta: dict[str, Any]) -> None:  # called under the file's lock
            before.append(int(meta["rows"]) - len(records))
            meta.update(artifact=artifact, client_id=client_id)

        if not log.append(seq, records, describe):
            return None  # another writer stored it meanwhile
        return day, before[0]

    def read_day(
        self, client_id: str, artifact: str, day: str, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        """Rows ``offset`` .. ``offset + limit - 1`` of one day file (where ``append`` said a
        batch went)."""
        date.fromisoformat(day)  # a day, nothing else, names the file
        return self._day(client_id, artifact, day).read(offset, limit)

    def read(
        self,
        client_id: str,
        artifact: str,
        start: float,
        end: float,
        offset: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Events of ``[start, end)`` (agent time) in stored order, ``limit`` after ``offset``."""
        out: list[dict[str, Any]] = []
        for number, record in enumerate(self.iter_rows(client_id, artifact, start, end)):
            if number >= offset + limit:
                break
            if number >= offset:
                out.append(record)
        return out

    def iter_rows(
        self, client_id: str, artifact: str, start: float, end: float
    ) -> Iterator[dict[str, Any]]:
        """Every event of ``[start, end)``, reading only the days the range touches."""
        for day in _days(start, end):
            log = self._day(client_id, artifact, day)
            rows = log.rows()
            for page in range(0, rows, READ_PAGE):
                try:
                    records = log.read(page, READ_PAGE)
                except FileNotFoundError:
                    break  # expired while being read
                for record in records:
                    if start <= record.get("_time", 0.0) < end:
                        yield record

    def day_stems(
        self, client_id: str, artifact: str, start: float | None, end: float | None
    ) -> list[Path]:
        """The stems of the client's day files of ``artifact`` that ``[start, end)`` touches
        (None: open-ended), oldest first: for readers that scan the files themselves (the
        analysis engine's ``events()``). Only the folder is listed; no other day is opened."""
        first = day_of(start) if start is not None else ""
        last = day_of(end) if end is not None else "9999-12-31"
        folder = self._artifact_dir(client_id, artifact)
        days = sorted(meta.stem for meta in folder.glob("*.meta"))
        return [folder / day for day in days if first <= day <= last]

    def clients_of(self, artifact: str) -> list[str]:
        """The clients with a folder of ``artifact``'s events, sorted."""
        name = result_set_name(artifact, "")
        if not self.root.is_dir():
            return []
        return sorted(
            c.name
            for c in self.root.iterdir()
            if CLIENT_ID_RE.fullmatch(c.name) and (c / name).is_dir()
        )

    def artifacts(self, client_id: str) -> list[str]:
        """The artifacts the client has events of (from their day files' records)."""
        folder = self.root / check_id(client_id, CLIENT_ID_RE, "client id")
        names: set[str] = set()
        for meta in folder.glob("*/*.meta"):
            name = RowLog(meta.with_suffix(""), self.check_space).meta().get("artifact")
            if isinstance(name, str):
                names.add(name)
        return sorted(names)

    def remove_client(self, client_id: str) -> int:
        """Delete every event of a (deleted) client; the bytes freed."""
        folder = self.root / check_id(client_id, CLIENT_ID_RE, "client id")
        freed = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return freed

    def expire(self, now: float | None = None) -> int:
        """Delete the days wholly older than the retention period (plus a day, so no batch
        can be on its way into one); how many day files went."""
        now = time.time() if now is None else now
        cutoff = date.fromisoformat(day_of(now - (self.retention_days + 1) * DAY))
        removed = 0
        if not self.root.is_dir():
            return 0
        for meta in self.root.glob("*/*/*.meta"):
            try:
                day = date.fromisoformat(meta.stem)
            except ValueError:
                continue
            if day < cutoff:
                for suffix in (".jsonl", ".idx", ".meta"):
                    meta.with_suffix(suffix).unlink(missing_ok=True)
                removed += 1
        for folder in self.root.glob("*/*"):
            if folder.is_dir() and not any(folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)
        return removed
