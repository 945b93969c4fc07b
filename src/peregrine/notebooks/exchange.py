"""A notebook as JSON, to import on another server: its cells with their stored results. An
import is checked as strictly as an edit through the API (kinds, sizes, charts, result shape)
and becomes a new notebook of the importer; nothing in it is run."""

from __future__ import annotations

import json
import time
from typing import Any

from peregrine.datastore.notebooks import CellRecord, NotebookRecord, new_cell_id, new_notebook_id

from .model import MAX_CELLS, RESULT_BYTES, RESULT_ROWS, NotebookError, check_cell, check_title

FORMAT = "peregrine-notebook"
VERSION = 1
#: The largest import accepted (bytes of JSON).
MAX_IMPORT_BYTES = 64 << 20


def export(notebook: NotebookRecord) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "notebook_id": notebook.notebook_id,
        "title": notebook.title,
        "description": notebook.description,
        "owner": notebook.owner,
        "hunt_id": notebook.hunt_id,
        "client_id": notebook.client_id,
        "cells": [
            {
                "kind": c.kind,
                "text": c.text,
                "chart": c.chart,
                "result": c.result,
                "ran": c.ran,
                "duration": c.duration,
                "ran_by": c.ran_by,
            }
            for c in notebook.cells
        ],
    }


def parse(document: Any, owner: str) -> NotebookRecord:
    """A new notebook of ``owner`` from an exported document; NotebookError says what is
    wrong, naming the cell."""
    if isinstance(document, bytes | str):
        if len(document) > MAX_IMPORT_BYTES:
            raise NotebookError(f"an import is at most {MAX_IMPORT_BYTES:,} bytes")
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise NotebookError(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise NotebookError(f"not a notebook export (its 'format' must be {FORMAT!r})")
    if document.get("version") != VERSION:
        raise NotebookError(f"notebook export version {document.get('version')!r}: this "
                            f"server reads version {VERSION}")  # fmt: skip
    cells = document.get("cells")
    if not isinstance(cells, list) or len(cells) > MAX_CELLS:
        raise NotebookError(f"'cells' is a list of at most {MAX_CELLS} cells")
    made = [_cell(number, cell) for number, cell in enumerate(cells, 1)]
    now = time.time()
    return NotebookRecord(
        notebook_id=new_notebook_id(),
        title=check_title(str(document.get("title", ""))),
        description=_string(document.get("description", ""), "description", 10_000),
        owner=owner,
        created=now,
        modified=now,
        hunt_id=_optional_id(document.get("hunt_id"), "hunt_id"),
        client_id=_optional_id(document.get("client_id"), "client_id"),
        cells=made,
    )


def _cell(number: int, cell: Any) -> CellRecord:
    where = f"cell {number}"
    if not isinstance(cell, dict):
        raise NotebookError(f"{where}: a cell is an object with kind and text")
    try:
        kind, text = str(cell.get("kind")), cell.get("text", "")
        chart = check_cell(kind, text, cell.get("chart"))
        result = _result(cell.get("result"), kind)
    except NotebookError as exc:
        raise NotebookError(f"{where}: {exc}") from None
    ran, duration = cell.get("ran"), cell.get("duration")
    for name, value in (("ran", ran), ("duration", duration)):
        if value is not None and (not isinstance(value, int | float) or value < 0):
            raise NotebookError(f"{where}: {name} is a number of seconds")
    if result is None:
        ran = duration = None
    return CellRecord(
        cell_id=new_cell_id(),
        kind=kind,
        text=text,
        chart=chart,
        result=result,
        ran=ran,
        duration=duration,
        ran_by=_string(cell.get("ran_by"), "ran_by", 200) if result is not None else None,
    )


def _result(result: Any, kind: str) -> dict[str, Any] | None:
    if result is None:
        return None
    if kind != "sql":
        raise NotebookError("only a SQL cell has a result")
    if not isinstance(result, dict):
        raise NotebookError("a result is an object with columns and rows")
    columns, rows = result.get("columns"), result.get("rows")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise NotebookError("a result's columns are a list of names")
    if not isinstance(rows, list) or len(rows) > RESULT_ROWS:
        raise NotebookError(f"a result's rows are a list of at most {RESULT_ROWS} rows")
    if any(not isinstance(row, list) or len(row) != len(columns) for row in rows):
        raise NotebookError("each row of a result has one value per column")
    if len(json.dumps(rows)) > RESULT_BYTES:
        raise NotebookError(f"a result holds at most {RESULT_BYTES:,} bytes of rows")
    error = result.get("error")
    if error is not None and (
        not isinstance(error, dict) or not isinstance(error.get("message"), str)
    ):
        raise NotebookError("a result's error is an object with a message")
    return {"columns": columns, "rows": rows, "more": bool(result.get("more")), "error": error}


def _string(value: Any, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise NotebookError(f"{name} is text of at most {limit:,} characters")
    return value


def _optional_id(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isprintable():
        raise NotebookError(f"{name} is an id or null")
    return value
