"""``events('Artifact', client => …, since => …, until => …)``: one relation over the event
day files ``resultsets.py`` found, with ``client_id``, ``hostname`` and ``event_time`` (the
agent's time of the batch, a UTC timestamp) on every row, cut to ``[since, until)``."""

from __future__ import annotations

import hashlib
from typing import Any

from .resultsets import ResultFile
from .statement import TableCall, event_time

_EMPTY = (
    "SELECT NULL::VARCHAR AS client_id, NULL::VARCHAR AS hostname, "
    "NULL::TIMESTAMPTZ AS event_time, NULL::DOUBLE AS _time, NULL::BIGINT AS _seq, "
    "NULL::VARCHAR AS _source WHERE false"
)


def events_relation(conn: Any, call: TableCall, found: list[ResultFile]) -> Any:
    if not found:
        return conn.sql(_EMPTY)
    import pyarrow as pa

    _artifact, _client, since, until = call.args
    digest = hashlib.md5("\x1f".join(call.args).encode(), usedforsecurity=False).hexdigest()
    mapping = f"__events_map_{digest}"
    conn.from_arrow(
        pa.table(
            {
                "file_index": pa.array(range(len(found)), pa.uint64()),
                "client_id": [f.client_id for f in found],
                "hostname": pa.array([f.hostname for f in found], pa.string()),
            }
        )
    ).create(mapping)
    params: dict[str, Any] = {"files": [str(f.path) for f in found]}
    where = []
    if since:
        params["since"] = event_time(since, "since")
        where.append("r._time >= $since")
    if until:
        params["until"] = event_time(until, "until")
        where.append("r._time < $until")
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    return conn.sql(
        "SELECT m.client_id, m.hostname, to_timestamp(r._time) AS event_time, "
        "r.* FROM read_json($files, format = 'newline_delimited', "
        f"union_by_name = true) r JOIN {mapping} m ON m.file_index = r.file_index{condition}",
        params=params,
    )
