"""``client.notebooks``: notebooks on the server (``/notebooks``).

::

    nb = p.notebooks.create("Triage", hunt_id="H.0123456789abcdef")   # ready-made cells
    p.notebooks.run(nb["notebook_id"])                                  # every SQL cell
    opened = p.notebooks.get(nb["notebook_id"])                         # stored results
    p.notebooks.export(nb["notebook_id"], "report.html")                # or .json

Answers are the API's JSON objects (dicts): a notebook with ``cells``, each with ``cell_id``,
``kind``, ``text``, ``chart`` and ``result`` (``columns``, ``rows``, ``more``, ``error``).
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peregrine.client._core import Call, segment
from peregrine.client._exports import format_for

if TYPE_CHECKING:
    from peregrine.client.aio import AsyncPeregrine
    from peregrine.client.sync import Peregrine

Json = dict[str, Any]


def _nb(notebook_id: str, tail: str = "") -> str:
    return f"/notebooks/{segment(notebook_id)}{tail}"


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class NotebookCalls:
    """Every notebook request, described once (sent by the sync and the async client)."""

    @staticmethod
    def list(limit: int = 100, offset: int = 0, hunt_id: str | None = None) -> Call[Json]:
        params = _drop_none({"limit": limit, "offset": offset, "hunt_id": hunt_id})
        return Call("GET", "/notebooks", Json, params)

    @staticmethod
    def create(title: str, **fields: Any) -> Call[Json]:
        return Call("POST", "/notebooks", Json, {}, {"title": title, **_drop_none(fields)})

    @staticmethod
    def get(notebook_id: str, rows: int | None = None) -> Call[Json]:
        return Call("GET", _nb(notebook_id), Json, _drop_none({"rows": rows}))

    @staticmethod
    def update(notebook_id: str, **changes: Any) -> Call[Json]:
        return Call("PATCH", _nb(notebook_id), Json, {}, _drop_none(changes))

    @staticmethod
    def delete(notebook_id: str) -> Call[None]:
        return Call("DELETE", _nb(notebook_id), None)

    @staticmethod
    def add_cell(notebook_id: str, kind: str, text: str, **fields: Any) -> Call[Json]:
        body = {"kind": kind, "text": text, **_drop_none(fields)}
        return Call("POST", _nb(notebook_id, "/cells"), Json, {}, body)

    @staticmethod
    def edit_cell(notebook_id: str, cell_id: str, **changes: Any) -> Call[Json]:
        path = _nb(notebook_id, f"/cells/{segment(cell_id)}")
        return Call("PATCH", path, Json, {}, changes)

    @staticmethod
    def delete_cell(notebook_id: str, cell_id: str) -> Call[None]:
        return Call("DELETE", _nb(notebook_id, f"/cells/{segment(cell_id)}"), None)

    @staticmethod
    def run(notebook_id: str, cells: builtins.list[str] | None = None) -> Call[Json]:
        return Call("POST", _nb(notebook_id, "/run"), Json, {}, {"cells": cells})

    @staticmethod
    def result(notebook_id: str, cell_id: str, offset: int = 0, limit: int = 100) -> Call[Json]:
        path = _nb(notebook_id, f"/cells/{segment(cell_id)}/result")
        return Call("GET", path, Json, {"offset": offset, "limit": limit})

    @staticmethod
    def export(notebook_id: str, fmt: str) -> Call[None]:
        return Call("GET", _nb(notebook_id, "/export"), None, {"format": fmt})

    @staticmethod
    def import_(document: Json) -> Call[Json]:
        return Call("POST", "/notebooks/import", Json, {}, document)


def export_format(path: str | os.PathLike[str], fmt: str | None) -> str:
    return format_for(path, fmt, ("html", "json"), "notebook")


class Notebooks:
    """Notebooks of a :class:`~peregrine.client.Peregrine`."""

    def __init__(self, client: Peregrine) -> None:
        self._c = client

    def list(self, limit: int = 100, offset: int = 0, hunt_id: str | None = None) -> Json:
        """``{"total": N, "items": [...]}``: the notebooks you may read, newest first."""
        return self._c._run(NotebookCalls.list(limit, offset, hunt_id))

    def create(self, title: str, **fields: Any) -> Json:
        """``description``, ``shared``, ``hunt_id`` or ``client_id``, ``cells``."""
        return self._c._run(NotebookCalls.create(title, **fields))

    def get(self, notebook_id: str, rows: int | None = None) -> Json:
        return self._c._run(NotebookCalls.get(notebook_id, rows))

    def update(self, notebook_id: str, **changes: Any) -> Json:
        return self._c._run(NotebookCalls.update(notebook_id, **changes))

    def delete(self, notebook_id: str) -> None:
        self._c._run(NotebookCalls.delete(notebook_id))

    def add_cell(self, notebook_id: str, kind: str, text: str, **fields: Any) -> Json:
        return self._c._run(NotebookCalls.add_cell(notebook_id, kind, text, **fields))

    def edit_cell(self, notebook_id: str, cell_id: str, **changes: Any) -> Json:
        return self._c._run(NotebookCalls.edit_cell(notebook_id, cell_id, **changes))

    def delete_cell(self, notebook_id: str, cell_id: str) -> None:
        self._c._run(NotebookCalls.delete_cell(notebook_id, cell_id))

    def run(self, notebook_id: str, cells: builtins.list[str] | None = None) -> Json:
        return self._c._run(NotebookCalls.run(notebook_id, cells))

    def result(self, notebook_id: str, cell_id: str, offset: int = 0, limit: int = 100) -> Json:
        return self._c._run(NotebookCalls.result(notebook_id, cell_id, offset, limit))

    def export(
        self, notebook_id: str, path: str | os.PathLike[str], format: str | None = None
    ) -> Path:
        """Write the HTML report or the JSON export to ``path`` (by its suffix by default)."""
        return self._c._to_file(
            NotebookCalls.export(notebook_id, export_format(path, format)), path
        )

    def import_(self, document: Json) -> Json:
        """A new notebook of yours from a JSON export (checked by the server; nothing runs)."""
        return self._c._run(NotebookCalls.import_(document))


class AsyncNotebooks:
    """Notebooks of an :class:`~peregrine.client.AsyncPeregrine`."""

    def __init__(self, client: AsyncPeregrine) -> None:
        self._c = client

    async def list(self, limit: int = 100, offset: int = 0, hunt_id: str | None = None) -> Json:
        return await self._c._run(NotebookCalls.list(limit, offset, hunt_id))

    async def create(self, title: str, **fields: Any) -> Json:
        return await self._c._run(NotebookCalls.create(title, **fields))

    async def get(self, notebook_id: str, rows: int | None = None) -> Json:
        return await self._c._run(NotebookCalls.get(notebook_id, rows))

    async def run(self, notebook_id: str, cells: builtins.list[str] | None = None) -> Json:
        return await self._c._run(NotebookCalls.run(notebook_id, cells))

    async def add_cell(self, notebook_id: str, kind: str, text: str, **fields: Any) -> Json:
        return await self._c._run(NotebookCalls.add_cell(notebook_id, kind, text, **fields))

    async def import_(self, document: Json) -> Json:
        return await self._c._run(NotebookCalls.import_(document))

    async def export(
        self, notebook_id: str, path: str | os.PathLike[str], format: str | None = None
    ) -> Path:
        call = NotebookCalls.export(notebook_id, export_format(path, format))
        return await self._c._to_file(call, path)
