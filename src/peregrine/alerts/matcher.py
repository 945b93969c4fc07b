"""Matching one batch of events against rules: the batch's rows as a table in a sandboxed
in-memory SQLite, each rule's condition a ``WHERE`` over it.

The sandbox: a private ``:memory:`` database holding only the batch, an authorizer that allows
reading and calling built-in functions and nothing else (no ATTACH, no writes, no pragmas; apsw
loads no extensions), one statement per condition, and a progress handler that stops a rule
after ``RULE_TIME_LIMIT`` seconds. A condition can therefore read the batch and spend a bounded
slice of CPU, nothing more. The same code checks a rule before it is saved, so an error names
the position in the condition.

A connection is kept per column set (an artifact's rows keep their columns), so each batch costs
an insert and one prepared statement per rule, not a schema.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import apsw

from .rules import Rule, RuleError

#: The columns every event row has, whatever its artifact (they win over a row's own).
META_COLUMNS = ("client_id", "hostname", "labels", "artifact", "source", "event_seq", "received")
#: How long one rule may run over one batch before it is stopped.
RULE_TIME_LIMIT = 0.25
#: Each loaded row's position, so rows of several batches can share one table.
_ROW = "_row"
_PREFIX = f"SELECT {_ROW} FROM events WHERE ("
_CONNECTIONS_KEPT = 64


#: SQLite's own functions that reach outside the row (files, extensions, internals).
_DENIED_FUNCTIONS = frozenset(
    {"load_extension", "readfile", "writefile", "fts3_tokenizer", "sqlite_compileoption_get"}
)


def _authorize(action: int, first: str | None, second: str | None, *_: Any) -> int:
    """Reads of the ``events`` table and calls of harmless functions; nothing else."""
    if action == apsw.SQLITE_SELECT:
        return apsw.SQLITE_OK
    if action == apsw.SQLITE_READ and first == "events":
        return apsw.SQLITE_OK
    if action == apsw.SQLITE_FUNCTION and (second or "").lower() not in _DENIED_FUNCTIONS:
        return apsw.SQLITE_OK
    return apsw.SQLITE_DENY


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Table:
    """An in-memory database with one ``events`` table of the given columns."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        self.connection = apsw.Connection(":memory:")
        names = ", ".join(_quote(c) for c in columns)
        self.connection.execute(f"CREATE TABLE events ({names})")
        marks = ", ".join("?" for _ in columns)
        self._insert = f"INSERT INTO events VALUES ({marks})"
        self.connection.authorizer = _authorize
        self._deadline = 0.0
        self.connection.set_progress_handler(self._expired, 1000)

    def _expired(self) -> bool:
        return time.monotonic() > self._deadline

    def load(self, rows: Iterable[Sequence[Any]]) -> None:
        self._deadline = float("inf")
        self.connection.authorizer = None
        self.connection.execute("DELETE FROM events")
        self.connection.executemany(self._insert, rows)
        self.connection.authorizer = _authorize

    def select(self, condition: str) -> list[int]:
        """The position of each loaded row ``condition`` holds for."""
        self._deadline = time.monotonic() + RULE_TIME_LIMIT
        statements = 0

        def one_statement(_cursor: apsw.Cursor, _sql: str, _bindings: Any) -> bool:
            nonlocal statements
            statements += 1
            return statements == 1

        cursor = self.connection.cursor()
        cursor.exec_trace = one_statement
        try:
            return [int(row[0]) for row in cursor.execute(_PREFIX + condition + ")")]
        except apsw.ExecTraceAbort as exc:
            raise RuleError("condition", "a condition is one expression, not statements") from exc
        except apsw.InterruptError as exc:
            raise RuleError(
                "condition", f"the condition ran past its limit of {RULE_TIME_LIMIT} s per batch"
            ) from exc
        except apsw.AuthError as exc:
            raise RuleError(
                "condition", "a condition may only read the event's columns and call functions"
            ) from exc
        except apsw.SQLError as exc:
            raise _sql_error(exc, condition, self.columns) from exc


