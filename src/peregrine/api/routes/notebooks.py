"""Notebooks: ``/notebooks`` (list, create, import), ``/notebooks/{id}`` (read with every
cell's stored result, change, delete), its cells (add, edit, move, delete, run, result pages)
and its exports (``?format=html|json``). Readers read their own and shared notebooks; ANALYZE
edits them and runs cells (see ``peregrine.notebooks.service``). Every change, run and export
is audited with its outcome."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from peregrine.api.deps import Audit, context, require
from peregrine.api.schemas import MAX_INT
from peregrine.api.sharing import call
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import ANALYZE, READ_RESULTS
from peregrine.datastore.notebooks import CellRecord, NotebookRecord
from peregrine.notebooks import NotebookService
from peregrine.notebooks.model import MAX_CELLS, MAX_TEXT

router = APIRouter(prefix="/notebooks", tags=["notebooks"])

NotebookId = Path(pattern=r"^N\.[0-9a-f]{16}$", description="A notebook id (N. + 16 hex)")
CellId = Path(pattern=r"^c[0-9a-f]{12}$", description="A cell id")
#: Rows of each cell's stored result in a notebook's answer; the rest by result pages.
ROWS_IN_NOTEBOOK = 100


class CellIn(BaseModel):
    kind: Literal["markdown", "sql"]
    text: str = Field(default="", max_length=MAX_TEXT)
    chart: dict[str, Any] | None = Field(
        default=None,
        description='{"type": "table"}, {"type": "bar", "x": col, "y": col} or '
        '{"type": "line", "x": time col, "y": col}',
    )
    position: int | None = Field(default=None, ge=0, le=MAX_CELLS)


class CellEdit(BaseModel):
    text: str | None = Field(default=None, max_length=MAX_TEXT)
    chart: dict[str, Any] | None = None
    position: int | None = Field(default=None, ge=0, le=MAX_CELLS)


class NotebookIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    shared: bool = False
    hunt_id: str | None = Field(default=None, pattern=r"^H\.[0-9a-f]{16}$")
    client_id: str | None = Field(default=None, pattern=r"^C\.[0-9a-f]{16}$")
    cells: list[CellIn] = Field(default=[], max_length=MAX_CELLS)


class NotebookEdit(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    shared: bool | None = None


class RunIn(BaseModel):
    cells: list[str] | None = Field(default=None, max_length=MAX_CELLS, description="All if absent")


def _service(request: Request) -> NotebookService:
    return context(request).services.notebooks


@router.get("", summary="Notebooks you may read, newest first")
async def list_notebooks(
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_INT),
    hunt_id: str | None = Query(None, pattern=r"^H\.[0-9a-f]{16}$"),
    principal: Principal = Depends(require(READ_RESULTS)),
) -> dict[str, Any]:
    found, total = await call(
        _service(request).visible, principal.name, principal.permissions, limit, offset, hunt_id
    )
    return {"total": total, "items": [notebook_out(n, cells=False) for n in found]}


@router.post("", status_code=201, summary="Create a notebook (about a hunt or a client: "
             "with ready-made cells)")  # fmt: skip
async def create_notebook(
    request: Request, body: NotebookIn, principal: Principal = Depends(require(ANALYZE))
) -> dict[str, Any]:
    audit = Audit(request, principal)
    audit.on_outcome(
        "notebook.create",
        parameters={"title": body.title, "hunt_id": body.hunt_id, "client_id": body.client_id},
    )
    made = await call(
        _service(request).create,
        principal.name,
        principal.permissions,
        body.title,
        body.description,
        body.shared,
        body.hunt_id,
        body.client_id,
        [c.model_dump() for c in body.cells],
    )
    audit.on_outcome("notebook.create", target=made.notebook_id, parameters={"title": body.title})
    return notebook_out(made)


@router.post("/import", status_code=201, summary="Import a notebook exported as JSON")
async def import_notebook(
    request: Request,
    document: Annotated[
        dict[str, Any], Body(description="What GET /notebooks/{id}/export?format=json gave")
    ],
    principal: Principal = Depends(require(ANALYZE)),
) -> dict[str, Any]:
    audit = Audit(request, principal)
    audit.on_outcome("notebook.import", parameters={"title": str(document.get("title"))[:200]})
    made = await call(
        _service(request).import_json, document, principal.name, principal.permissions
    )
    audit.on_outcome("notebook.import", target=made.notebook_id)
    return notebook_out(made)


@router.get("/{notebook_id}", summary="A notebook, each cell with its stored result (not rerun)")
async def get_notebook(
    request: Request,
    notebook_id: str = NotebookId,
    rows: int = Query(ROWS_IN_NOTEBOOK, ge=0, le=1000, description="Result rows per cell"),
    principal: Principal = Depends(require(READ_RESULTS)),
) -> dict[str, Any]:
    found = await call(_service(request).get, notebook_id, principal.name, principal.permissions)
    return notebook_out(found, rows=rows)


@router.patch("/{notebook_id}", summary="Change the title, description or sharing")
async def edit_notebook(
    request: Request,
    body: NotebookEdit,
    notebook_id: str = NotebookId,
    principal: Principal = Depends(require(ANALYZE)),
) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    Audit(request, principal).on_outcome("notebook.update", target=notebook_id, parameters=changes)
    found = await call(
        _service(request).update, notebook_id, principal.name, principal.permissions, **changes
    )
    return notebook_out(found)


@router.delete("/{notebook_id}", status_code=204, summary="Delete a notebook (its owner)")
async def delete_notebook(
    request: Request,
    notebook_id: str = NotebookId,
    principal: Principal = Depends(require(ANALYZE)),
) -> None:
    Audit(request, principal).on_outcome("notebook.delete", target=notebook_id)
    await call(_service(request).delete, notebook_id, principal.name, principal.permissions)


@router.post("/{notebook_id}/cells", status_code=201, summary="Add a cell")
async def add_cell(
    request: Request,
    body: CellIn,
    notebook_id: str = NotebookId,
    principal: Principal = Depends(require(ANALYZE)),
) -> dict[str, Any]:
    Audit(request, principal).on_outcome(
        "notebook.cell.add", target=notebook_id, parameters=body.model_dump()
    )
    cell = await call(
        _service(request).add_cell, notebook_id, principal.name, principal.permissions,
        body.model_dump(exclude={"position"}), body.position,
    )  # fmt: skip
    return cell_out(cell)


@router.patch("/{notebook_id}/cells/{cell_id}", summary="Edit or move a cell")
async def edit_cell(
    request: Request,
    body: CellEdit,
    notebook_id: str = NotebookId,
    cell_id: str = CellId,
    principal: Principal = Depends(require(ANALYZE)),
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    Audit(request, principal).on_outcome(
        "notebook.cell.edit", target=f"{notebook_id}/{cell_id}", parameters=changes
    )
    cell = await call(
        _service(request).edit_cell, notebook_id, cell_id, principal.name, principal.permissions,
        **changes,
    )  # fmt: skip
    return cell_out(cell)


@router.delete("/{notebook_id}/cells/{cell_id}", status_code=204, summary="Delete a cell")
async def delete_cell(
    request: Request,
    notebook_id: str = NotebookId,
    cell_id: str = CellId,
    principal: Principal = Depends(require(ANALYZE)),
) -> None:
    Audit(request, principal).on_outcome("notebook.cell.delete", target=f"{notebook_id}/{cell_id}")
    await call(
        _service(request).delete_cell, notebook_id, cell_id, principal.name, principal.permissions
    )


@router.post("/{notebook_id}/run", summary="Run SQL cells (all, or those named) and keep results")
async def run_cells(
    request: Request,
    body: RunIn | None = None,
    notebook_id: str = NotebookId,
    principal: Principal = Depends(require(ANALYZE)),
) -> dict[str, Any]:
    names = body.cells if body is not None else None
    Audit(request, principal).on_outcome(
        "notebook.run", target=notebook_id, parameters={"cells": names}
    )
    ran = await call(
        _service(request).run, notebook_id, principal.name, principal.permissions, names
    )
    return {"cells": [cell_out(c, ROWS_IN_NOTEBOOK) for c in ran]}


@router.get("/{notebook_id}/cells/{cell_id}/result", summary="A page of a cell's stored result")
async def cell_result(
    request: Request,
    notebook_id: str = NotebookId,
    cell_id: str = CellId,
    offset: int = Query(0, ge=0, le=MAX_INT),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(require(READ_RESULTS)),
) -> dict[str, Any]:
    found = await call(_service(request).get, notebook_id, principal.name, principal.permissions)
    cell = next((c for c in found.cells if c.cell_id == cell_id), None)
    if cell is None:
        raise HTTPException(404, f"notebook {notebook_id} has no cell {cell_id}")
    result = cell.result or {"columns": [], "rows": [], "more": False, "error": None}
    rows = result["rows"]
    return {
        "columns": result["columns"],
        "rows": rows[offset : offset + limit],
        "offset": offset,
        "stored_rows": len(rows),
        "more": result["more"],
        "error": result["error"],
        "ran": cell.ran,
    }


@router.get("/{notebook_id}/export", summary="The notebook as an HTML report or as JSON")
async def export_notebook(
    request: Request,
    notebook_id: str = NotebookId,
    format: Literal["html", "json"] = Query("html"),
    principal: Principal = Depends(require(READ_RESULTS)),
) -> Any:
    Audit(request, principal).on_outcome(
        "notebook.export", target=notebook_id, parameters={"format": format}
    )
    service = _service(request)
    disposition = {"Content-Disposition": f'attachment; filename="{notebook_id}.{format}"'}
    if format == "html":
        page = await call(service.export_html, notebook_id, principal.name, principal.permissions)
        headers = {**disposition, "Content-Security-Policy": "default-src 'none'; "
                   "style-src 'unsafe-inline'", "X-Content-Type-Options": "nosniff"}  # fmt: skip
        return HTMLResponse(page, headers=headers)
    document = await call(service.export_json, notebook_id, principal.name, principal.permissions)
    return JSONResponse(json.loads(json.dumps(document, default=str)), headers=disposition)


def notebook_out(
    notebook: NotebookRecord, cells: bool = True, rows: int = ROWS_IN_NOTEBOOK
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "notebook_id": notebook.notebook_id,
        "title": notebook.title,
        "description": notebook.description,
        "owner": notebook.owner,
        "shared": notebook.shared,
        "hunt_id": notebook.hunt_id,
        "client_id": notebook.client_id,
        "created": notebook.created,
        "modified": notebook.modified,
    }
    if cells:
        out["cells"] = [cell_out(c, rows) for c in notebook.cells]
    return out


def cell_out(cell: CellRecord, rows: int = ROWS_IN_NOTEBOOK) -> dict[str, Any]:
    result = None
    if cell.result is not None:
        stored = cell.result.get("rows", [])
        result = {
            "columns": cell.result.get("columns", []),
            "rows": stored[:rows],
            "stored_rows": len(stored),
            "more": bool(cell.result.get("more")),
            "error": cell.result.get("error"),
        }
    return {
        "cell_id": cell.cell_id,
        "kind": cell.kind,
        "text": cell.text,
        "chart": cell.chart,
        "ran": cell.ran,
        "duration": cell.duration,
        "ran_by": cell.ran_by,
        "result": result,
    }
