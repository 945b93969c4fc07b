"""Notebooks from the Python client and from ``peregrine notebooks``, against a real server
and agent: create, run, show the stored results, export, import."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from peregrine.cli.full_app import app
from peregrine.client import BadRequest, Forbidden, Peregrine
from tests.client.conftest import Live

runner = CliRunner()


@pytest.fixture(scope="module")
def numbers(live: Live) -> str:
    with live.client() as client:
        flow = client.collections.create(live.client_id, [("Test.Numbers", {"N": 30})])
        assert client.collections.wait(flow.flow_id, timeout=60).state == "Finished"
        return flow.flow_id


def count_sql(flow_id: str) -> str:
    return f"SELECT count(*) AS n FROM flow('{flow_id}', 'Test.Numbers/numbers')"


def test_client_creates_runs_and_exports(
    live: Live, client: Peregrine, numbers: str, tmp_path: Path
) -> None:
    made = client.notebooks.create(
        "From the client", cells=[{"kind": "sql", "text": count_sql(numbers)}]
    )
    notebook = made["notebook_id"]
    cell = made["cells"][0]["cell_id"]
    client.notebooks.add_cell(notebook, "markdown", "# Notes")
    ran = client.notebooks.run(notebook)
    assert ran["cells"][0]["result"]["rows"] == [[30]]
    client.notebooks.edit_cell(notebook, cell, chart={"type": "table"})
    opened = client.notebooks.get(notebook)
    assert [c["kind"] for c in opened["cells"]] == ["sql", "markdown"]
    assert opened["cells"][0]["result"]["rows"] == [[30]]
    assert client.notebooks.result(notebook, cell)["rows"] == [[30]]
    report = client.notebooks.export(notebook, tmp_path / "report.html")
    assert "<h1>From the client</h1>" in report.read_text()
    document = client.notebooks.export(notebook, tmp_path / "notebook.json")
    copy = client.notebooks.import_(json.loads(document.read_text()))
    assert copy["cells"][0]["result"]["rows"] == [[30]]
    with pytest.raises(BadRequest, match="chart type 'pie'"):
        client.notebooks.edit_cell(notebook, cell, chart={"type": "pie"})
    with live.client(live.reader_token) as reader, pytest.raises(Forbidden, match="ANALYZE"):
        reader.notebooks.run(notebook)

    async def go() -> list[list[object]]:
        async with live.async_client() as aclient:
            answer = await aclient.notebooks.run(notebook, [cell])
            return answer["cells"][0]["result"]["rows"]  # type: ignore[no-any-return]

    assert asyncio.run(go()) == [[30]]


def test_the_cli(live: Live, numbers: str, tmp_path: Path) -> None:
    env = {**live.env(), "COLUMNS": "200", "PEREGRINE_DATA_DIR": str(tmp_path / "none")}
    out = runner.invoke(
        app, ["notebooks", "create", "CLI notebook", "--sql", count_sql(numbers)], env=env
    )
    assert out.exit_code == 0, out.stderr
    notebook = out.stdout.split(":")[0].strip()
    out = runner.invoke(app, ["notebooks", "show", notebook], env=env)
    assert out.exit_code == 0 and "(not run)" in out.stderr
    out = runner.invoke(app, ["notebooks", "run", notebook], env=env)
    assert out.exit_code == 0, out.stderr
    assert "30" in out.stdout and "ran " in out.stderr
    out = runner.invoke(app, ["notebooks", "list"], env=env)
    assert notebook in out.stdout and "CLI notebook" in out.stdout
    target = tmp_path / "nb.json"
    out = runner.invoke(app, ["notebooks", "export", notebook, str(target)], env=env)
    assert out.exit_code == 0 and f"saved to {target}" in out.stderr
    out = runner.invoke(app, ["notebooks", "import", str(target)], env=env)
    assert out.exit_code == 0 and "1 cells imported" in out.stdout
    out = runner.invoke(app, ["notebooks", "export", notebook, str(tmp_path / "nb.pdf")], env=env)
    assert out.exit_code == 1 and "html or json" in out.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "peregrine-notebook", "version": 9, "cells": []}))
    out = runner.invoke(app, ["notebooks", "import", str(bad)], env=env)
    assert out.exit_code == 1 and "version 9" in out.stderr
