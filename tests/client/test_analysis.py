"""Analysis from the Python client (rows, Arrow, a file) and from ``peregrine analyze``, against
a real server and agent."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from peregrine.cli.full_app import app
from peregrine.client import BadRequest, Forbidden, Peregrine
from tests.client.conftest import Live

runner = CliRunner()
N = 50


@pytest.fixture(scope="module")
def numbers(live: Live) -> str:
    with live.client() as client:
        flow = client.collections.create(live.client_id, [("Test.Numbers", {"N": N})])
        assert client.collections.wait(flow.flow_id, timeout=60).state == "Finished"
        return flow.flow_id


def stack_sql(flow_id: str) -> str:
    return (
        f"SELECT n % 2 AS odd, count(*) AS rows, list(n ORDER BY n)[1] AS first "
        f"FROM flow('{flow_id}', 'Test.Numbers/numbers') GROUP BY odd ORDER BY odd"
    )


EXPECTED = [{"odd": 0, "rows": N // 2, "first": 2}, {"odd": 1, "rows": N // 2, "first": 1}]


def test_query_arrow_and_export(client: Peregrine, numbers: str, tmp_path: Path) -> None:
    assert client.analysis.query(stack_sql(numbers)) == EXPECTED
    table = client.analysis.arrow(stack_sql(numbers))
    assert table.column_names == ["odd", "rows", "first"] and table.to_pylist() == EXPECTED
    saved = client.analysis.export(stack_sql(numbers), tmp_path / "stack.parquet")
    assert pq.read_table(saved).to_pylist() == EXPECTED
    rows = client.analysis.query(
        f"SELECT n FROM flow('{numbers}', 'Test.Numbers/numbers')", max_rows=3
    )
    assert len(rows) == 3


def test_async_client(live: Live, numbers: str) -> None:
    async def go() -> list[dict[str, object]]:
        async with live.async_client() as client:
            return await client.analysis.query(stack_sql(numbers))

    assert asyncio.run(go()) == EXPECTED


def test_errors_are_the_clients_own(live: Live, client: Peregrine) -> None:
    with pytest.raises(BadRequest, match="only a SELECT"):
        client.analysis.query("DROP TABLE x")
    with live.client(live.reader_token) as reader, pytest.raises(Forbidden, match="ANALYZE"):
        reader.analysis.query("SELECT 1")


def test_the_cli_prints_like_peregrine_query(live: Live, numbers: str, tmp_path: Path) -> None:
    env = {**live.env(), "COLUMNS": "200", "PEREGRINE_DATA_DIR": str(tmp_path / "none")}
    out = runner.invoke(app, ["analyze", stack_sql(numbers), "-f", "jsonl"], env=env)
    assert out.exit_code == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == EXPECTED
    out = runner.invoke(app, ["analyze", stack_sql(numbers), "-f", "csv"], env=env)
    assert list(csv.DictReader(io.StringIO(out.stdout))) == [
        {k: str(v) for k, v in row.items()} for row in EXPECTED
    ]
    out = runner.invoke(app, ["analyze", stack_sql(numbers)], env=env)
    assert "odd" in out.stdout and "first" in out.stdout
    target = tmp_path / "stack.csv"
    out = runner.invoke(app, ["analyze", stack_sql(numbers), "-o", str(target)], env=env)
    assert out.exit_code == 0 and f"saved to {target}" in out.stderr
    assert target.read_text().splitlines()[0] == "odd,rows,first"
    out = runner.invoke(app, ["analyze", "SELECT * FROM read_csv('/etc/passwd')"], env=env)
    assert out.exit_code == 1 and out.stderr.startswith("Error: ")
    assert "files, network and settings are off" in out.stderr
