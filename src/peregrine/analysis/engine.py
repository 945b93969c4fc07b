"""Run one analyst's SQL with DuckDB over collected results: ``AnalysisEngine.run``.

Each query gets a fresh in-memory DuckDB connection, set up in this order:

1. limits: threads, memory, a temporary folder of its own with a size cap; no extension is
   installed or loaded, Python objects are never scanned;
2. the query is parsed (``statement.py``): one SELECT; Peregrine's table functions and their
   literal arguments are found and the caller's permissions checked against them;
3. each ``flow``/``hunt`` call becomes a view over the resolved files (``resultsets.py``;
   paths bound as parameters, never pasted into SQL), and ``flow``/``hunt`` are table macros
   that pick the view by a hash of their arguments; ``clients()``, ``collections()`` and
   ``hunts()`` are tables read from the datastore, made only when the query uses them;
4. ``allowed_paths`` = exactly those files, then ``enable_external_access = false`` and
   ``lock_configuration = true``: from here no file, network or setting is reachable;
5. the query runs with a watchdog that, from its deadline on, interrupts it again and again
   until it stops, and rows are fetched batch by batch up to the row limit. DuckDB drops an
   interrupt that comes while no statement runs (Peregrine listing files, building views), so
   each step also checks the deadline itself: the time-out holds in every step.

``duckdb`` is imported only here, on the first query: the server starts without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from peregrine.auth.roles import ANALYZE, READ_RESULTS
from peregrine.datastore import Datastore
from peregrine.filestore import Filestore

from . import catalog
from .columnar import CopyMaker
from .errors import AnalysisError, NotPermitted, QueryFailed, QueryRefused, QueryTimedOut
from .event_tables import events_relation
from .limits import AnalysisLimits
from .resultsets import ResultFile, ResultSets
from .statement import TableCall, parse

#: What each table function needs beyond ANALYZE.
NEEDS: dict[str, str] = {
    "flow": READ_RESULTS,
    "hunt": READ_RESULTS,
    "clients": READ_RESULTS,
    "collections": READ_RESULTS,
    "hunts": READ_RESULTS,
    "events": READ_RESULTS,
}
BATCH_ROWS = 10_000
#: Seconds between interrupts once a query is past its deadline.
RE_INTERRUPT = 0.1
_SEPARATOR = "\x1f"


class AnalysisEngine:
    """DuckDB over the filestore's result sets and the datastore's tables (thread-safe)."""

    def __init__(
        self,
        datastore: Datastore,
        filestore: Filestore,
        limits: AnalysisLimits | None = None,
        scratch_dir: Path | None = None,
    ) -> None:
        self.datastore = datastore
        self.result_sets = ResultSets(datastore, filestore)
        self.limits = limits or AnalysisLimits()
        self.scratch_dir = scratch_dir
        self.copies = CopyMaker()
        self._slots = threading.BoundedSemaphore(self.limits.concurrent)

    def run(
        self,
        sql: str,
        permissions: frozenset[str],
        limits: AnalysisLimits | None = None,
        deadline: float | None = None,
    ) -> AnalysisResult:
        """Start ``sql`` for a caller holding ``permissions``; iterate the result for its
        Arrow record batches and close it (or use ``with``). Raises an ``AnalysisError``
        subclass when the query is refused or fails before its first row. ``deadline`` (a
        ``time.monotonic()`` value) ends it sooner than its time-out, for an answer made of
        several queries that share one time-out."""
        limits = limits or self.limits
        if ANALYZE not in permissions:
            raise NotPermitted("running analysis queries needs the ANALYZE permission")
        own = time.monotonic() + limits.timeout
        deadline = own if deadline is None else min(deadline, own)
        if time.monotonic() >= deadline:
            raise timed_out(limits)
        if not self._slots.acquire(timeout=deadline - time.monotonic()):
            raise QueryTimedOut(
                f"{limits.concurrent} analysis queries were running for all of "
                f"{limits.timeout:g} s: try again shortly"
            )
        try:
            scratch = Path(tempfile.mkdtemp(prefix="peregrine-analysis-", dir=self.scratch_dir))
        except BaseException:
            self._slots.release()
            raise
        # From here the result owns the slot and the folder: its close() gives both back.
        return AnalysisResult(self, sql, permissions, limits, scratch, deadline)

    def _release(self) -> None:
        self._slots.release()


class AnalysisResult:
    """A running query: Arrow record batches up to the row limit, then closed."""

    def __init__(
        self,
        engine: AnalysisEngine,
        sql: str,
        permissions: frozenset[str],
        limits: AnalysisLimits,
        scratch: Path,
        deadline: float,
    ) -> None:
        import duckdb

        self._engine = engine
        self._scratch = scratch
        self.limits = limits
        self.rows = 0
        self.truncated = False
        self.started = time.monotonic()
        self._timed_out = threading.Event()
        self._ended = threading.Event()
        self._closed = False
        self._conn: Any = None
        #: What the query reads, as written (for the audit trail).
        self.reads: list[str] = []
        try:
            self._conn = duckdb.connect(":memory:", config=_config(limits, scratch))
            watchdog = threading.Thread(
                target=self._watch, args=(deadline,), name="analysis-timeout", daemon=True
            )
            watchdog.start()
            calls = parse(self._conn, sql)
            self.reads = [f"{c.function}({', '.join(map(repr, c.args))})" for c in calls]
            _check_permissions(calls, permissions)
            resolved = engine.result_sets.resolve(
                calls, scratch, limits.snapshot_bytes, self._check_time
            )
            engine.copies.schedule(resolved.to_copy)
            allowed = _register(
                self._conn, engine.datastore, calls, resolved.files, self._check_time
            )
            self._conn.execute("SET allowed_paths = $paths", {"paths": allowed})
            self._conn.execute("SET enable_external_access = false")
            self._conn.execute("SET lock_configuration = true")
            self._check_time()
            reader: Any = self._conn.sql(sql).to_arrow_reader(BATCH_ROWS)
            self._check_time()
        except BaseException as exc:
            error = self._translate(exc)
            self.close()
            if error is exc:
                raise
            raise error from None
        self._reader = reader
        self.schema: Any = reader.schema

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def __iter__(self) -> Iterator[Any]:
        try:
            while not self._closed:
                self._check_time()
                try:
                    batch = self._reader.read_next_batch()
                except StopIteration:
                    return
                room = self.limits.max_rows - self.rows
                if batch.num_rows > room:
                    batch = batch.slice(0, room)
                    self.truncated = True
                if batch.num_rows:
                    self.rows += batch.num_rows
                    yield batch
                if self.truncated:
                    return
        except Exception as exc:
            error = self._translate(exc)
            if error is exc:
                raise
            raise error from None
        finally:
            self.close()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        """Stop the query and free its connection, files and slot (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._ended.set()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.interrupt()
            with contextlib.suppress(Exception):
                self._conn.close()
        shutil.rmtree(self._scratch, ignore_errors=True)
        self._engine._release()

    def __enter__(self) -> AnalysisResult:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def cancel(self) -> None:
        """Interrupt the query from any thread (the reader then stops with an error)."""
        if self._conn is not None and not self._closed:
            with contextlib.suppress(Exception):
                self._conn.interrupt()

    def _watch(self, deadline: float) -> None:
        """From the deadline until the query is closed, interrupt it every ``RE_INTERRUPT``
        seconds: an interrupt between two statements is lost, the next one is not."""
        if self._ended.wait(max(0.0, deadline - time.monotonic())):
            return
        self._timed_out.set()
        while True:
            with contextlib.suppress(Exception):
                self._conn.interrupt()
            if self._ended.wait(RE_INTERRUPT):
                return

    def _check_time(self) -> None:
        """Raise ``QueryTimedOut`` once the deadline has passed (between steps DuckDB does
        not see)."""
        if self._timed_out.is_set():
            raise timed_out(self.limits)

    def _translate(self, exc: BaseException) -> BaseException:
        import duckdb

        if isinstance(exc, AnalysisError):
            return exc
        if self._timed_out.is_set():
            return timed_out(self.limits)
        if isinstance(exc, duckdb.PermissionException):
            return QueryRefused(
                "analysis reads only the collections it names (flow(), hunt()) and the "
                f"datastore's tables; files, network and settings are off: {_first_line(exc)}"
            )
        if isinstance(exc, duckdb.OutOfMemoryException):
            return QueryFailed(
                f"the query needs more than its {self.limits.memory_mb} MB of memory: "
                "aggregate or filter earlier"
            )
        if isinstance(exc, duckdb.Error):
            return QueryFailed(str(exc))
        return exc


def timed_out(limits: AnalysisLimits) -> QueryTimedOut:
    """The error of a query stopped at its time-out, saying what to do instead."""
    return QueryTimedOut(
        f"the query ran past its time-out of {limits.timeout:g} s and was stopped: filter "
        "earlier, aggregate, or read fewer result sets; a result set reads several times "
        "faster from its Parquet copy, made in the background once its collection finishes "
        "and after a query read its JSONL (try again in a minute)"
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _config(limits: AnalysisLimits, scratch: Path) -> dict[str, Any]:
    return {
        "threads": max(1, limits.threads),
        "memory_limit": f"{limits.memory_mb}MB",
        "temp_directory": str(scratch / "spill"),
        "max_temp_directory_size": f"{limits.temp_mb}MB",
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "python_enable_replacements": False,
    }


def _check_permissions(calls: list[TableCall], permissions: frozenset[str]) -> None:
    missing = sorted({NEEDS[c.function] for c in calls} - permissions)
    if missing:
        names = ", ".join(sorted({f"{c.function}()" for c in calls if NEEDS[c.function]}))
        raise NotPermitted(f"{names} need(s) the {', '.join(missing)} permission")


def view_name(function: str, args: tuple[str, ...]) -> str:
    """The view a call reads: the same hash DuckDB's ``md5`` computes in the macros."""
    digest = hashlib.md5(_SEPARATOR.join(args).encode(), usedforsecurity=False).hexdigest()
    return f"__{function}_{digest}"


_MACROS = {
    "flow": "CREATE MACRO flow(flow_id, artifact_source) AS TABLE FROM query_table("
    "'__flow_' || md5(flow_id || chr(31) || artifact_source))",
    "hunt": "CREATE MACRO hunt(hunt_id, artifact_source) AS TABLE FROM query_table("
    "'__hunt_' || md5(hunt_id || chr(31) || artifact_source))",
    # Arguments not given are '' in the hash, as in TableCall.args; numbers as DuckDB prints them.
    "events": "CREATE MACRO events(artifact, client := NULL, since := NULL, until := NULL) AS "
    "TABLE FROM query_table('__events_' || md5(artifact || chr(31) || "
    "coalesce(CAST(client AS VARCHAR), '') || chr(31) || coalesce(CAST(since AS VARCHAR), '') "
    "|| chr(31) || coalesce(CAST(until AS VARCHAR), '')))",
}


def _register(
    conn: Any,
    datastore: Datastore,
    calls: list[TableCall],
    files: dict[TableCall, list[Any]],
    check_time: Callable[[], None],
) -> list[str]:
    """Make the views, tables and macros the query needs; returns every file they read."""
    allowed: list[str] = []
    for call in calls:
        check_time()
        if call.function in ("clients", "collections", "hunts"):
            table = catalog.snapshot(datastore, call.function)
            conn.from_arrow(table).create(f"__{call.function}")
            conn.execute(f"CREATE MACRO {call.function}() AS TABLE FROM __{call.function}")
            continue
        found: list[ResultFile] = files.get(call, [])
        if call.function == "flow" and not found:
            raise QueryRefused(
                f"collection {call.args[0]} has no rows for {call.args[1]!r} "
                "(artifact names are case-sensitive; a default source needs no '/')"
            )
        if call.function == "events":
            relation = events_relation(conn, call, found)
        else:
            relation = _relation(conn, call, found)
        relation.create_view(view_name(call.function, call.args))
        allowed += [str(f.path) for f in found]
    for macro in _MACROS.values():
        conn.execute(macro)
    return allowed


def _relation(conn: Any, call: TableCall, found: list[ResultFile]) -> Any:
    """One relation over the files: a scan per group of files with the same columns (Parquet
    copies together), joined by name; for a hunt, each row's client id and host name."""
    if not found:
        return conn.sql("SELECT NULL::VARCHAR AS client_id, NULL::VARCHAR AS hostname WHERE false")
    groups: dict[tuple[bool, tuple[str, ...]], list[ResultFile]] = {}
    for item in found:
        key = (True, ()) if item.columnar else (False, item.columns)
        groups.setdefault(key, []).append(item)
    parts: list[str] = []
    params: dict[str, Any] = {}
    for number, ((is_parquet, _columns), members) in enumerate(groups.items()):
        params[f"f{number}"] = [str(m.path) for m in members]
        if is_parquet:
            scan = f"read_parquet($f{number}, union_by_name = true)"
        else:
            scan = f"read_json($f{number}, format = 'newline_delimited')"
        if call.function != "hunt":
            parts.append(f"SELECT * FROM {scan}")
            continue
        # Each row's client from its file's place in the list: a lookup, not a join, so the
        # view keeps the stored order (files in turn, each file's rows as stored) and pages
        # of it neither repeat nor skip rows.
        params[f"c{number}"] = [m.client_id for m in members]
        params[f"h{number}"] = [m.hostname for m in members]
        # The hunt's own client_id and hostname win over result columns of those names.
        own = sorted({c for m in members for c in m.columns} & {"client_id", "hostname"})
        exclude = f" EXCLUDE ({', '.join(own)})" if own else ""
        parts.append(
            f"SELECT list_extract($c{number}::VARCHAR[], r.file_index::BIGINT + 1) AS client_id, "
            f"list_extract($h{number}::VARCHAR[], r.file_index::BIGINT + 1) AS hostname, "
            f"r.*{exclude} FROM {scan} r"
        )
    return conn.sql(" UNION ALL BY NAME ".join(parts), params=params)
