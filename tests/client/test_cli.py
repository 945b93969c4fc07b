"""The CLI commands over the API (``peregrine clients/collect/flows/results/hunts/
server-artifacts``) against a real server and agent running in a background thread."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from peregrine.cli import remote_cmd
from tests.client.conftest import Live

# The CLI reaches the live server only through the settings each test passes.
pytestmark = pytest.mark.usefixtures("no_connection_env")

app = typer.Typer()
remote_cmd.register(app)
runner = CliRunner()

GOOD = """\
name: Custom.Cli.Hello
description: Says hello.
sources:
  - query: SELECT 'hello' AS greeting
"""


def run(live: Live, *args: str, token: str | None = None) -> Result:
    return runner.invoke(app, list(args), env={**live.env(token), "COLUMNS": "250"})


def ok(live: Live, *args: str) -> Result:
    result = run(live, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def refused(result: Result) -> str:
    """The error line of a refused command (exit status 1, no traceback)."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.startswith("Error: ")
    return result.stderr


def test_clients_table_and_json(live: Live) -> None:
    data = json.loads(ok(live, "clients", f"client:{live.client_id}", "--json").stdout)
    assert data["total"] == 1 and data["items"][0]["client_id"] == live.client_id
    table = ok(live, "clients").stdout
    # A connected client says so, not "last seen 55s ago".
    assert live.client_id in table and "connected" in table and "ago" not in table
    assert ok(live, "clients", "label:no-such-label").stdout == "0 rows\n"


def test_tables_at_80_columns_keep_ids_whole(live: Live) -> None:
    flow = json.loads(
        ok(live, "collect", live.client_id, "Test.Numbers", "-p", "N=1", "--json").stdout
    )["flow"]
    narrow = {**live.env(), "COLUMNS": "80"}
    for args, whole in (
        (["flows", live.client_id], flow["flow_id"]),
        (["clients"], live.client_id),
    ):
        out = runner.invoke(app, args, env=narrow).stdout
        assert all(len(line) <= 80 for line in out.splitlines()), out
        assert whole in out and "…" not in out, out


def test_connection_settings_are_explained_when_missing() -> None:
    result = runner.invoke(app, ["clients"])
    assert "PEREGRINE_URL" in refused(result) and "--url" in result.stderr
    result = runner.invoke(app, ["clients", "--url", "https://127.0.0.1:1"])
    assert "PEREGRINE_TOKEN" in refused(result)


def test_options_override_the_environment(live: Live) -> None:
    result = runner.invoke(
        app,
        ["clients", "--json", "--url", live.url, "--token", live.admin_token,
         "--ca-cert", live.ca_cert],
    )  # fmt: skip
    assert result.exit_code == 0 and json.loads(result.stdout)["total"] >= 1


def test_collect_waits_then_prints_results(live: Live, tmp_path: Path) -> None:
    data = json.loads(
        ok(live, "collect", live.client_id, "Test.Numbers", "-p", "N=5", "--json").stdout
    )
    assert data["flow"]["state"] == "Finished"
    assert [r["n"] for r in data["results"]["Test.Numbers/numbers"]] == [1, 2, 3, 4, 5]

    result = ok(live, "collect", live.client_id, "Test.Numbers", "-p", "N=3")
    assert "Test.Numbers/numbers" in result.stdout and "row 00000003" in result.stdout
    assert "Finished, 3 rows" in result.stderr

    # Unscoped parameters go to the artifacts that declare them; scoped ones to that one.
    evidence = tmp_path / "e.txt"
    evidence.write_text("cli evidence")
    data = json.loads(
        ok(live, "collect", live.client_id, "Test.Numbers", "Test.Upload",
           "-p", "Test.Numbers:N=2", "-p", f"Path={evidence}", "--json").stdout
    )  # fmt: skip
    assert data["flow"]["state"] == "Finished" and data["flow"]["uploads"] == 1
    assert len(data["results"]["Test.Numbers/numbers"]) == 2
    error = refused(run(live, "collect", live.client_id, "Test.Numbers", "Test.Upload",
                        "-p", "Nope=1"))  # fmt: skip
    assert "no artifact being collected has a parameter 'Nope'" in error


def test_collect_refusals_print_the_servers_reason(live: Live) -> None:
    assert "No.Such.Artifact" in refused(run(live, "collect", live.client_id, "No.Such.Artifact"))
    error = refused(run(live, "collect", live.client_id, "Test.Numbers", token=live.reader_token))
    assert "COLLECT_CLIENT" in error
    error = refused(run(live, "collect", live.client_id, "Test.Numbers", token="prg_wrong"))
    assert "Bearer" in error


