"""``sqlite``: run a read-only SQL query against an SQLite database file on the endpoint.

Browsers, chat clients and the OS keep evidence in SQLite files that their application holds open,
so the file is never opened in a way that could block or change it:

* A database in rollback-journal mode with no journal beside it is read in place, opened
  ``mode=ro&immutable=1``: no locks are taken, so the owning application is never blocked, and
  nothing is written.
* A database in WAL mode, or with a ``-wal`` or ``-journal`` file beside it, is first copied (with
  that file) into a private temporary directory and the copy is opened. Reading in place would
  miss what is still in the WAL, or need to create ``-shm`` next to the evidence; the copy sees
  the latest committed data and leaves the original untouched.

The query may only read (an authorizer denies writes, ATTACH and state-changing pragmas). Its
result columns depend on the query, so each result row is one JSON object in the ``row`` column:
use ``json_extract(row, '$.url')``. Blobs appear as hex text.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import apsw

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Plugin, table
from peregrine.hookspecs import hookimpl

_NAME = "sqlite"
_MAGIC = b"SQLite format 3\x00"
_COPY_CHUNK = 1 << 20
_PROGRESS_STEPS = 10_000
_SIDECARS = ("-wal", "-journal")

_ALLOWED_ACTIONS = {
    apsw.SQLITE_SELECT,
    apsw.SQLITE_READ,
    apsw.SQLITE_FUNCTION,
    apsw.SQLITE_RECURSIVE,
}
_READ_PRAGMAS = {
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "user_version",
    "application_id",
    "schema_version",
    "page_size",
    "page_count",
    "encoding",
    "journal_mode",
    "freelist_count",
    "function_list",
    "collation_list",
}
#: Pragmas whose argument names what to read, rather than a value to set.
_PRAGMAS_WITH_ARGUMENT = {
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
}


def _authorize(action: int, a: str | None, b: str | None, c: str | None, d: str | None) -> int:
    if action in _ALLOWED_ACTIONS:
        return apsw.SQLITE_OK
    if action == apsw.SQLITE_PRAGMA and a is not None:
        name = a.lower()
        if name in _PRAGMAS_WITH_ARGUMENT or (name in _READ_PRAGMAS and b is None):
            return apsw.SQLITE_OK
    return apsw.SQLITE_DENY


def _header(ctx: QueryContext, path: Path) -> bytes | None:
    """The first 100 bytes, or ``None`` when the file is missing (or unreadable: warns)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(100)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        ctx.warn(f"{_NAME}(): cannot read {path}: {exc.strerror or exc}")
        return None


def _copy(ctx: QueryContext, source: Path, target: Path) -> None:
    """Copy in chunks, checking the deadline, so a huge database cannot outlive the query."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(_COPY_CHUNK):
            ctx.check()
            dst.write(chunk)


def _needs_copy(path: Path, header: bytes) -> bool:
    wal_mode = len(header) >= 20 and (header[18] == 2 or header[19] == 2)
    return wal_mode or any(_sidecar(path, s).exists() for s in _SIDECARS)


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _open(ctx: QueryContext, path: Path, workdir: str | None) -> apsw.Connection:
    if workdir is None:
        uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
        return apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    copy = Path(workdir) / "db"
    _copy(ctx, path, copy)
    for suffix in _SIDECARS:
        try:
            _copy(ctx, _sidecar(path, suffix), _sidecar(copy, suffix))
        except FileNotFoundError:
            continue
    # Read-write on our private copy only, so SQLite may replay the WAL or roll back a journal.
    return apsw.Connection(str(copy), flags=apsw.SQLITE_OPEN_READWRITE)


def _value(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def _names(description: Iterable[tuple[str, str | None]]) -> list[str]:
    """Result column names, made unique (``id``, ``id:2``) so no value is lost in the object."""
    seen: dict[str, int] = {}
    names = []
    for name, _decl in description:
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}:{seen[name]}")
    return names


@table(
    name=_NAME,
    description=(
        "Run a read-only SQL query against an SQLite database file (browser history, app "
        "stores); each result row is a JSON object. The file is never locked or modified."
    ),
    arguments=[
        Arg("file", "TEXT", "Path of the SQLite database file.", required=True),
        Arg("query", "TEXT", "One read-only SQL statement to run against it.", required=True),
    ],
    columns=[
        Col("row_number", "INTEGER", "Position of the row in the query's result, from 1."),
        Col("row", "JSON", "The row as a JSON object: column name -> value (blobs as hex)."),
    ],
    platforms=("linux", "darwin", "win32"),
    examples=(
        "SELECT json_extract(row, '$.url') AS url FROM sqlite("
        "'/home/alice/.mozilla/firefox/x.default/places.sqlite', "
        "'SELECT url, visit_count FROM moz_places ORDER BY visit_count DESC LIMIT 20')",
        "SELECT g.path, s.row FROM glob('/home/*/.config/google-chrome/*/History') g "
        "JOIN sqlite(g.path, 'SELECT url, title FROM urls') s",
    ),
)
def sqlite_query(ctx: QueryContext, file: str, query: str) -> Iterator[dict[str, Any]]:
    path = Path(str(file))
    header = _header(ctx, path)
    if header is None:
        return
    if header and not header.startswith(_MAGIC):
        raise PluginError(_NAME, f"{path} is not an SQLite database (its header does not match)")
    workdir = tempfile.mkdtemp(prefix="peregrine-sqlite-") if _needs_copy(path, header) else None
    try:
        try:
            connection = _open(ctx, path, workdir)
        except FileNotFoundError:
            return  # it vanished while we copied it
        except (OSError, apsw.Error) as exc:
            raise PluginError(_NAME, f"cannot open {path}: {exc}") from exc
        try:
            yield from _run(ctx, connection, path, str(query))
        finally:
            connection.close()
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(
    ctx: QueryContext, connection: apsw.Connection, path: Path, query: str
) -> Iterator[dict[str, Any]]:
    statements = 0

    def one_read_only_statement(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        nonlocal statements
        statements += 1
        if statements > 1:
            raise PluginError(_NAME, "the query must be a single SQL statement")
        if not cursor.is_readonly:
            raise PluginError(_NAME, "the query must only read (SELECT), not change the file")
        return True

    connection.authorizer = _authorize
    connection.exec_trace = one_read_only_statement
    connection.set_progress_handler(lambda: ctx.cancelled or ctx.expired(), _PROGRESS_STEPS)
    cursor = connection.cursor()
    try:
        cursor.execute(query)
        try:
            names = _names(cursor.get_description())
        except apsw.ExecutionCompleteError:
            return
        for number, values in enumerate(cursor, start=1):
            ctx.check()
            yield {
                "row_number": number,
                "row": {n: _value(v) for n, v in zip(names, values, strict=True)},
            }
    except apsw.InterruptError:
        ctx.check()
        raise PluginError(_NAME, "the query on the file was interrupted") from None
    except apsw.AuthError:
        raise PluginError(
            _NAME,
            "only read-only queries may run against the file (no ATTACH, writes or pragmas "
            "that change state)",
        ) from None
    except apsw.NotADBError:
        raise PluginError(_NAME, f"{path} is not an SQLite database") from None
    except apsw.Error as exc:
        message = str(exc).removeprefix(f"{type(exc).__name__}: ")
        raise PluginError(_NAME, f"the query on {path} failed: {message}") from None


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [sqlite_query]
