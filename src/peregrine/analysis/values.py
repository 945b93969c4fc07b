"""DuckDB's values (through Arrow) as JSON that the datastore, the API and a report can all
carry: times as ISO 8601 text, bytes tagged as the filestore tags them, decimals and UUIDs as
text, NaN and infinities as text."""

from __future__ import annotations

import base64
import datetime
import decimal
import uuid
from typing import Any


def jsonable(value: Any) -> Any:
    """One DuckDB value as JSON the datastore, the API and the report can all carry."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)