def _sql_error(exc: apsw.SQLError, condition: str, columns: tuple[str, ...]) -> RuleError:
    message = str(exc).removeprefix("SQLError: ")
    offset = getattr(exc, "error_offset", -1)
    position = offset - len(_PREFIX) if offset is not None and offset >= len(_PREFIX) else None
    if position is not None and position > len(condition):
        position = len(condition)
    if message.startswith("no such column"):
        message += f" (the columns are: {', '.join(columns)})"
    elif "incomplete input" in message:
        position = len(condition)
    where = "" if position is None else f" at position {position}"
    if position is not None:
        where += f" ({condition[max(0, position - 20) : position]!r} ⟵ here)"
    return RuleError("condition", f"bad SQL in the condition{where}: {message}", position)


def cell(value: Any) -> Any:
    """A row's value as SQLite keeps it: nested values as JSON text."""
    if value is None or isinstance(value, int | float | str | bytes):
        return value
    if isinstance(value, bool):
        return int(value)
    return json.dumps(value, separators=(",", ":"), default=str)


class Matcher:
    """Runs rules over batches; keeps one sandboxed table per column set."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, ...], _Table] = {}

    def table(self, columns: tuple[str, ...]) -> _Table:
        table = self._tables.get(columns)
        if table is None:
            if len(self._tables) >= _CONNECTIONS_KEPT:
                self._tables.pop(next(iter(self._tables))).connection.close()
            table = self._tables[columns] = _Table(columns)
        return table

    def match(
        self,
        meta: Mapping[str, Any],
        rows: Sequence[Mapping[str, Any]],
        rules: Sequence[Rule],
        known: Iterable[str] = (),
    ) -> tuple[dict[str, list[int]], dict[str, RuleError]]:
        """One batch (``meta['first_seq']`` numbers its rows): see ``match_rows``."""
        first = int(meta["first_seq"])
        metas = [{**meta, "event_seq": first + index} for index in range(len(rows))]
        return self.match_rows(metas, rows, rules, known)

    def match_rows(
        self,
        metas: Sequence[Mapping[str, Any]],
        rows: Sequence[Mapping[str, Any]],
        rules: Sequence[Rule],
        known: Iterable[str] = (),
    ) -> tuple[dict[str, list[int]], dict[str, RuleError]]:
        """Rows of one artifact, each with its own meta columns (rows of many batches load
        into one table, matched by one statement per rule): for each rule the indexes of the
        rows it matches, and the rules that failed (a column neither the rows nor ``known``
        have, their time limit)."""
        columns = columns_of(rows, known)
        table = self.table(columns)
        own = columns[len(META_COLUMNS) + 1 :]
        table.load(
            [
                (index, *(cell(meta.get(name)) for name in META_COLUMNS),
                 *(cell(row.get(c)) for c in own))
                for index, (meta, row) in enumerate(zip(metas, rows, strict=True))
            ]
        )  # fmt: skip
        found: dict[str, list[int]] = {}
        failed: dict[str, RuleError] = {}
        for rule in rules:
            try:
                hits = table.select(rule.condition)
            except RuleError as exc:
                failed[rule.rule_id] = exc
                continue
            if hits:
                found[rule.rule_id] = hits
        return found, failed

    def check(self, rule: Rule, columns: Iterable[str]) -> None:
        """Compile ``rule`` against an artifact's columns; RuleError says what to fix."""
        table = self.table(columns_of([], columns))
        table.load([])
        table.select(rule.condition)
        known = set(table.columns)
        named = list(rule.summary_columns)
        if rule.window is not None:
            named += [rule.window.distinct, *rule.window.group_by]
        for name in named:
            if name not in known:
                raise RuleError(
                    "window" if rule.window is not None else "summary_columns",
                    f"no column {name!r} (the columns are: {', '.join(table.columns)})",
                )

    def close(self) -> None:
        for table in self._tables.values():
            table.connection.close()
        self._tables.clear()


def columns_of(rows: Sequence[Mapping[str, Any]], known: Iterable[str] = ()) -> tuple[str, ...]:
    """The row's position, the meta columns, the ``known`` ones, then every other column the
    rows have."""
    seen: dict[str, None] = dict.fromkeys((_ROW, *META_COLUMNS))
    seen.update((name, None) for name in known if name not in seen)
    for row in rows:
        for name in row:
            seen.setdefault(name, None)
    return tuple(seen)
