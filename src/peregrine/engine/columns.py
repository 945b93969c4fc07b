"""What a query's result looks like, apart from SQLite: the parent side of a query worker
describes its rows with it without loading the engine (apsw)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Column:
    """A result column as the query names it, with the type SQLite declared (if any)."""

    name: str
    type: str | None
