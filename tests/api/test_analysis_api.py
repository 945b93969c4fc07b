"""``POST /analysis`` over a real server, agent and collection: the formats, the refusals (with
the reason, audited), and the row limit."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest

from tests.api.conftest import Live

N = 300


@pytest.fixture(scope="module")
def numbers(live: Live) -> str:
    """A finished collection of Test.Numbers: N rows (n, label)."""
    return live.collect("Test.Numbers", {"N": N})


def post(live: Live, role: str, **body: object) -> tuple[int, bytes, dict[str, str]]:
    with live.http(live.tokens[role]) as http:
        answer = http.post("/analysis", json=body)
        return answer.status_code, answer.content, dict(answer.headers)


def test_jsonl_csv_and_parquet(live: Live, numbers: str) -> None:
    sql = (
        f"SELECT n % 3 AS bucket, count(*) AS rows, max(label) AS last "
        f"FROM flow('{numbers}', 'Test.Numbers') GROUP BY bucket ORDER BY bucket"
    )
    expected = [
        {
            "bucket": b,
            "rows": N // 3,
            "last": f"row {max(i for i in range(1, N + 1) if i % 3 == b):08d}",
        }
        for b in range(3)
    ]
    status, body, headers = post(live, "analyst", sql=sql)
    assert status == 200, body
    assert headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in body.splitlines()] == expected
    status, body, _ = post(live, "analyst", sql=sql, format="csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert rows == [{k: str(v) for k, v in row.items()} for row in expected]
    status, body, _ = post(live, "analyst", sql=sql, format="parquet")
    assert status == 200
    assert pq.read_table(io.BytesIO(body)).to_pylist() == expected


def test_the_datastore_tables_name_the_agent(live: Live, numbers: str) -> None:
    sql = (
        "SELECT c.client_id, f.state FROM collections() f JOIN clients() c USING (client_id) "
        f"WHERE f.flow_id = '{numbers}'"
    )
    status, body, _ = post(live, "api", sql=sql)
    assert status == 200, body
    assert json.loads(body) == {"client_id": live.client_id, "state": "Finished"}


def test_a_reader_is_refused_and_the_refusal_audited(live: Live, numbers: str) -> None:
    status, body, _ = post(live, "reader", sql="SELECT 1")
    assert status == 403
    assert "lacks the ANALYZE permission" in json.loads(body)["detail"]
    [entry] = live.server.audit.query(actor="reader-user", action="permission.denied.post")[:1]
    assert entry.target == "/api/v1/analysis" and entry.result == "refused"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "files, network and settings are off"),
        ("COPY (SELECT 1) TO '/tmp/peregrine-api-out.csv'", "only a SELECT"),
        ("SELECT * FROM flow('F.0000000000000000', 'Test.Numbers')", "no collection"),
        ("SELECT nope FROM range(3)", "nope"),
    ],
)
def test_refusals_say_why_and_are_audited(live: Live, sql: str, message: str) -> None:
    status, body, _ = post(live, "investigator", sql=sql)
    assert status == 400
    assert message in json.loads(body)["detail"]
    entries = live.server.audit.query(actor="investigator-user", action="analysis.query")
    assert any(e.result == "refused" and e.parameters["sql"] == sql for e in entries)


def test_the_row_limit_cuts_the_stream(live: Live, numbers: str) -> None:
    sql = f"SELECT n FROM flow('{numbers}', 'Test.Numbers') ORDER BY n"
    status, body, headers = post(live, "analyst", sql=sql, max_rows=7)
    assert status == 200
    assert [json.loads(line)["n"] for line in body.splitlines()] == list(range(1, 8))
    assert headers["x-peregrine-max-rows"] == "7"


def test_a_time_out_is_a_clear_error(live: Live) -> None:
    sql = "SELECT sum(hash(i)) FROM range(100000000000) t(i)"
    status, body, _ = post(live, "analyst", sql=sql, timeout=0.5)
    assert status == 400
    assert "time-out of 0.5 s" in json.loads(body)["detail"]
