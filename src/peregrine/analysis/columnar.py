"""A Parquet copy of a finished result set, beside its JSONL: what makes analysis fast.

Measured (``benchmarks/bench_analysis.py``, ``docs/benchmarks.md``): a stack count over a
10,000,000-row hunt takes 2.9 s from the JSONL files and 0.8 s from Parquet copies (a filtered
scan 3.5 s and 1.1 s) on a loaded 2-core machine. The copy is ``<stem>.<length>.parquet``:
``length`` is the committed byte length of the JSONL it was made from (``.meta``), so a copy is
current exactly when its name matches the result set's ``.meta``; rows that arrive later (a late
batch of a finished flow) make a new copy and the old one goes. The copy is made under a shared
``flock`` on the JSONL (writers take it exclusively), so it holds exactly the committed rows. It
lives in the flow's folder, so deleting a client's flows deletes it too.

Copies are made off the query path and off the event loop, by one background thread with a
bounded queue (``CopyMaker.schedule``): when a collection finishes (``finished_result_sets``,
from ``Services.flow_finished``; result sets of ``analysis.parquet_on_finish_rows`` rows or
more), and when a query reads the JSONL of a finished result set that has none yet (the next
query finds the copy).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from peregrine.filestore.rowlog import fsync_dir

log = logging.getLogger(__name__)

_SUFFIX = ".parquet"


def copy_path(stem: Path, length: int) -> Path:
    """Where the Parquet copy of the result set ``stem`` at committed ``length`` lives."""
    return stem.with_name(f"{stem.name}.{length}{_SUFFIX}")


def current_copy(stem: Path, length: int) -> Path | None:
    """The Parquet copy of exactly ``length`` committed bytes, if one was made."""
    path = copy_path(stem, length)
    return path if path.is_file() else None


def finished_result_sets(flow_dir: Path, min_rows: int = 1) -> list[Path]:
    """The stems of a flow's result sets holding at least ``min_rows`` rows (what a finished
    flow copies)."""
    from peregrine.filestore.rowlog import read_json

    stems: list[Path] = []
    for meta_path in sorted((flow_dir / "results").glob("*.meta")):
        meta = read_json(meta_path)
        if meta is not None and int(meta.get("rows", 0)) >= max(1, min_rows):
            stems.append(meta_path.with_suffix(""))
    return stems


def build(stem: Path, connection: Any | None = None) -> Path | None:
    """Make the Parquet copy of the result set ``stem`` (``<stem>.jsonl`` and ``.meta``).

    Returns its path, or None when the JSONL holds bytes past the commit record (a write in
    progress): it is tried again later. ``connection`` is a DuckDB connection to use (one is
    made otherwise).
    """
    from peregrine.filestore.rowlog import read_json

    data = stem.with_name(stem.name + ".jsonl")
    meta = read_json(stem.with_name(stem.name + ".meta"))
    if meta is None or int(meta.get("rows", 0)) == 0:
        return None
    fd = os.open(data, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # no writer can append while the copy is made
        meta = read_json(stem.with_name(stem.name + ".meta")) or meta
        length = int(meta["length"])
        if os.fstat(fd).st_size != length:
            return None  # a torn write the next append cuts off: copy after that
        target = copy_path(stem, length)
        if target.is_file():
            return target
        _convert(data, target, connection)
    finally:
        os.close(fd)
    for old in stem.parent.glob(f"{stem.name}.*{_SUFFIX}"):
        if old != target:
            with contextlib.suppress(OSError):
                old.unlink()
    return target


def _convert(data: Path, target: Path, connection: Any | None) -> None:
    import duckdb

    own = connection is None
    conn: Any = duckdb.connect(":memory:", config=_CONVERTER_CONFIG) if own else connection
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        # The whole file is read to choose types, so a value late in it cannot break the copy.
        relation = conn.read_json(str(data), format="newline_delimited", sample_size=-1)
        relation.write_parquet(str(tmp), compression="zstd")
        tmp.chmod(0o640)
        tmp.replace(target)
        fsync_dir(target.parent)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if own:
            conn.close()


_CONVERTER_CONFIG: dict[str, Any] = {
    "threads": 1,
    "memory_limit": "512MB",
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


class CopyMaker:
    """Makes Parquet copies in one background thread, each result set once at a time."""

    def __init__(self, max_waiting: int = 100_000) -> None:
        self._queue: queue.Queue[Path] = queue.Queue(max_waiting)
        self._waiting: set[Path] = set()
        self._failed: set[Path] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def schedule(self, stems: Iterable[Path]) -> int:
        """Queue result sets for copying; returns how many were queued (not already waiting,
        not failed before, room left)."""
        queued = 0
        with self._lock:
            for stem in stems:
                if stem in self._waiting or stem in self._failed:
                    continue
                try:
                    self._queue.put_nowait(stem)
                except queue.Full:
                    break
                self._waiting.add(stem)
                queued += 1
            if queued and self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="analysis-parquet", daemon=True
                )
                self._thread.start()
        return queued

    def wait(self) -> None:
        """Return once every queued copy is made (tests, the benchmark)."""
        self._queue.join()

    def _run(self) -> None:
        import duckdb

        connection: Any = None
        while True:
            stem = self._queue.get()
            try:
                if connection is None:
                    connection = duckdb.connect(":memory:", config=_CONVERTER_CONFIG)
                build(stem, connection)
            except Exception as exc:  # a result set DuckDB cannot read stays JSONL-only
                log.warning("no Parquet copy of %s: %s", stem.name, exc)
                with self._lock:
                    self._failed.add(stem)
            finally:
                with self._lock:
                    self._waiting.discard(stem)
                if self._queue.empty() and connection is not None:
                    connection.close()  # none held while idle (nor at interpreter exit)
                    connection = None
                self._queue.task_done()
