"""``client.analysis``: SQL over collected results on the server (``POST /analysis``).

::

    rows = p.analysis.query(
        "SELECT name, count(*) AS n FROM hunt('H.0123456789abcdef', 'Generic.System.Pslist') "
        "GROUP BY name ORDER BY n"
    )
    table = p.analysis.arrow("SELECT * FROM clients()")        # pyarrow.Table, types kept
    frame = p.analysis.dataframe("SELECT * FROM collections()") # pandas, if installed
    p.analysis.export("SELECT ...", "out.parquet")               # streamed to a file

Rows come back as the server streams them (JSONL); bytes values, tagged ``{"$bytes": ...}``
on the wire, become ``bytes`` again. A result is cut at the server's row limit (or
``max_rows``): ask for aggregates rather than every row.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from peregrine.client._core import Call, export_format, pandas_module

if TYPE_CHECKING:
    from peregrine.client.aio import AsyncPeregrine
    from peregrine.client.sync import Peregrine


def analysis_call(
    sql: str, fmt: str = "jsonl", max_rows: int | None = None, timeout: float | None = None
) -> Call[None]:
    body: dict[str, Any] = {"sql": sql, "format": fmt}
    if max_rows is not None:
        body["max_rows"] = max_rows
    if timeout is not None:
        body["timeout"] = timeout
    return Call("POST", "/analysis", None, {}, body)


def decode_row(line: bytes) -> dict[str, Any]:
    """One JSONL row, ``{"$bytes": ...}`` values turned back into bytes."""
    row: dict[str, Any] = json.loads(line)
    return {key: _untag(value) for key, value in row.items()}


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("$bytes"), str):
            return base64.b64decode(value["$bytes"])
        if len(value) == 1 and isinstance(value.get("$literal"), dict):
            return {k: _untag(v) for k, v in value["$literal"].items()}
        return {k: _untag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untag(item) for item in value]
    return value


def _arrow_table(data: bytes) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("results as Arrow need pyarrow: pip install pyarrow") from None
    return pq.read_table(io.BytesIO(data))


def _read_timeout(client_timeout: httpx.Timeout, timeout: float | None) -> httpx.Timeout:
    """No read time-out of our own: the server's query time-out ends a slow query."""
    return httpx.Timeout(client_timeout.connect, read=None) if timeout is None else (
        httpx.Timeout(client_timeout.connect, read=timeout + 30)
    )  # fmt: skip


class Analysis:
    """Analysis queries of a :class:`~peregrine.client.Peregrine`."""

    def __init__(self, client: Peregrine) -> None:
        self._c = client

    def iter_rows(
        self, sql: str, *, max_rows: int | None = None, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """The result's rows as they stream (column -> value)."""
        call = analysis_call(sql, "jsonl", max_rows, timeout)
        with self._c._stream(call, _read_timeout(self._c._timeout, timeout)) as response:
            for line in response.iter_lines():
                if line:
                    yield decode_row(line.encode())

    def query(
        self, sql: str, *, max_rows: int | None = None, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Every row of the result (column -> value)."""
        return list(self.iter_rows(sql, max_rows=max_rows, timeout=timeout))

    def arrow(self, sql: str, *, max_rows: int | None = None, timeout: float | None = None) -> Any:
        """The result as a ``pyarrow.Table``, with DuckDB's column types."""
        call = analysis_call(sql, "parquet", max_rows, timeout)
        with self._c._stream(call, _read_timeout(self._c._timeout, timeout)) as response:
            return _arrow_table(response.read())

    def dataframe(
        self, sql: str, *, max_rows: int | None = None, timeout: float | None = None
    ) -> Any:
        """The result as a pandas DataFrame (pandas and pyarrow must be installed)."""
        pandas_module()
        return self.arrow(sql, max_rows=max_rows, timeout=timeout).to_pandas()

    def export(self, sql: str, path: str | os.PathLike[str], *, format: str | None = None) -> Path:
        """Stream the result to ``path`` (csv, jsonl or parquet; by default from its suffix)."""
        return self._c._to_file(analysis_call(sql, export_format(path, format)), path)


class AsyncAnalysis:
    """Analysis queries of an :class:`~peregrine.client.AsyncPeregrine`."""

    def __init__(self, client: AsyncPeregrine) -> None:
        self._c = client

    async def iter_rows(
        self, sql: str, *, max_rows: int | None = None, timeout: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        call = analysis_call(sql, "jsonl", max_rows, timeout)
        async with self._c._stream(call, _read_timeout(self._c._timeout, timeout)) as response:
            async for line in response.aiter_lines():
                if line:
                    yield decode_row(line.encode())

    async def query(
        self, sql: str, *, max_rows: int | None = None, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        return [row async for row in self.iter_rows(sql, max_rows=max_rows, timeout=timeout)]

    async def arrow(
        self, sql: str, *, max_rows: int | None = None, timeout: float | None = None
    ) -> Any:
        call = analysis_call(sql, "parquet", max_rows, timeout)
        async with self._c._stream(call, _read_timeout(self._c._timeout, timeout)) as response:
            return _arrow_table(await response.aread())

    async def export(
        self, sql: str, path: str | os.PathLike[str], *, format: str | None = None
    ) -> Path:
        return await self._c._to_file(analysis_call(sql, export_format(path, format)), path)