def test_collect_gives_up_waiting_but_says_where_to_look(live: Live) -> None:
    result = run(
        live, "collect", live.client_id, "Test.Numbers", "-p", "N=2000000000", "--wait", "1"
    )
    error = refused(result)
    assert "still running after 1 s" in error and "peregrine results F." in error
    flow_id = error.split("peregrine results ")[1].split("`")[0]
    with live.client() as client:
        client.collections.cancel(flow_id)
        assert client.collections.wait(flow_id, timeout=60).state == "Cancelled"


def test_flows_and_results(live: Live) -> None:
    flow = json.loads(
        ok(live, "collect", live.client_id, "Test.Numbers", "-p", "N=250", "--json").stdout
    )["flow"]
    listed = json.loads(ok(live, "flows", live.client_id, "--json").stdout)
    assert flow["flow_id"] in [f["flow_id"] for f in listed]
    assert flow["flow_id"] in ok(live, "flows", live.client_id).stdout

    result = ok(live, "results", flow["flow_id"], "--limit", "2")
    assert "row 00000002" in result.stdout and "row 00000003" not in result.stdout
    assert "showing 2 of 250" in result.stderr
    out = ok(live, "results", flow["flow_id"], "--format", "csv", "--all", "--limit", "100").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["n"]) for r in rows] == list(range(1, 251))
    out = ok(live, "results", flow["flow_id"], "-a", "Test.Numbers", "-s", "numbers",
             "--format", "jsonl", "--offset", "248").stdout  # fmt: skip
    assert [json.loads(line)["n"] for line in out.splitlines()] == [249, 250]
    assert "no collection" in refused(run(live, "results", "F.0000000000000000"))


def test_clients_label_add_and_remove(live: Live) -> None:
    data = json.loads(ok(live, "clients", "label", live.client_id, "add", "cli-a", "cli-b",
                         "--json").stdout)  # fmt: skip
    assert {"cli-a", "cli-b"} <= set(data["labels"])
    assert json.loads(ok(live, "clients", "label:cli-a", "--json").stdout)["total"] == 1
    out = ok(live, "clients", "label", live.client_id, "remove", "cli-a", "cli-b").stdout
    assert out.startswith(live.client_id) and "cli-a" not in out
    assert json.loads(ok(live, "clients", "label:cli-a", "--json").stdout)["total"] == 0
    assert run(live, "clients", "label", live.client_id, "rename", "x").exit_code == 2
    assert "LABEL_CLIENT" in refused(
        run(live, "clients", "label", live.client_id, "add", "x", token=live.reader_token)
    )


def test_collect_limits_reach_the_client(live: Live, tmp_path: Path) -> None:
    data = json.loads(ok(live, "collect", live.client_id, "Test.Numbers", "-p", "N=500",
                         "--max-rows", "7", "--timeout", "2m", "--json").stdout)  # fmt: skip
    assert len(data["results"]["Test.Numbers/numbers"]) == 7
    evidence = tmp_path / "big.bin"
    evidence.write_bytes(b"x" * 5000)
    data = json.loads(ok(live, "collect", live.client_id, "Test.Upload", "-p", f"Path={evidence}",
                         "--max-upload-bytes", "1K", "--json").stdout)  # fmt: skip
    assert data["flow"]["uploads"] == 0
    log = json.loads(ok(live, "flows", "log", data["flow"]["flow_id"], "--json").stdout)
    assert any("big.bin" in entry["message"] for entry in log), log
    text = ok(live, "flows", "log", data["flow"]["flow_id"]).stdout
    assert "big.bin" in text
    result = run(live, "collect", live.client_id, "Test.Numbers", "--max-upload-bytes", "lots")
    assert result.exit_code == 2 and "is not a size" in result.stderr


def test_uploads_list_and_download_verified(live: Live, tmp_path: Path) -> None:
    evidence = tmp_path / "evidence.txt"
    evidence.write_text("uploaded through the cli\n")
    flow = json.loads(ok(live, "collect", live.client_id, "Test.Upload", "-p", f"Path={evidence}",
                         "--json").stdout)["flow"]  # fmt: skip
    listed = json.loads(ok(live, "uploads", flow["flow_id"], "--json").stdout)
    assert [u["path"] for u in listed] == [str(evidence)] and listed[0]["saved"] is None
    table = runner.invoke(app, ["uploads", flow["flow_id"]], env={**live.env(), "COLUMNS": "80"})
    assert listed[0]["sha256"] in table.stdout  # a whole hash, even at 80 columns
    target = tmp_path / "downloads"
    result = ok(live, "uploads", flow["flow_id"], "--download", str(target), "--json")
    saved = Path(json.loads(result.stdout)[0]["saved"])
    assert saved.parent == target and saved.read_text() == "uploaded through the cli\n"
    assert "SHA-256 verified" in result.stderr
    assert ok(live, "uploads", json.loads(ok(live, "collect", live.client_id, "Test.Numbers",
              "--json").stdout)["flow"]["flow_id"]).stdout == "0 rows\n"  # fmt: skip


