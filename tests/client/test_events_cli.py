"""``peregrine events`` against a real server and agent: assign with parameters, list, the
events read, exported and followed, the status, and unassign (twice: the second refused)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from peregrine.cli import events_cmd
from tests.client.conftest import Live

# The CLI reaches the live server only through the settings each test passes.
pytestmark = pytest.mark.usefixtures("no_connection_env")

app = typer.Typer()
events_cmd.register(app)
runner = CliRunner()

ART = "Test.Cli.EventClock"
EVENTS = f"""\
name: {ART}
description: A row every period.
type: CLIENT_EVENT
parameters:
  - name: period
    type: float
    default: 1
sources:
  - query: SELECT tick, time FROM clock(:period)
"""


def run(live: Live, *args: str) -> Result:
    return runner.invoke(app, ["events", *args], env={**live.env(), "COLUMNS": "250"})


def ok(live: Live, *args: str) -> Result:
    result = run(live, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


@pytest.mark.timeout(180)
def test_events_commands_end_to_end(live: Live, tmp_path: Path) -> None:
    live.server.repository.load_texts([("cli-event-clock.yaml", EVENTS)])
    client = live.client_id
    assigned = json.loads(ok(live, "assign", ART, "-p", "period=0.2", "--json").stdout)
    mine = [a for a in assigned["assignments"] if a["artifact"] == ART]
    assert mine and mine[0]["parameters"] == {"period": 0.2} and mine[0]["labels"] == []
    assert ART in ok(live, "assignments").stdout
    try:
        deadline = time.monotonic() + 60
        rows: list[dict[str, object]] = []
        while len(rows) < 3 and time.monotonic() < deadline:
            rows = json.loads(ok(live, "rows", client, ART, "--since", "1h", "--json").stdout)
            time.sleep(0.5)
        assert [r["_seq"] for r in rows[:3]] == [1, 2, 3]
        statuses = json.loads(ok(live, "status", "--client", client, "--json").stdout)
        assert any(s["artifact"] == ART and s["state"] == "running" for s in statuses)
        out = tmp_path / "events.jsonl"
        ok(live, "export", client, ART, "-o", str(out))
        assert json.loads(out.read_text().splitlines()[0])["tick"] == 1
        followed = ok(live, "follow", "--client", client, "--artifact", ART, "--for", "4", "--json")
        events = [json.loads(line) for line in followed.stdout.splitlines()]
        assert events and all(e["artifact"] == ART and e["seq"] > 3 for e in events)
    finally:
        ok(live, "unassign", ART)
    again = run(live, "unassign", ART)
    assert again.exit_code != 0 and "not assigned" in (again.stdout + again.stderr)
