"""Whole tables, page by page, for the analysis engine's ``clients()``, ``collections()`` and
``hunts()``: plain rows of the columns an analyst may read (no keys, hashes or task payloads).

Keyset paging by primary key, so a page costs the same however far in it is and rows written
meanwhile never shift a page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Table, select

from .database import Database
from .schema import clients, flows, hunts

#: The columns each snapshot reads, in order (public_key, tasks and users are left out).
CLIENT_COLUMNS = (
    "client_id", "hostname", "fqdn", "os", "release", "kernel", "arch", "ip_addresses",
    "mac_addresses", "users", "labels", "agent_version", "first_seen", "last_seen",
    "last_address", "boot_time", "interrogated",
)  # fmt: skip
FLOW_COLUMNS = (
    "flow_id", "client_id", "hunt_id", "artifacts", "creator", "created", "started",
    "finished", "state", "error", "row_count", "byte_count", "upload_count", "upload_bytes",
    "log_count", "warning_count",
)  # fmt: skip
HUNT_COLUMNS = (
    "hunt_id", "description", "tags", "artifacts", "include_labels", "exclude_labels", "os",
    "client_limit", "expires", "creator", "created", "started", "stopped", "state",
    "parent_id",
)  # fmt: skip

_TABLES: dict[str, tuple[Table, tuple[str, ...], str]] = {
    "clients": (clients, CLIENT_COLUMNS, "client_id"),
    "collections": (flows, FLOW_COLUMNS, "flow_id"),
    "hunts": (hunts, HUNT_COLUMNS, "hunt_id"),
}


class SnapshotStore:
    """Reads whole tables for analysis, one keyset page at a time."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    def columns(name: str) -> tuple[str, ...]:
        """The columns of snapshot ``name`` (``clients``, ``collections`` or ``hunts``)."""
        return _TABLES[name][1]

    def rows(self, name: str, page: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
        """Every row of snapshot ``name``, in pages of ``page`` rows, by primary key."""
        table, names, key = _TABLES[name]
        key_column = table.c[key]
        query = select(*(table.c[n] for n in names)).order_by(key_column).limit(page)
        after: str | None = None
        position = names.index(key)
        while True:
            paged = query if after is None else query.where(key_column > after)
            with self._db.read() as conn:
                rows = [tuple(row) for row in conn.execute(paged)]
            if rows:
                yield rows
            if len(rows) < page:
                return
            after = rows[-1][position]
