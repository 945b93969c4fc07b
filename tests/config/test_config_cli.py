"""``peregrine config`` as a user runs it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from peregrine.cli.config_cmd import app
from peregrine.config import load_client_config, load_server_config
from peregrine.config.pki import cert_names

runner = CliRunner()


def run_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The config sub-app in a real process (``python -m peregrine config`` once it is wired)."""
    return subprocess.run(
        [sys.executable, "-c", "from peregrine.cli.config_cmd import app; app()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
        check=False,
    )


def test_generate_in_a_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    proc = run_config(
        "generate", "--dir", str(out), "--public-url", "wss://frontend.example:8443/agent"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"peregrine server --config {out / 'server.yaml'}" in proc.stdout
    assert f"peregrine agent --config {out / 'client.yaml'}" in proc.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "server.key").stat().st_mode) == 0o600
    server = load_server_config(out / "server.yaml")
    client = load_client_config(out / "client.yaml")
    assert client.server_urls == ["wss://frontend.example:8443/agent"]
    assert "frontend.example" in cert_names((out / "server.pem").read_text())
    assert server.enrollment_secret not in proc.stdout  # secrets are not printed

    again = run_config("generate", "--dir", str(out))
    assert again.returncode == 1
    assert "--force" in again.stderr
    assert load_client_config(out / "client.yaml").ca_cert == client.ca_cert  # untouched


def test_generate_defaults_to_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = run_config("generate", env={"PEREGRINE_DATA_DIR": str(data)})
    assert proc.returncode == 0, proc.stderr
    assert (data / "server.yaml").exists()
    shown = run_config("show", env={"PEREGRINE_DATA_DIR": str(data)})
    assert shown.returncode == 0, shown.stderr
    assert "server configuration" in shown.stdout


def test_generate_bad_url_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["generate", "--dir", str(tmp_path / "d"), "--public-url", "http://x"]
    )
    assert result.exit_code == 1
    assert "wss://" in result.output
    assert not (tmp_path / "d").exists()


def test_show_masks_secrets(tmp_path: Path) -> None:
    runner.invoke(app, ["generate", "--dir", str(tmp_path), "--public-url", "wss://a.b/agent"])
    secret = load_server_config(tmp_path / "server.yaml").enrollment_secret
    for name in ("server.yaml", "client.yaml"):
        result = runner.invoke(app, ["show", "--config", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert secret not in result.output
        assert "********" in result.output
        assert "wss://a.b/agent" in result.output


def test_show_reports_a_bad_config_with_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "client.yaml"
    bad.write_text(
        "server_urls: [wss://a/agent]\nca_cert: x\nenrollment_secret: 0123456789abcdef\n"
    )
    result = runner.invoke(app, ["show", "--config", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: ca_cert:" in " ".join(result.output.split())


def test_client_export_to_stdout_and_file(tmp_path: Path) -> None:
    runner.invoke(app, ["generate", "--dir", str(tmp_path), "--public-url", "wss://a.b/agent"])
    server_yaml = str(tmp_path / "server.yaml")
    result = runner.invoke(app, ["client", "--config", server_yaml, "--label", "lab"])
    assert result.exit_code == 0, result.output
    exported = yaml.safe_load(result.stdout)
    assert exported["server_urls"] == ["wss://a.b/agent"]
    assert exported["labels"] == ["lab"]
    assert exported["ca_cert"] == (tmp_path / "ca.pem").read_text()

    out = tmp_path / "exported" / "client.yaml"
    out.parent.mkdir()
    result = runner.invoke(app, ["client", "--config", server_yaml, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert (
        load_client_config(out).enrollment_secret
        == load_server_config(tmp_path / "server.yaml").enrollment_secret
    )
