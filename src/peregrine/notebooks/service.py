"""``NotebookService``: notebooks kept in the datastore, run through the analysis engine.

Who may do what: anyone who may read results reads their own notebooks and shared ones; a
caller with ANALYZE creates notebooks, edits their own and shared ones, and runs their cells
(a cell's SQL is then checked against the caller's own permissions, as any query is); only the
owner (or a SERVER_ADMIN) deletes a notebook or changes its sharing. Calls block: the API runs
them in threads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from peregrine.analysis import AnalysisEngine
from peregrine.auth.roles import ANALYZE
from peregrine.auth.sharing import may_open, owns, visible_to
from peregrine.datastore import Datastore
from peregrine.datastore.notebooks import CellRecord, NotebookRecord, new_cell_id, new_notebook_id
from peregrine.filestore import Filestore

from . import exchange, report, templates
from .model import (
    MAX_CELLS,
    NotebookError,
    NotebookForbidden,
    NotebookNotFound,
    check_cell,
    check_title,
)
from .runner import run_sql


class NotebookService:
    def __init__(self, datastore: Datastore, filestore: Filestore, engine: AnalysisEngine) -> None:
        self.datastore = datastore
        self.filestore = filestore
        self.engine = engine

    # -- reading --------------------------------------------------------------------------

    def visible(
        self, user: str, permissions: frozenset[str], limit: int, offset: int,
        hunt_id: str | None = None,
    ) -> tuple[list[NotebookRecord], int]:  # fmt: skip
        return self.datastore.notebooks.list(visible_to(user, permissions), limit, offset, hunt_id)

    def get(self, notebook_id: str, user: str, permissions: frozenset[str]) -> NotebookRecord:
        """The notebook with its cells and their stored results (nothing is run)."""
        notebook = self.datastore.notebooks.get(notebook_id)
        if notebook is None or not _may_read(notebook, user, permissions):
            raise NotebookNotFound(f"no notebook {notebook_id}: list them with GET /notebooks")
        return notebook

    # -- writing --------------------------------------------------------------------------

    def create(
        self,
        user: str,
        permissions: frozenset[str],
        title: str,
        description: str = "",
        shared: bool = False,
        hunt_id: str | None = None,
        client_id: str | None = None,
        cells: Iterable[dict[str, Any]] = (),
    ) -> NotebookRecord:
        """A new notebook; about a hunt or a client it starts with ready-made cells (after any
        given ones)."""
        _need_analyze(permissions)
        if hunt_id and client_id:
            raise NotebookError("a notebook is about a hunt or a client, not both")
        made = [_new_cell(c) for c in cells]
        try:
            if hunt_id:
                made += templates.hunt_cells(self.datastore, self.filestore, hunt_id)
            if client_id:
                made += templates.client_cells(self.datastore, self.filestore, client_id)
        except LookupError as exc:
            raise NotebookNotFound(f"no hunt or client {exc.args[0]}") from None
        _check_count(made)
        now = time.time()
        notebook = NotebookRecord(
            notebook_id=new_notebook_id(),
            title=check_title(title),
            description=description,
            owner=user,
            created=now,
            modified=now,
            shared=shared,
            hunt_id=hunt_id,
            client_id=client_id,
            cells=made,
        )
        self.datastore.notebooks.create(notebook)
        return notebook

    def update(
        self, notebook_id: str, user: str, permissions: frozenset[str], **changes: Any
    ) -> NotebookRecord:
        """Change the title or description (editors), or the sharing (the owner)."""
        notebook = self._editable(notebook_id, user, permissions)
        if "shared" in changes and not _owns(notebook, user, permissions):
            raise NotebookForbidden("only the notebook's owner changes whether it is shared")
        if "title" in changes:
            changes["title"] = check_title(changes["title"])
        self.datastore.notebooks.update(notebook_id, time.time(), **changes)
        return self.get(notebook_id, user, permissions)

    def delete(self, notebook_id: str, user: str, permissions: frozenset[str]) -> None:
        notebook = self.get(notebook_id, user, permissions)
        if not _owns(notebook, user, permissions):
            raise NotebookForbidden("only the notebook's owner (or an administrator) deletes it")
        self.datastore.notebooks.delete(notebook_id)

    def add_cell(
        self, notebook_id: str, user: str, permissions: frozenset[str], cell: dict[str, Any],
        position: int | None = None,
    ) -> CellRecord:  # fmt: skip
        notebook = self._editable(notebook_id, user, permissions)
        made = _new_cell(cell)
        cells = list(notebook.cells)
        cells.insert(len(cells) if position is None else max(0, position), made)
        _check_count(cells)
        self.datastore.notebooks.set_cells(notebook_id, cells, time.time())
        return made

    def edit_cell(
        self, notebook_id: str, cell_id: str, user: str, permissions: frozenset[str],
        text: str | None = None, chart: Any = ..., position: int | None = None,
    ) -> CellRecord:  # fmt: skip
        """Change a cell's text (its stored result goes: it answered other SQL), its chart
        (the result stays) or its place."""
        notebook = self._editable(notebook_id, user, permissions)
        cells = list(notebook.cells)
        index = _index(cells, cell_id, notebook_id)
        cell = cells[index]
        new_text = cell.text if text is None else text
        new_chart = cell.chart if chart is ... else chart
        new_chart = check_cell(cell.kind, new_text, new_chart)
        if new_text != cell.text:
            cell = replace(cell, text=new_text, result=None, ran=None, duration=None, ran_by=None)
        cell = replace(cell, chart=new_chart)
        cells[index] = cell
        if position is not None:
            cells.insert(max(0, position), cells.pop(index))
        self.datastore.notebooks.set_cells(notebook_id, cells, time.time())
        return cell

    def delete_cell(
        self, notebook_id: str, cell_id: str, user: str, permissions: frozenset[str]
    ) -> None:
        notebook = self._editable(notebook_id, user, permissions)
        cells = list(notebook.cells)
        cells.pop(_index(cells, cell_id, notebook_id))
        self.datastore.notebooks.set_cells(notebook_id, cells, time.time())

    # -- running --------------------------------------------------------------------------

    def run(
        self, notebook_id: str, user: str, permissions: frozenset[str],
        cell_ids: list[str] | None = None,
    ) -> list[CellRecord]:  # fmt: skip
        """Run the SQL cells named (all of them when None), in order; each result is kept as
        soon as it is known. Returns the cells run, with their new results."""
        notebook = self._editable(notebook_id, user, permissions)
        _need_analyze(permissions)
        cells = notebook.cells
        if cell_ids is not None:
            for cell_id in cell_ids:
                _index(cells, cell_id, notebook_id)
            cells = [c for c in cells if c.cell_id in set(cell_ids)]
        done: list[CellRecord] = []
        for cell in cells:
            if cell.kind != "sql":
                continue
            run = run_sql(self.engine, cell.text, permissions)
            self.datastore.notebooks.set_result(
                notebook_id, cell.cell_id, run.result, run.ran, run.duration, user
            )
            done.append(
                replace(cell, result=run.result, ran=run.ran, duration=run.duration, ran_by=user)
            )
        return done

    # -- export and import ----------------------------------------------------------------

    def export_html(self, notebook_id: str, user: str, permissions: frozenset[str]) -> str:
        return report.html(self.get(notebook_id, user, permissions), user)

    def export_json(
        self, notebook_id: str, user: str, permissions: frozenset[str]
    ) -> dict[str, Any]:
        return exchange.export(self.get(notebook_id, user, permissions))

    def import_json(self, document: Any, user: str, permissions: frozenset[str]) -> NotebookRecord:
        """A new notebook of ``user`` from an export, checked; nothing in it runs."""
        _need_analyze(permissions)
        notebook = exchange.parse(document, user)
        self.datastore.notebooks.create(notebook)
        return notebook

    def _editable(self, notebook_id: str, user: str, permissions: frozenset[str]) -> NotebookRecord:
        notebook = self.get(notebook_id, user, permissions)
        _need_analyze(permissions)
        if not (notebook.shared or _owns(notebook, user, permissions)):
            raise NotebookForbidden("only the owner edits a notebook that is not shared")
        return notebook


def _may_read(notebook: NotebookRecord, user: str, permissions: frozenset[str]) -> bool:
    return may_open(notebook.owner, notebook.shared, user, permissions)


def _owns(notebook: NotebookRecord, user: str, permissions: frozenset[str]) -> bool:
    return owns(notebook.owner, user, permissions)


def _need_analyze(permissions: frozenset[str]) -> None:
    if ANALYZE not in permissions:
        raise NotebookForbidden("writing and running notebooks needs the ANALYZE permission")


def _new_cell(cell: dict[str, Any]) -> CellRecord:
    kind = str(cell.get("kind", ""))
    text = cell.get("text", "")
    chart = check_cell(kind, text, cell.get("chart"))
    return CellRecord(cell_id=new_cell_id(), kind=kind, text=text, chart=chart)


def _check_count(cells: list[CellRecord]) -> None:
    if len(cells) > MAX_CELLS:
        raise NotebookError(f"a notebook holds at most {MAX_CELLS} cells")


def _index(cells: list[CellRecord], cell_id: str, notebook_id: str) -> int:
    for index, cell in enumerate(cells):
        if cell.cell_id == cell_id:
            return index
    raise NotebookNotFound(f"notebook {notebook_id} has no cell {cell_id}")
