"""Configuration files: every mistake is reported with the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from peregrine.config import (
    ConfigError,
    GeneratedConfig,
    generate,
    load_client_config,
    load_server_config,
    masked,
)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> GeneratedConfig:
    return generate(tmp_path_factory.mktemp("dep"), ["wss://fe.example:8443/agent"])


def edited(made: GeneratedConfig, tmp_path: Path, name: str, **changes: object) -> Path:
    """A copy of a generated config file, with some keys changed (None removes a key)."""
    data = yaml.safe_load((made.directory / name).read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    out = tmp_path / name
    out.write_text(yaml.safe_dump(data))
    return out


def test_unknown_top_level_field_is_refused(made: GeneratedConfig, tmp_path: Path) -> None:
    path = edited(made, tmp_path, "client.yaml", pol_max=30)
    with pytest.raises(ConfigError) as info:
        load_client_config(path)
    assert info.value.path == str(path)
    assert info.value.field == "pol_max"
    assert str(info.value).startswith(f"{path}: pol_max: unknown field")
    assert "poll_max" in str(info.value)  # the allowed names are listed


def test_unknown_nested_field_is_refused(made: GeneratedConfig, tmp_path: Path) -> None:
    path = edited(made, tmp_path, "server.yaml", flows={"timeout": 60, "time_out": 5})
    with pytest.raises(ConfigError, match=r"server\.yaml: flows\.time_out: unknown field") as info:
        load_server_config(path)
    assert "progress_timeout" in info.value.problem


def test_wrong_type_names_the_field(made: GeneratedConfig, tmp_path: Path) -> None:
    path = edited(made, tmp_path, "server.yaml", port="eighty")
    with pytest.raises(ConfigError) as info:
        load_server_config(path)
    assert (info.value.path, info.value.field) == (str(path), "port")
    assert "expected `int`, got `str`" in info.value.problem


def test_nested_wrong_type_names_the_path(made: GeneratedConfig, tmp_path: Path) -> None:
    path = edited(made, tmp_path, "server.yaml", flows={"timeout": "soon"})
    with pytest.raises(ConfigError, match=r"flows\.timeout: expected `float`, got `str`"):
        load_server_config(path)


def test_out_of_range_value(made: GeneratedConfig, tmp_path: Path) -> None:
    path = edited(made, tmp_path, "server.yaml", port=70000)
    with pytest.raises(ConfigError, match=r"port: expected `int` <= 65535"):
        load_server_config(path)


def test_missing_required_field(made: GeneratedConfig, tmp_path: Path) -> None:
    path = edited(made, tmp_path, "client.yaml", ca_cert=None)
    with pytest.raises(ConfigError, match=r"client\.yaml: ca_cert: required field is missing"):
        load_client_config(path)


def test_cross_field_check_names_the_field(made: GeneratedConfig, tmp_path: Path) -> None:
    path = edited(made, tmp_path, "client.yaml", poll_min=10.0, poll_max=5.0)
    with pytest.raises(ConfigError) as info:
        load_client_config(path)
    assert info.value.field == "poll_max"


def test_plain_ws_url_is_refused(made: GeneratedConfig, tmp_path: Path) -> None:
    path = edited(made, tmp_path, "client.yaml", server_urls=["ws://fe.example:80/agent"])
    with pytest.raises(ConfigError) as info:
        load_client_config(path)
    assert info.value.field == "server_urls[0]"
    assert "wss://" in info.value.problem


def test_empty_url_list_is_refused(made: GeneratedConfig, tmp_path: Path) -> None:
    path = edited(made, tmp_path, "server.yaml", public_urls=[])
    with pytest.raises(ConfigError, match="public_urls: give at least one"):
        load_server_config(path)


def test_short_enrollment_secret_is_refused(made: GeneratedConfig, tmp_path: Path) -> None:
    path = edited(made, tmp_path, "server.yaml", enrollment_secret="abc")
    with pytest.raises(ConfigError, match="enrollment_secret: expected `str` of length >= 16"):
        load_server_config(path)


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_server_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "peregrine config generate" in str(info.value)


def test_invalid_yaml_gives_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server_urls:\n  - wss://a/agent\nca_cert: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML at line \d+"):
        load_client_config(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_client_config(path)


def test_relative_paths_are_relative_to_the_file(made: GeneratedConfig, tmp_path: Path) -> None:
    path = edited(made, tmp_path, "client.yaml", writeback_path="state/wb.yaml", spool_dir="/abs")
    cfg = load_client_config(path)
    assert cfg.writeback_path == str(tmp_path / "state" / "wb.yaml")
    assert cfg.spool_dir == "/abs"


def test_masked_hides_the_secret_and_abbreviates_the_ca(made: GeneratedConfig) -> None:
    data = masked(made.client)
    assert made.client.enrollment_secret not in str(data)
    assert data["enrollment_secret"] == "********"
    assert data["ca_cert"].startswith("<PEM certificate, SHA-256 ")
