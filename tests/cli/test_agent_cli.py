"""`peregrine agent`: its own argparse command line, and the same command in the full table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from peregrine.cli import app


def peregrine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peregrine", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_agent_help_names_its_options() -> None:
    run = peregrine("agent", "--help")
    assert run.returncode == 0, run.stderr
    assert "--config" in run.stdout
    assert "--log-level" in run.stdout


def test_agent_without_config_is_a_usage_error() -> None:
    run = peregrine("agent")
    assert run.returncode == 2
    assert "--config" in run.stderr


def test_agent_with_a_missing_config_says_so(tmp_path: Path) -> None:
    run = peregrine("agent", "-c", str(tmp_path / "client.yaml"))
    assert run.returncode == 1
    assert "Error:" in run.stderr
    assert "client configuration file not found" in run.stderr


def test_the_full_command_table_runs_the_same_agent(tmp_path: Path) -> None:
    assert "agent" in peregrine("--help").stdout
    result = CliRunner().invoke(app, ["agent", "--config", str(tmp_path / "client.yaml")])
    assert result.exit_code == 1
