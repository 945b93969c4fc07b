"""``peregrine results`` and ``peregrine hunts results`` with ``--sort/--desc/--filter``, and
``peregrine results --export``, against a real server and agent."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner, Result

from peregrine.cli import remote_cmd
from tests.client.conftest import Live

app = typer.Typer()
remote_cmd.register(app)
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("no_connection_env")


def run(live: Live, *args: str) -> Result:
    return runner.invoke(app, list(args), env={**live.env(), "COLUMNS": "250"})


def ok(live: Live, *args: str) -> Result:
    result = run(live, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def numbers(out: str) -> list[int]:
    return [json.loads(line)["n"] for line in out.splitlines()]


def test_collection_results_sorted_filtered_and_exported(live: Live, tmp_path: Path) -> None:
    flow_id = json.loads(
        ok(live, "collect", live.client_id, "Test.Numbers", "-p", "N=30", "--json").stdout
    )["flow"]["flow_id"]
    out = ok(live, "results", flow_id, "--sort", "n", "--desc", "-n", "3", "-f", "jsonl").stdout
    assert numbers(out) == [30, 29, 28]
    out = ok(live, "results", flow_id, "--filter", "n:>20", "--filter", "label:2", "--sort", "n",
             "--all", "-n", "2", "-f", "jsonl").stdout  # fmt: skip
    assert numbers(out) == [21, 22, 23, 24, 25, 26, 27, 28, 29]
    table = ok(live, "results", flow_id, "--sort", "label", "--desc", "-n", "1").stdout
    assert "row 00000030" in table and "(30 rows)" in table

    saved = tmp_path / "flow.csv"
    ok(live, "results", flow_id, "--export", str(saved))
    assert [int(r["n"]) for r in csv.DictReader(io.StringIO(saved.read_text()))] == list(
        range(1, 31)
    )
    ok(live, "results", flow_id, "-a", "Test.Numbers", "-s", "numbers", "--export",
       str(tmp_path / "flow.parquet"))  # fmt: skip
    assert pq.read_table(tmp_path / "flow.parquet").num_rows == 30

    bad = run(live, "results", flow_id, "--export", str(tmp_path / "flow.txt"))
    assert bad.exit_code == 1 and ".csv" in bad.stderr and "Traceback" not in bad.stderr
    bad = run(live, "results", flow_id, "--sort", "nope")
    assert bad.exit_code == 1 and "nope" in bad.stderr


def test_hunt_results_sorted_and_filtered(live: Live) -> None:
    hunt_id = json.loads(
        ok(live, "hunts", "create", "Test.Numbers", "-p", "N=6", "--expires", "1h", "--start",
           "--json").stdout
    )["hunt_id"]  # fmt: skip
    ok(live, "hunts", "watch", hunt_id, "--until-done", "--json")
    out = ok(live, "hunts", "results", hunt_id, "--sort", "n", "--desc", "-f", "jsonl").stdout
    assert numbers(out) == [6, 5, 4, 3, 2, 1]
    out = ok(live, "hunts", "results", hunt_id, "--filter", "n:<=2", "-f", "jsonl").stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["n"] for r in rows) == [1, 2]  # a filter alone promises no order
    assert {r["client_id"] for r in rows} == {live.client_id}
    ok(live, "hunts", "stop", hunt_id)
