"""A collection's result set exported whole as CSV, JSONL and Parquet, in its stored order,
streamed and audited with its real outcome."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest

from tests.api.conftest import Live


@pytest.fixture(scope="module")
def numbers(live: Live) -> str:
    return live.collect("Test.Numbers", {"N": 12_000})  # more than one batch of rows


def export(live: Live, flow_id: str, fmt: str) -> bytes:
    with live.http(live.tokens["reader"]) as http:
        answer = http.get(
            f"/collections/{flow_id}/export", params={"artifact": "Test.Numbers", "format": fmt}
        )
    assert answer.status_code == 200, answer.text
    assert f"{flow_id}-Test.Numbers.{fmt}" in answer.headers["content-disposition"]
    return answer.content


def test_each_format_holds_every_row_in_order(live: Live, numbers: str) -> None:
    lines = export(live, numbers, "jsonl").decode().splitlines()
    assert [json.loads(line)["n"] for line in lines] == list(range(1, 12_001))
    rows = list(csv.DictReader(io.StringIO(export(live, numbers, "csv").decode())))
    assert len(rows) == 12_000 and rows[-1] == {"n": "12000", "label": "row 00012000"}
    table = pq.read_table(io.BytesIO(export(live, numbers, "parquet")))
    assert table.num_rows == 12_000 and table.column("n").to_pylist()[:3] == [1, 2, 3]


def test_an_export_is_audited_with_its_outcome(live: Live, numbers: str) -> None:
    export(live, numbers, "csv")
    entries = live.server.audit.query(actor="reader-user", action="collection.export")
    done = [e for e in entries if e.target == f"{live.client_id}/{numbers}"]
    assert done and all(e.result == "ok" for e in done)
    with live.http(live.tokens["reader"]) as http:
        missing = http.get(
            "/collections/F.0000000000000000/export", params={"artifact": "Test.Numbers"}
        )
    assert missing.status_code == 404
    entries = live.server.audit.query(actor="reader-user", action="collection.export")
    [refused] = [e for e in entries if e.target == "F.0000000000000000"]
    assert refused.result == "refused"
