"""Timelines from the Python client and from ``peregrine timeline``, against a real server
and agent: define, page, export for Timesketch, delete."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from peregrine.cli.full_app import app
from peregrine.client import BadRequest, Peregrine
from tests.client.conftest import Live

runner = CliRunner()


@pytest.fixture(scope="module")
def numbers(live: Live) -> str:
    with live.client() as client:
        flow = client.collections.create(live.client_id, [("Test.Numbers", {"N": 12})])
        assert client.collections.wait(flow.flow_id, timeout=60).state == "Finished"
        return flow.flow_id


def source(flow_id: str) -> dict[str, object]:
    return {"kind": "flow", "id": flow_id, "artifact": "Test.Numbers", "source": "numbers",
            "time": "n", "desc": "Counted", "message": "n is {n}"}  # fmt: skip


def test_client_pages_and_exports(
    live: Live, client: Peregrine, numbers: str, tmp_path: Path
) -> None:
    made = client.timelines.create("Counting", [source(numbers)])
    tid = made["timeline_id"]
    page = client.timelines.rows(tid, limit=5, start=3, end="1970-01-01T00:00:09Z")
    assert [r["message"] for r in page["rows"]] == [f"n is {n}" for n in range(3, 8)]
    assert page["next_offset"] == 5
    every = list(client.timelines.iter_rows(tid, page_size=3, q="1"))  # in the row's values
    assert [r["message"] for r in every] == ["n is 1", "n is 10", "n is 11", "n is 12"]
    saved = client.timelines.export(tid, tmp_path / "t.jsonl", end=4)
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [e["message"] for e in lines] == ["n is 1", "n is 2", "n is 3"]
    assert set(lines[0]) >= {"message", "datetime", "timestamp", "timestamp_desc"}
    with pytest.raises(BadRequest, match=r"time column its rows do not have.*when"):
        bad = client.timelines.create("Bad", [{**source(numbers), "time": "when"}])
        client.timelines.rows(bad["timeline_id"])
    with pytest.raises(TypeError, match="unknown timeline filter"):
        client.timelines.export(tid, tmp_path / "x.csv", text="n")

    async def go() -> list[str]:
        async with live.async_client() as aclient:
            answer = await aclient.timelines.rows(tid, limit=2)
            return [r["message"] for r in answer["rows"]]

    assert asyncio.run(go()) == ["n is 1", "n is 2"]
    client.timelines.delete(tid)
    assert tid not in [t["timeline_id"] for t in client.timelines.list()["items"]]


def test_the_cli(live: Live, numbers: str, tmp_path: Path) -> None:
    env = {**live.env(), "COLUMNS": "200", "PEREGRINE_DATA_DIR": str(tmp_path / "none")}
    definition = tmp_path / "sources.json"
    definition.write_text(json.dumps([source(numbers)]))
    out = runner.invoke(app, ["timeline", "create", "CLI", f"@{definition}"], env=env)
    assert out.exit_code == 0, out.stderr
    tid = out.stdout.split()[0]
    out = runner.invoke(app, ["timeline", "rows", tid, "--start", "11", "-f", "jsonl"], env=env)
    assert out.exit_code == 0, out.stderr
    assert [json.loads(line)["message"] for line in out.stdout.splitlines()] == [
        "n is 11", "n is 12"
    ]  # fmt: skip
    out = runner.invoke(app, ["timeline", "list"], env=env)
    assert tid in out.stdout
    target = tmp_path / "t.csv"
    out = runner.invoke(app, ["timeline", "export", tid, str(target), "-q", "00012"], env=env)
    assert out.exit_code == 0 and target.read_text().splitlines()[0].startswith(
        "message,datetime,timestamp,timestamp_desc"
    )
    out = runner.invoke(app, ["timeline", "create", "Bad", '[{"kind": "x"}]'], env=env)
    assert out.exit_code == 1 and "source 1: kind 'x'" in out.stderr
    out = runner.invoke(app, ["timeline", "delete", tid], env=env)
    assert out.exit_code == 0 and f"deleted {tid}" in out.stderr
