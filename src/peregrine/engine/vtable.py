"""The bridge from a :class:`TablePlugin` to an SQLite eponymous virtual table (via apsw).

Arguments are hidden columns. ``xBestIndex`` accepts an equality constraint on a hidden column as
the argument's value (this is how both ``glob('/x')`` and ``WHERE pattern = '/x'`` arrive) and
*refuses* any plan that lacks a required argument, so SQLite's planner orders joins to supply it
(``users() u JOIN glob(u.home || '/.ssh/*')``) and a query that can never supply it fails at
prepare time. The refusal is recorded so the error names the plugin and the argument.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import apsw

from peregrine.engine.affinity import pushed_value
from peregrine.engine.errors import PermissionDenied, PluginError, QueryError
from peregrine.engine.registry import Lazy, TablePlugin

if TYPE_CHECKING:
    from peregrine.engine.context import QueryContext

_PLAIN_TYPES = (type(None), int, float, str, bytes)
_CHECK_EVERY = 256
#: ``PluginCursor.order``'s entry for the rowid (SQLite asks for it as column -1).
_ROWID = -(1 << 30)
_COLUMNS_IN_MASK = 31  # idxNum is a 32-bit int: columns 0-30 as bits; reading a later one: all
#: The planner's cost of entering an event plugin: more than any scan of an ordinary plugin.
EVENTS_COST = 1e15


def to_sqlite(value: Any) -> Any:
    """Turn a plugin's Python value into one SQLite stores: JSON for containers, text otherwise."""
    if isinstance(value, _PLAIN_TYPES):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value)


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PlanRefusals:
    """Which plugin refused which plan, so 'no query solution' can be explained."""

    def __init__(self) -> None:
        self.missing: dict[str, set[str]] = {}

    def record(self, plugin: str, args: list[str]) -> None:
        self.missing.setdefault(plugin, set()).update(args)

    def explain(self) -> str | None:
        if not self.missing:
            return None
        parts = []
        for plugin, args in sorted(self.missing.items()):
            names = ", ".join(sorted(args))
            first = sorted(args)[0]
            parts.append(
                f"{plugin}() needs its required argument {names}: give it as "
                f"{plugin}(value) or WHERE {first} = value, or join it to a table that supplies it"
            )
        return "; ".join(parts)


class PluginModule:
    """apsw module (``VTModule``) for one plugin on one connection."""

    def __init__(self, plugin: TablePlugin, ctx: QueryContext, refusals: PlanRefusals) -> None:
        self.plugin = plugin
        self.ctx = ctx
        self.refusals = refusals
        self.order = column_order(plugin)
        decls = []
        for entry in self.order:
            if entry >= 0:
                col = plugin.columns[entry]
                hidden = " HIDDEN" if col.hidden else ""
                decls.append(f"{_sql_ident(col.name)} {_decl_type(col.type)}{hidden}")
            else:
                arg = plugin.arguments[-1 - entry]
                decls.append(f"{_sql_ident(arg.name)} {_decl_type(arg.type)} HIDDEN")
        self.schema = f"CREATE TABLE x({', '.join(decls)})"

    def Connect(
        self, connection: Any, modulename: str, databasename: str, tablename: str, *args: Any
    ) -> tuple[str, PluginTable]:
        missing = [p for p in self.plugin.permissions if p not in self.ctx.permissions]
        if missing:
            raise PermissionDenied(
                f"{self.plugin.name}() needs the {', '.join(missing)} permission, "
                "which this query was not given"
            )
        return self.schema, PluginTable(self)

    Create = Connect


def column_order(plugin: TablePlugin) -> list[int]:
    """The SQLite column layout: entry >= 0 is a plugin column, < 0 is argument ``-1 - entry``.

    Plain columns come first, then hidden arguments (positional ``name(a, b)`` maps to them in
    order), then hidden columns: ``SELECT *`` leaves them out, so it never hashes a whole tree
    by accident, while naming them (``SELECT path, sha256``) works.
    """
    plain = [i for i, c in enumerate(plugin.columns) if not c.hidden]
    hidden = [i for i, c in enumerate(plugin.columns) if c.hidden]
    args = [-1 - plugin.arguments.index(a) for a in plugin.hidden_arguments]
    return plain + args + hidden


