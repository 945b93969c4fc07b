"""A filter's value as SQLite's ``=`` compares it with a plugin column of a declared type.

SQLite hands a virtual table the right-hand side of ``WHERE col = value`` as written, but
compares with the column's affinity: ``WHERE pid = '1'`` finds pid 1 and ``WHERE name = 5``
finds the name '5'. A plugin comparing the raw value in Python would find nothing. So
``pushed_value`` converts the value first, by SQLite itself, where the conversion is SQLite's
own in every case; where it is not, the plugin is not given the filter and SQLite's check of
every row decides.
"""

from __future__ import annotations

import threading
from typing import Any

import apsw

_NUMERIC = {"INTEGER": "i", "REAL": "r"}
_TEXT = ("TEXT", "JSON")
#: What a non-exact filter gets when the plugin must not narrow by it.
UNFILTERED = None


def pushed_value(value: Any, sql_type: str, exact: bool) -> Any:
    """``value`` converted as SQLite converts it to compare it with a ``sql_type`` column.

    A numeric column makes the comparison numeric whatever the other side: text that reads as a
    number becomes that number, as in SQLite. A text column compares a number as text only when
    the other side has no numeric affinity of its own (a literal, a parameter, an expression;
    not a join to an INTEGER column), which the plugin cannot know: a filter SQLite checks again
    is not pushed down then; an exact one (never checked again) is given SQLite's text of it.
    """
    if sql_type in _NUMERIC and isinstance(value, str):
        return _converter.convert(value, _NUMERIC[sql_type])
    if sql_type in _TEXT and isinstance(value, (int, float)):
        return _converter.convert(value, "t") if exact else UNFILTERED
    return value


class _Converter:
    """A private in-memory table whose columns apply SQLite's affinities to a value."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db: apsw.Connection | None = None

    def convert(self, value: Any, column: str) -> Any:
        with self._lock:
            if self._db is None:
                self._db = apsw.Connection(":memory:")
                self._db.execute("CREATE TABLE v(t TEXT, i INTEGER, r REAL)")
            sql = f"INSERT OR REPLACE INTO v(rowid, {column}) VALUES (1, ?) RETURNING {column}"
            return self._db.execute(sql, (value,)).get


_converter = _Converter()
