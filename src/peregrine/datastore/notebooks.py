"""Notebooks and their cells: what an analyst wrote, in order, with each cell's last result.

A notebook's cells are read in one query, results included, so opening a notebook reruns
nothing. Positions are rewritten as a whole when cells move, inside one transaction.
"""

from __future__ import annotations

import builtins
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, delete, select, update

from .database import Database
from .owned import owned_page, update_owned
from .schema import notebook_cells, notebooks


def new_notebook_id() -> str:
    """``N.`` and 16 hex digits."""
    return "N." + secrets.token_hex(8)


def new_cell_id() -> str:
    """A cell's id, unique within its notebook."""
    return "c" + secrets.token_hex(6)


@dataclass(slots=True)
class CellRecord:
    cell_id: str
    kind: str
    text: str
    chart: dict[str, Any] | None = None
    #: The last run's result: columns, rows (capped), row count, whether cut, error.
    result: dict[str, Any] | None = None
    ran: float | None = None
    duration: float | None = None
    ran_by: str | None = None


@dataclass(slots=True)
class NotebookRecord:
    notebook_id: str
    title: str
    owner: str
    created: float
    modified: float
    description: str = ""
    shared: bool = False
    hunt_id: str | None = None
    client_id: str | None = None
    cells: list[CellRecord] = field(default_factory=list)


_CELL_FIELDS = ("cell_id", "kind", "text", "chart", "result", "ran", "duration", "ran_by")


class NotebookStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, notebook: NotebookRecord) -> None:
        """Store a new notebook with its cells."""
        with self._db.write() as conn:
            conn.execute(notebooks.insert().values(**_notebook_values(notebook)))
            if notebook.cells:
                conn.execute(
                    notebook_cells.insert(),
                    [
                        _cell_values(notebook.notebook_id, position, cell)
                        for position, cell in enumerate(notebook.cells)
                    ],
                )

    def get(self, notebook_id: str, with_cells: bool = True) -> NotebookRecord | None:
        with self._db.read() as conn:
            row = conn.execute(
                select(notebooks).where(notebooks.c.notebook_id == notebook_id)
            ).first()
            if row is None:
                return None
            record = _notebook(row)
            if with_cells:
                cells = conn.execute(
                    select(*(notebook_cells.c[name] for name in _CELL_FIELDS))
                    .where(notebook_cells.c.notebook_id == notebook_id)
                    .order_by(notebook_cells.c.position)
                )
                record.cells = [CellRecord(**row._asdict()) for row in cells]
            return record

    def list(
        self, visible_to: str | None, limit: int = 100, offset: int = 0, hunt_id: str | None = None
    ) -> tuple[builtins.list[NotebookRecord], int]:
        """Notebooks newest first (without cells), and how many there are. ``visible_to``: only
        that user's and shared ones; None: all."""
        about = [notebooks.c.hunt_id == hunt_id] if hunt_id is not None else []
        rows, total = owned_page(self._db, notebooks, "notebook_id", visible_to, limit, offset,
                                 *about)  # fmt: skip
        return [_notebook(row) for row in rows], total

    def update(self, notebook_id: str, modified: float, **values: Any) -> bool:
        """Change a notebook's title, description or sharing."""
        return update_owned(self._db, notebooks, "notebook_id", notebook_id, modified, values,
                            ("title", "description", "shared"))  # fmt: skip

    def delete(self, notebook_id: str) -> bool:
        with self._db.write() as conn:
            conn.execute(delete(notebook_cells).where(notebook_cells.c.notebook_id == notebook_id))
            done = conn.execute(delete(notebooks).where(notebooks.c.notebook_id == notebook_id))
            return bool(done.rowcount)

    def set_cells(
        self, notebook_id: str, cells: builtins.list[CellRecord], modified: float
    ) -> None:
        """Replace the notebook's cells with ``cells`` in this order (kept ones keep their
        results: the caller passes them back as they were)."""
        with self._db.write() as conn:
            conn.execute(delete(notebook_cells).where(notebook_cells.c.notebook_id == notebook_id))
            if cells:
                conn.execute(
                    notebook_cells.insert(),
                    [_cell_values(notebook_id, i, cell) for i, cell in enumerate(cells)],
                )
            conn.execute(
                update(notebooks)
                .where(notebooks.c.notebook_id == notebook_id)
                .values(modified=modified)
            )

    def set_result(
        self,
        notebook_id: str,
        cell_id: str,
        result: dict[str, Any],
        ran: float,
        duration: float,
        ran_by: str,
    ) -> bool:
        """Keep a cell's last result; False when the cell is gone (deleted meanwhile)."""
        with self._db.write() as conn:
            done = conn.execute(
                update(notebook_cells)
                .where(
                    notebook_cells.c.notebook_id == notebook_id,
                    notebook_cells.c.cell_id == cell_id,
                )
                .values(result=result, ran=ran, duration=duration, ran_by=ran_by)
            )
            return bool(done.rowcount)


def _notebook_values(notebook: NotebookRecord) -> dict[str, Any]:
    return {
        "notebook_id": notebook.notebook_id,
        "title": notebook.title,
        "description": notebook.description,
        "owner": notebook.owner,
        "shared": int(notebook.shared),
        "hunt_id": notebook.hunt_id,
        "client_id": notebook.client_id,
        "created": notebook.created,
        "modified": notebook.modified,
    }


def _cell_values(notebook_id: str, position: int, cell: CellRecord) -> dict[str, Any]:
    values = {name: getattr(cell, name) for name in _CELL_FIELDS}
    return {"notebook_id": notebook_id, "position": position, **values}


def _notebook(row: Row[Any]) -> NotebookRecord:
    values = row._asdict()
    values["shared"] = bool(values["shared"])
    return NotebookRecord(**values)