def test_hunt_commands(live: Live, tmp_path: Path) -> None:
    hunt = json.loads(
        ok(live, "hunts", "create", "Test.Numbers", "-p", "N=4", "--expires", "2h",
           "--description", "cli hunt", "--start", "--json").stdout
    )  # fmt: skip
    hunt_id = hunt["hunt_id"]
    assert hunt["state"] == "Running" and hunt["description"] == "cli hunt"
    assert 7100 < hunt["expires"] - hunt["created"] <= 7200

    progress = json.loads(ok(live, "hunts", "watch", hunt_id, "--until-done", "--json").stdout)
    assert progress["scheduled"] == 1 and progress["finished"] == 1 and progress["rows"] == 4
    shown = json.loads(ok(live, "hunts", "show", hunt_id, "--json").stdout)
    assert shown["hunt"]["hunt_id"] == hunt_id and shown["stats"]["with_results"] == 1
    table = ok(live, "hunts", "show", hunt_id).stdout
    assert "with results" in table and "cli hunt" in table

    out = ok(live, "hunts", "results", hunt_id, "-a", "Test.Numbers", "-s", "numbers",
             "--format", "jsonl").stdout  # fmt: skip
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["n"] for r in rows] == [1, 2, 3, 4] and rows[0]["client_id"] == live.client_id
    # One artifact with one source: no need to name them.
    out = ok(live, "hunts", "results", hunt_id, "--format", "jsonl").stdout
    assert [json.loads(line)["n"] for line in out.splitlines()] == [1, 2, 3, 4]
    export = tmp_path / "hunt.csv"
    ok(live, "hunts", "results", hunt_id, "-a", "Test.Numbers", "-s", "numbers",
       "--export", str(export))  # fmt: skip
    assert [int(r["n"]) for r in csv.DictReader(io.StringIO(export.read_text()))] == [1, 2, 3, 4]

    assert "already has" in ok(live, "hunts", "add", hunt_id, live.client_id).stdout
    assert "Paused" in ok(live, "hunts", "pause", hunt_id).stdout
    assert "Stopped" in ok(live, "hunts", "stop", hunt_id, "--cancel").stdout
    listed = json.loads(ok(live, "hunts", "list", "--state", "Stopped", "--json").stdout)
    assert hunt_id in [h["hunt_id"] for h in listed]
    assert hunt_id in ok(live, "hunts", "list").stdout
    assert json.loads(ok(live, "hunts", "archive", hunt_id, "--json").stdout)["state"] == (
        "Archived"
    )
    assert refused(run(live, "hunts", "start", hunt_id))
    assert "--expires" in runner.invoke(app, ["hunts", "create", "X", "--expires", "soon"]).stderr


def test_a_hunt_that_matches_no_known_client_says_so(live: Live) -> None:
    result = ok(live, "hunts", "create", "Test.Numbers", "--label", "no-such-label", "--start")
    assert "warning: no known client matches this hunt" in result.stderr
    assert "no-such-label" in result.stderr
    ok(live, "hunts", "stop", result.stdout.split(":")[0])
    result = ok(live, "hunts", "create", "Test.Numbers", "--os", "plan9", "--json")
    hunt_id = json.loads(result.stdout)["hunt_id"]
    assert "no known client matches" in json.loads(result.stdout)["warnings"][0]
    data = json.loads(ok(live, "hunts", "start", hunt_id, "--json").stdout)
    assert data["state"] == "Running" and "no known client matches" in data["warnings"][0]
    ok(live, "hunts", "stop", hunt_id)
    # A hunt that matches the agent warns of nothing.
    result = ok(live, "hunts", "create", "Test.Numbers", "--json")
    assert json.loads(result.stdout)["warnings"] == [] and "warning" not in result.stderr
    ok(live, "hunts", "stop", json.loads(result.stdout)["hunt_id"])


def test_hunt_watch_prints_progress_lines_without_a_terminal(live: Live) -> None:
    hunt_id = json.loads(
        ok(live, "hunts", "create", "Test.Numbers", "-p", "N=3", "--start", "--json").stdout
    )["hunt_id"]
    result = ok(live, "hunts", "watch", hunt_id, "--until-done")
    progress = [line for line in result.stderr.splitlines() if line.startswith(hunt_id)]
    assert progress and all("clients done" in line for line in progress), result.stderr
    assert f"{hunt_id}: Running, 1 of 1 clients done" in result.stdout
    ok(live, "hunts", "stop", hunt_id)


