"""``clients()``, ``collections()`` and ``hunts()``: the datastore's tables as Arrow tables,
read page by page through ``Datastore.snapshots`` (SQLite or PostgreSQL alike).

Times become UTC timestamps, lists stay lists, and a collection's or hunt's ``artifacts`` is
the list of artifact names (their parameters stay in the API's answers).
"""

from __future__ import annotations

from typing import Any

from peregrine.datastore import Datastore

#: Columns holding epoch seconds in the datastore.
_TIMES = frozenset(
    {
        "first_seen", "last_seen", "boot_time", "interrogated", "created", "started",
        "finished", "expires", "stopped",
    }
)  # fmt: skip
#: Columns holding JSON lists of strings.
_LISTS = frozenset(
    {"ip_addresses", "mac_addresses", "users", "labels", "tags", "include_labels",
     "exclude_labels", "os"}
)  # fmt: skip
#: Names the analyst sees for datastore columns named otherwise.
_RENAMED = {
    "row_count": "rows",
    "byte_count": "bytes",
    "upload_count": "uploads",
    "log_count": "logs",
    "warning_count": "warnings",
}


def snapshot(datastore: Datastore, name: str) -> Any:
    """Table ``name`` (``clients``, ``collections``, ``hunts``) as a ``pyarrow.Table``."""
    import pyarrow as pa

    columns = datastore.snapshots.columns(name)
    values: list[list[Any]] = [[] for _ in columns]
    for page in datastore.snapshots.rows(name):
        for row in page:
            for index, value in enumerate(row):
                values[index].append(value)
    arrays = [_array(column, data) for column, data in zip(columns, values, strict=True)]
    return pa.table(arrays, names=[_RENAMED.get(c, c) for c in columns])


def _array(column: str, data: list[Any]) -> Any:
    import pyarrow as pa

    if column in _TIMES:
        micros = [None if v is None else round(float(v) * 1_000_000) for v in data]
        return pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    if column in _LISTS:
        return pa.array([_strings(v) for v in data], pa.list_(pa.string()))
    if column == "artifacts":
        names = [[str(a.get("name")) for a in v if isinstance(a, dict)] if v else [] for v in data]
        return pa.array(names, pa.list_(pa.string()))
    if column in _RENAMED or column == "client_limit":
        return pa.array([None if v is None else int(v) for v in data], pa.int64())
    return pa.array([None if v is None else str(v) for v in data], pa.string())


def _strings(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(item) for item in value]
    return [str(value)]