def _decl_type(sql_type: str) -> str:
    return {"JSON": "TEXT", "ANY": ""}.get(sql_type, sql_type)


class PluginTable:
    """apsw ``VTTable``: plans (BestIndexObject) and opens cursors."""

    def __init__(self, module: PluginModule) -> None:
        self.module = module
        self.plugin = module.plugin
        self.ncols = len(self.plugin.columns)
        self.order = module.order
        arg_index = {a.name: n for n, a in enumerate(self.plugin.arguments)}
        # SQLite column index -> argument index, for filters and hidden arguments alike.
        self.column_to_arg: dict[int, int] = {}
        #: Argument index -> the declared type of the column it filters (filters only).
        self.filter_types: dict[int, str] = {}
        for sqlite_index, entry in enumerate(self.order):
            if entry < 0:
                self.column_to_arg[sqlite_index] = -1 - entry
            elif self.plugin.columns[entry].name in arg_index:
                self.column_to_arg[sqlite_index] = arg_index[self.plugin.columns[entry].name]
                self.filter_types[arg_index[self.plugin.columns[entry].name]] = self.plugin.columns[
                    entry
                ].type

    def BestIndexObject(self, info: apsw.IndexInfo) -> bool:
        given: dict[int, int] = {}  # argument index -> constraint index
        for i in range(info.nConstraint):
            col = info.get_aConstraint_iColumn(i)
            if col not in self.column_to_arg or not info.get_aConstraint_usable(i):
                continue
            if info.get_aConstraint_op(i) != apsw.SQLITE_INDEX_CONSTRAINT_EQ:
                continue  # SQLite applies other operators itself
            if self.order[col] >= 0 and info.get_aConstraint_collation(i) != "BINARY":
                continue  # a filter compares as Python does: 'a' = 'A' COLLATE NOCASE is not one
            given.setdefault(self.column_to_arg[col], i)
        missing = [
            a.name for n, a in enumerate(self.plugin.arguments) if a.required and n not in given
        ]
        if missing:
            self.module.refusals.record(self.plugin.name, missing)
            return False  # SQLITE_CONSTRAINT: this plan is unusable, try another join order
        order = sorted(given)
        for argv, arg_index in enumerate(order, start=1):
            info.set_aConstraintUsage_argvIndex(given[arg_index], argv)
            # A filter on a real column is only a hint, and SQLite checks the rows again,
            # unless the plugin applies it exactly.
            is_argument = self.order[info.get_aConstraint_iColumn(given[arg_index])] < 0
            exact = self.plugin.arguments[arg_index].exact
            info.set_aConstraintUsage_omit(given[arg_index], is_argument or exact)
        info.idxStr = ",".join(str(n) for n in order)
        used = info.colUsed  # SQLite puts every column from 63 on in 63
        info.idxNum = -1 if any(c >= _COLUMNS_IN_MASK for c in used) else sum(1 << c for c in used)
        if self.plugin.events:
            # Never ends: as an inner loop it would be entered once per outer row and never
            # left. Costly to enter and one row deep, it is always the outer loop.
            info.estimatedCost = EVENTS_COST
            info.estimatedRows = 1
            return True
        # Plans that supply more arguments are narrower: prefer them.
        info.estimatedCost = 1e6 / (1 + 10 * len(order))
        info.estimatedRows = max(1, 100_000 // (1 + 100 * len(order)))
        return True

    def Open(self) -> PluginCursor:
        return PluginCursor(self)

    def Disconnect(self) -> None:
        pass

    Destroy = Disconnect


class PluginCursor:
    """apsw ``VTCursor``: runs the generator and hands SQLite one column at a time.

    SQLite calls ``Next``, ``Eof`` and ``Column`` once per row (``Column`` once per column read),
    so they are the engine's hot path: a row is kept as the plugin yielded it (a tuple is not
    copied; a list is made only when a ``Lazy`` value is computed, to keep it) and ``Column``
    finds the value with one list lookup.
    """

    def __init__(self, table: PluginTable) -> None:
        self.plugin = table.plugin
        self.ctx = table.module.ctx
        self.ncols = table.ncols
        # SQLite column -> plugin column (>= 0) or argument (< 0); the extra last entry is for
        # Column(-1), the rowid.
        self.order = [*table.order, _ROWID]
        self.names = [c.name for c in self.plugin.columns]
        self.filter_types = table.filter_types
        self.arg_values: list[Any] = [a.default for a in self.plugin.arguments]
        self.rows: Iterator[Any] = iter(())
        self.row: Sequence[Any] = ()
        self.rowid = 0
        self.eof = True

    def Filter(self, indexnum: int, indexname: str | None, constraintargs: tuple[Any, ...]) -> None:
        given = [int(n) for n in indexname.split(",")] if indexname else []
        self.arg_values = [a.default for a in self.plugin.arguments]
        args: dict[str, Any] = {}
        matches_nothing = False
        for arg_index, value in zip(given, constraintargs, strict=True):
            arg = self.plugin.arguments[arg_index]
            self.arg_values[arg_index] = value
            if arg_index in self.filter_types:  # compared by the plugin: as SQLite compares
                value = pushed_value(value, self.filter_types[arg_index], arg.exact)
            args[arg.name] = value
            matches_nothing = matches_nothing or (arg.exact and value is None)  # x = NULL
        self.ctx.check()
        self.rowid = 0
        self.eof = False  # until the rows run out (Next)
        self.ctx.events = self.ctx.events or self.plugin.events
        self.ctx.columns_read = self._columns_read(indexnum)
        try:
            self.rows = iter(()) if matches_nothing else self.plugin.rows(self.ctx, args)
        except QueryError:
            raise
        except Exception as exc:
            raise PluginError(self.plugin.name, f"{type(exc).__name__}: {exc}") from exc
        self.Next()

    def _columns_read(self, mask: int) -> frozenset[str] | None:
        """The plugin columns in SQLite's colUsed mask (-1: all)."""
        if mask < 0:
            return None
        entries = (self.order[n] for n in range(len(self.order) - 1) if mask >> n & 1)
        return frozenset(self.names[entry] for entry in entries if entry >= 0)

    def Next(self) -> None:
        self.rowid = rowid = self.rowid + 1
        if not rowid % _CHECK_EVERY:
            self.ctx.check()
        try:
            raw = next(self.rows)
        except StopIteration:
            self.eof = True
            return
        except QueryError:
            raise
        except Exception as exc:
            raise PluginError(self.plugin.name, f"{type(exc).__name__}: {exc}") from exc
        if type(raw) is not tuple:
            raw = [raw.get(name) for name in self.names] if isinstance(raw, dict) else list(raw)
        if len(raw) != self.ncols:
            raise PluginError(
                self.plugin.name, f"produced a row of {len(raw)} values for {self.ncols} columns"
            )
        self.row = raw

    def Eof(self) -> bool:
        return self.eof

    def Rowid(self) -> int:
        return self.rowid

    def Column(self, n: int) -> Any:
        entry = self.order[n]
        if entry >= 0:
            value = self.row[entry]
            if type(value) in _PLAIN_TYPES:
                return value
            return self._convert(entry, value)
        if entry == _ROWID:
            return self.rowid
        return self.arg_values[-1 - entry]

    def _convert(self, entry: int, value: Any) -> Any:
        """A value SQLite can store; a ``Lazy`` one is computed once and kept in the row."""
        if not isinstance(value, Lazy):
            return to_sqlite(value)
        try:
            value = value()
        except QueryError:
            raise
        except Exception as exc:
            self.ctx.warn(f"{self.plugin.name}(): {self.names[entry]}: {exc}")
            value = None
        value = to_sqlite(value)
        row = self.row if isinstance(self.row, list) else list(self.row)
        row[entry] = value
        self.row = row
        return value

    def Close(self) -> None:
        close = getattr(self.rows, "close", None)
        if close is not None:
            close()
        self.rows = iter(())  # a batches plugin's generator is closed as its last reference goes


def register_table(
    connection: apsw.Connection, plugin: TablePlugin, ctx: QueryContext, refusals: PlanRefusals
) -> None:
    module: Any = PluginModule(plugin, ctx, refusals)  # duck-typed apsw VTModule
    connection.create_module(
        plugin.name,
        module,
        use_bestindex_object=True,
        eponymous=True,
        eponymous_only=True,
        read_only=True,
    )