def test_hunt_results_asks_which_artifact_when_there_are_several(live: Live) -> None:
    hunt_id = json.loads(
        ok(live, "hunts", "create", "Test.Numbers", "Generic.Client.Info", "--json").stdout
    )["hunt_id"]
    assert "pass --artifact" in refused(run(live, "hunts", "results", hunt_id))
    ok(live, "hunts", "stop", hunt_id)


def test_hunt_watch_stops_at_its_timeout(live: Live) -> None:
    hunt_id = json.loads(ok(live, "hunts", "create", "Test.Numbers", "--json").stdout)["hunt_id"]
    result = ok(live, "hunts", "watch", hunt_id, "--timeout", "1")
    assert f"{hunt_id}: Paused, 0 of 0 clients done" in result.stdout
    ok(live, "hunts", "stop", hunt_id)


def test_server_artifacts(live: Live, tmp_path: Path) -> None:
    listed = json.loads(ok(live, "server-artifacts", "list", "Test.Numbers", "--json").stdout)
    assert [a["name"] for a in listed] == ["Test.Numbers"]
    assert "name: Test.Numbers" in ok(live, "server-artifacts", "show", "Test.Numbers").stdout
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert "no problems" in ok(live, "server-artifacts", "check", str(good)).stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("SELECT 'hello'", "SELEKT 'hello'"))
    result = run(live, "server-artifacts", "check", str(bad), "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)[0]["severity"] == "error"
    assert refused(run(live, "server-artifacts", "put", str(bad)))
    assert "stored Custom.Cli.Hello" in ok(live, "server-artifacts", "put", str(good)).stdout
    assert "Custom.Cli.Hello" in ok(live, "server-artifacts", "list").stdout
    assert "cannot read" in refused(run(live, "server-artifacts", "check", str(tmp_path / "x")))


def test_a_real_process_prints_errors_without_a_traceback(live: Live) -> None:
    code = (
        "import typer; from peregrine.cli import remote_cmd; app = typer.Typer(); "
        "remote_cmd.register(app); app()"
    )
    env = {**os.environ, **live.env("prg_wrong")}
    done = subprocess.run(
        [sys.executable, "-c", code, "clients"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.startswith("Error: ")
    assert "Traceback" not in done.stderr
    done = subprocess.run(
        [sys.executable, "-c", code, "clients", "--json"],
        capture_output=True, text=True, env={**os.environ, **live.env()}, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and json.loads(done.stdout)["total"] >= 1


def test_flow_views_show_warnings(live: Live, tmp_path: Path) -> None:
    evidence = tmp_path / "too-big.bin"
    evidence.write_bytes(b"x" * 5000)
    args = ["collect", live.client_id, "Test.Upload", "-p", f"Path={evidence}",
            "--max-upload-bytes", "1K"]  # fmt: skip
    collected = ok(live, *args)
    flow_id = collected.stderr.split(":")[0].strip()
    flow = json.loads(ok(live, "flows", "show", flow_id, "--json").stdout)
    warnings = flow["warnings"]
    assert warnings >= 1 and flow["state"] == "Finished"  # the upload was left out
    plural = "s" if warnings > 1 else ""
    assert f"Finished, 1 row, {warnings} warning{plural} (peregrine flows show {flow_id})" in (
        collected.stderr
    )
    # The list has a warnings column; a collection without warnings shows 0.
    quiet = json.loads(ok(live, "collect", live.client_id, "Test.Numbers", "--json").stdout)
    assert quiet["flow"]["warnings"] == 0
    listed = _cells(ok(live, "flows", live.client_id).stdout)
    column = next(row for row in listed if row[0] == "flow id").index("warnings")
    counts = {row[0]: row[column] for row in listed if row[0].startswith("F.")}
    assert counts[flow_id] == str(warnings) and counts[quiet["flow"]["flow_id"]] == "0", listed
    # The detail: the count, where to read them, and the source that lost its upload.
    shown = ok(live, "flows", "show", flow_id).stdout
    assert (
        f"warnings   {warnings} (queries' warnings, uploads left out: peregrine flows log "
        f"{flow_id})" in shown
    ), shown
    [source] = [row for row in _cells(shown) if row[0] == "Test.Upload"]
    assert source[:5] == ["Test.Upload", "finished", "1", "1", "1"], shown


def _cells(table: str) -> list[list[str]]:
    """The cells of each row of a table the CLI printed."""
    return [
        [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]
        for line in table.splitlines()
        if line.startswith(("│", "┃"))
    ]
