"""What notebooks and timelines share in the datastore: they belong to an owner, may be
shared, and are listed newest first; a listing for a user holds theirs and the shared ones."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Row, Table, func, or_, select, update

from .database import Database


def owned_page(
    db: Database,
    table: Table,
    key: str,
    visible_to: str | None,
    limit: int,
    offset: int,
    *conditions: ColumnElement[bool],
) -> tuple[list[Row[Any]], int]:
    """A page of ``table`` newest first, and how many rows match; ``visible_to``: only that
    user's and the shared ones (None: all)."""
    where = list(conditions)
    if visible_to is not None:
        where.append(or_(table.c.owner == visible_to, table.c.shared != 0))
    query = select(table).where(*where).order_by(table.c.modified.desc(), table.c[key])
    count = select(func.count()).select_from(table).where(*where)
    with db.read() as conn:
        rows = list(conn.execute(query.limit(limit).offset(offset)).all())
        total = int(conn.execute(count).scalar_one())
    return rows, total


def update_owned(
    db: Database,
    table: Table,
    key: str,
    ident: str,
    modified: float,
    values: dict[str, Any],
    allowed: tuple[str, ...],
) -> bool:
    """Change the ``allowed`` fields given in ``values`` (``shared`` stored as 0 or 1)."""
    changes = {k: v for k, v in values.items() if k in allowed}
    if "shared" in changes:
        changes["shared"] = int(bool(changes["shared"]))
    with db.write() as conn:
        done = conn.execute(
            update(table).where(table.c[key] == ident).values(modified=modified, **changes)
        )
        return bool(done.rowcount)
