"""``peregrine rules`` and ``peregrine alerts`` and the Python client's ``rules``/``alerts``
against a real server and agent: a rule added from a file fires on the agent's events, the
alert is listed, followed and acknowledged, and the rule is tried over the stored events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from peregrine.cli import alerts_cmd
from tests.client.conftest import Live

# The CLI reaches the live server only through the settings each test passes.
pytestmark = pytest.mark.usefixtures("no_connection_env")

app = typer.Typer()
alerts_cmd.register(app)
runner = CliRunner()

EVENTS = """\
name: Test.Cli.Ticks
description: A row every 0.2 s.
type: CLIENT_EVENT
sources:
  - query: SELECT tick, time FROM clock(0.2)
"""
RULE = """\
rule_id: Test.Cli.FifthTick
artifacts: [Test.Cli.Ticks]
condition: tick = 5
severity: critical
summary_columns: [tick]
"""
ALL = frozenset({"EXECVE", "FILESYSTEM_READ"})


@pytest.fixture
def ticking(live: Live) -> Iterator[None]:
    """The live agent runs Test.Cli.Ticks until the test ends."""
    live.server.repository.load_texts([("cli-events.yaml", EVENTS)])
    monitoring = live.server.services.event_monitoring
    live.run(monitoring.assign("Test.Cli.Ticks", {}, [], "admin", ALL))
    yield
    live.run(monitoring.unassign("Test.Cli.Ticks", "admin"))


def ok(live: Live, *args: str, token: str | None = None) -> Result:
    result = runner.invoke(app, list(args), env={**live.env(token), "COLUMNS": "250"})
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


@pytest.mark.timeout(90)
def test_a_rule_from_a_file_fires_and_its_alert_is_listed_followed_and_acknowledged(
    live: Live, ticking: None, tmp_path: Path
) -> None:
    rule_file = tmp_path / "rule.yaml"
    rule_file.write_text(RULE)
    assert "Test.Cli.FifthTick: version 1 saved" in ok(live, "rules", "add", str(rule_file)).stdout
    listed = json.loads(ok(live, "rules", "list", "--json").stdout)
    assert any(r["rule_id"] == "Test.Cli.FifthTick" and r["enabled"] for r in listed)

    with live.client() as client:
        follower = client.alerts.follow(rule_id="Test.Cli.FifthTick", timeout=30)
        alert = next(follower)  # raised once the agent's fifth tick arrives
    assert (alert["severity"], alert["client_id"]) == ("critical", live.client_id)
    assert alert["rows"][0]["tick"] == 5

    table = ok(live, "alerts", "list", "--rule", "Test.Cli.FifthTick", "--state", "open").stdout
    assert str(alert["alert_id"]) in table and "tick=5" in table
    done = ok(live, "alerts", "ack", str(alert["alert_id"]), "-m", "expected").stdout
    assert f"{alert['alert_id']}: acknowledged by admin" in done
    again = runner.invoke(app, ["alerts", "ack", str(alert["alert_id"])], env=live.env())
    assert again.exit_code == 1 and again.stderr.startswith("Error: ")
    assert "acknowledged already by admin" in again.stderr

    # Tried over what is stored: the fifth tick is there (and maybe later ones are not 5).
    wait_until_stored = time.monotonic() + 10
    while time.monotonic() < wait_until_stored:
        tried = json.loads(
            ok(live, "rules", "test", "Test.Cli.FifthTick", "--since", "10m", "--json").stdout
        )
        if tried["matched"]:
            break
        time.sleep(0.2)
    assert tried["matched"] == 1 and tried["matches"][0]["tick"] == 5
    human = ok(live, "rules", "test", str(rule_file), "--since", "10m").stdout
    assert "1 of " in human and " events matched" in human
    assert len(live.server.datastore.alerts.query(rule_id="Test.Cli.FifthTick")) == 1

    disabled = ok(live, "rules", "disable", "Test.Cli.FifthTick").stdout
    assert "Test.Cli.FifthTick: disabled (version 2)" in disabled


def test_a_reader_cannot_add_rules(live: Live, tmp_path: Path) -> None:
    rule_file = tmp_path / "rule.yaml"
    rule_file.write_text(RULE.replace("FifthTick", "Refused"))
    result = runner.invoke(app, ["rules", "add", str(rule_file)], env=live.env(live.reader_token))
    assert result.exit_code == 1 and "lacks the SERVER_ADMIN permission" in result.stderr
