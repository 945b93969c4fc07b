"""Run one SQL query in this process: a fresh SQLite connection with the plugins, and limits.

Each query gets its own in-memory connection, so the plugins it may use (its permissions) and its
context (deadline, cancel token) belong to it alone. Only one read-only statement runs: an
authorizer allows SELECT-like operations only, so a query cannot ATTACH or VACUUM INTO a file.
For isolation from crashes and runaway memory, run it through :mod:`peregrine.engine.worker`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apsw
import apsw.ext

from peregrine.engine.columns import Column
from peregrine.engine.context import ALL_PERMISSIONS, QueryContext, QueryLimits
from peregrine.engine.errors import (
    PermissionDenied,
    PluginError,
    QueryCancelled,
    QueryError,
    QuerySyntaxError,
    QueryTimeout,
)
from peregrine.engine.registry import Registry, ScalarPlugin
from peregrine.engine.vtable import PlanRefusals, register_table, to_sqlite

Params = Sequence[Any] | Mapping[str, Any] | None

_ALLOWED_ACTIONS = {
    apsw.SQLITE_SELECT,
    apsw.SQLITE_READ,
    apsw.SQLITE_FUNCTION,
    apsw.SQLITE_RECURSIVE,
}
_ALLOWED_PRAGMAS = {"table_info", "table_xinfo", "function_list", "module_list", "pragma_list"}
_PROGRESS_STEPS = 10_000


@dataclass
class Prepared:
    """What compiling a query tells without running it."""

    columns: list[Column]
    parameters: list[str]


class QueryResult:
    """An open query: ``columns`` first, then iterate rows (tuples). Iterate once."""

    def __init__(
        self,
        cursor: apsw.Cursor,
        ctx: QueryContext,
        refusals: PlanRefusals,
        registry: Registry,
        description: list[tuple[str, str | None]],
    ) -> None:
        self._cursor = cursor
        self.ctx = ctx
        self._refusals = refusals
        self._registry = registry
        self.truncated = False
        self.rows_returned = 0
        self.columns = [Column(name, decl) for name, decl in description]

    @property
    def warnings(self) -> list[str]:
        """What the query skipped; the last says how many more were dropped, if any."""
        return self.ctx.warnings.report()

    @property
    def warnings_dropped(self) -> int:
        return self.ctx.warnings.dropped

    def cancel(self) -> None:
        """Stop the query from another thread: plugins see the token, SQLite is interrupted."""
        self.ctx.cancel()
        self._cursor.connection.interrupt()

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        max_rows = self.ctx.limits.max_rows
        try:
            if max_rows is None:  # the common case, one step per row
                for count, row in enumerate(self._cursor, 1):
                    self.rows_returned = count
                    yield row
                return
            for row in self._cursor:
                if max_rows is not None and self.rows_returned >= max_rows:
                    self.truncated = True
                    break
                self.rows_returned += 1
                yield row
                if self.ctx.events and self.rows_returned == max_rows:
                    self.truncated = True  # another event may be hours away: do not wait
                    break
        except BaseException as exc:
            raise translate_error(exc, self.ctx, self._refusals, self._registry) from exc
        finally:
            self.close()

    def close(self) -> None:
        self._cursor.connection.close()


class Engine:
    """Runs SQL over the registered plugins. Cheap to keep; one connection per query."""

    def __init__(self, registry: Registry | None = None) -> None:
        if registry is None:
            from peregrine.plugin_manager import default_registry

            registry = default_registry()
        self.registry = registry

    def connect(self, ctx: QueryContext, refusals: PlanRefusals | None = None) -> apsw.Connection:
        """A new in-memory connection with every plugin registered for ``ctx``."""
        refusals = refusals if refusals is not None else PlanRefusals()
        connection = apsw.Connection(":memory:")
        for plugin in self.registry:
            if isinstance(plugin, ScalarPlugin):
                _register_function(connection, plugin, ctx)
            else:
                register_table(connection, plugin, ctx, refusals)
        connection.authorizer = _authorize
        connection.set_progress_handler(lambda: _should_interrupt(ctx), _PROGRESS_STEPS)
        return connection

    def prepare(self, sql: str, permissions: frozenset[str] = ALL_PERMISSIONS) -> Prepared:
        """Compile ``sql`` without running it: its columns and named parameters.

        Everything that fails at prepare time fails here too: syntax, unknown plugins, missing
        required arguments, plugins outside ``permissions``, more than one statement.
        """
        ctx = QueryContext(permissions=permissions)
        refusals = PlanRefusals()
        connection = self.connect(ctx, refusals)
        try:
            info = apsw.ext.query_info(connection, sql)
        except apsw.Error as exc:
            raise translate_error(exc, ctx, refusals, self.registry) from exc
        finally:
            connection.close()
        if info.query_remaining and info.query_remaining.strip():
            raise QuerySyntaxError("only one SQL statement can run per query")
        return Prepared(
            columns=[Column(name, decl) for name, decl in info.description or ()],
            parameters=[name for name in info.bindings_names if name],
        )

    def execute(
        self,
        sql: str,
        params: Params = None,
        *,
        limits: QueryLimits | None = None,
        permissions: frozenset[str] = ALL_PERMISSIONS,
        ctx: QueryContext | None = None,
        on_columns: Callable[[list[Column]], None] | None = None,
    ) -> QueryResult:
        """Prepare ``sql`` and start it; iterate the result for rows.

        Parameters are bound, never pasted into the text. Raises :class:`QueryError` subclasses
        with a message that says what to fix. Starting runs the query up to its first row,
        which for an event plugin is its first event: ``on_columns`` hears the columns as soon
        as the statement is prepared, before that.
        """
        if ctx is None:
            ctx = QueryContext(limits=limits or QueryLimits(), permissions=permissions)
        refusals = PlanRefusals()
        connection = self.connect(ctx, refusals)
        statements = 0
        description: list[tuple[str, str | None]] = []

        def one_statement(cursor: apsw.Cursor, statement: str, bindings: Any) -> bool:
            nonlocal statements
            statements += 1
            if statements > 1:
                raise QuerySyntaxError(
                    "only one SQL statement can run per query; use a CTE (WITH ...) or a join "
                    "to combine queries"
                )
            if not cursor.is_readonly:
                raise QuerySyntaxError("only read-only (SELECT) statements are allowed")
            # Known now, before the first step: a query with no rows still has columns.
            description.extend(cursor.get_description())
            if on_columns is not None:
                on_columns([Column(name, decl) for name, decl in description])
            return True

        connection.exec_trace = one_statement
        cursor = connection.cursor()
        try:
            cursor.execute(sql, params)
        except BaseException as exc:
            connection.close()
            raise translate_error(exc, ctx, refusals, self.registry) from exc
        return QueryResult(cursor, ctx, refusals, self.registry, description)


def _authorize(action: int, a: str | None, b: str | None, c: str | None, d: str | None) -> int:
    if action in _ALLOWED_ACTIONS:
        return apsw.SQLITE_OK
    if action == apsw.SQLITE_PRAGMA and a is not None and a.lower() in _ALLOWED_PRAGMAS:
        return apsw.SQLITE_OK
    return apsw.SQLITE_DENY


def _should_interrupt(ctx: QueryContext) -> bool:
    return ctx.cancelled or ctx.expired()


def _register_function(
    connection: apsw.Connection, plugin: ScalarPlugin, ctx: QueryContext
) -> None:
    missing = [p for p in plugin.permissions if p not in ctx.permissions]

    def call(*args: Any) -> Any:
        if missing:
            raise PermissionDenied(
                f"{plugin.name}() needs the {', '.join(missing)} permission, "
                "which this query was not given"
            )
        if not plugin.supported_here():
            raise PluginError(plugin.name, "not supported on this OS")
        ctx.check()
        try:
            return to_sqlite(plugin.func(ctx, *args))
        except QueryError:
            raise
        except TypeError as exc:
            raise PluginError(plugin.name, f"bad arguments: {exc}") from exc
        except Exception as exc:
            raise PluginError(plugin.name, f"{type(exc).__name__}: {exc}") from exc

    connection.create_scalar_function(plugin.name, call, -1, deterministic=plugin.deterministic)


_NO_TABLE = re.compile(r"no such (table|function|column): (.+)$")


def translate_error(
    exc: BaseException, ctx: QueryContext, refusals: PlanRefusals, registry: Registry
) -> BaseException:
    """Turn what apsw raised into a :class:`QueryError` that says what to fix."""
    if isinstance(exc, QueryError):
        return exc
    if isinstance(exc, apsw.InterruptError) or (ctx.cancelled or ctx.expired()):
        if ctx.cancelled:
            return QueryCancelled("the query was cancelled")
        if ctx.expired():
            return QueryTimeout(f"the query ran past its time-out of {ctx.limits.timeout:g} s")
    if isinstance(exc, apsw.AuthError):
        return QuerySyntaxError(
            "only read-only queries over plugins are allowed (no ATTACH, writes or pragmas "
            "that change state)"
        )
    if isinstance(exc, apsw.SQLError):
        message = str(exc).removeprefix("SQLError: ")
        if "no query solution" in message:
            explained = refusals.explain()
            if explained:
                from peregrine.engine.errors import MissingArgumentError

                return MissingArgumentError(explained)
        match = _NO_TABLE.search(message)
        if match:
            what, name = match.groups()
            hint = ""
            if what in ("table", "function"):
                names = [p.name for p in registry]
                close = difflib.get_close_matches(name.split(".")[-1], names, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                hint += " (`peregrine plugins` lists them)"
            return QuerySyntaxError(f"unknown {what} {name!r}{hint}")
        return QuerySyntaxError(f"bad SQL: {message}")
    if isinstance(exc, apsw.Error):
        return QueryError(f"{type(exc).__name__}: {exc}")
    return exc
