"""Which bus, presence and leader a frontend gets from its configuration, and the mistakes
refused when the file is read: a Redis bus needs a PostgreSQL datastore."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from peregrine.config import ConfigError, GeneratedConfig, generate, load_server_config, masked
from peregrine.protocol.messages import Ack, CancelCollection, encode
from peregrine.server.app import _cancel_only
from peregrine.server.bus import LocalBus, UnixBus
from peregrine.server.cluster import frontend_name, make_bus, make_leader, make_presence, namespace
from peregrine.server.leader import AdvisoryLeader, AlwaysLeader, LeaderLock
from peregrine.server.presence import BusPresence

POSTGRES = "postgresql://peregrine@db.example:5432/peregrine"
REDIS = "redis://:s3cret@bus.example:6379/0"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> GeneratedConfig:
    return generate(tmp_path_factory.mktemp("dep"), ["wss://fe.example:8443/agent"])


def server_yaml(made: GeneratedConfig, tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load((made.directory / "server.yaml").read_text())
    data.update(changes)
    path = made.directory / f"{tmp_path.name}.yaml"  # beside it: its paths are relative
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_redis_bus_with_sqlite_is_refused_with_what_to_do(
    made: GeneratedConfig, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        load_server_config(server_yaml(made, tmp_path, bus_url=REDIS))
    assert info.value.field == "bus_url"
    assert "PostgreSQL" in info.value.problem and "datastore_url" in info.value.problem


@pytest.mark.parametrize(
    ("url", "words"),
    [("http://bus.example", "redis://"), ("redis://:6379/0", "host"), ("redis://b:x/0", "port")],
)
def test_a_bus_url_that_is_not_redis_is_refused(
    made: GeneratedConfig, tmp_path: Path, url: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_server_config(server_yaml(made, tmp_path, bus_url=url, datastore_url=POSTGRES))
    assert info.value.field == "bus_url" and words in info.value.problem


def test_a_frontend_name_with_spaces_is_refused(made: GeneratedConfig, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_server_config(server_yaml(made, tmp_path, frontend_name="front end"))
    assert info.value.field == "frontend_name"


def test_a_cluster_gets_the_redis_bus_presence_and_the_advisory_leader(
    made: GeneratedConfig, tmp_path: Path
) -> None:
    config = load_server_config(
        server_yaml(made, tmp_path, bus_url=REDIS, datastore_url=POSTGRES, frontend_name="fe1")
    )
    from peregrine.server.bus_redis import RedisBus
    from peregrine.server.presence_redis import RedisPresence

    bus = make_bus(config, 1)
    assert isinstance(bus, RedisBus) and bus.name == "fe1"
    assert bus.broadcast == namespace(config) + ":bus" and bus.channel("fe2").endswith(":bus:fe2")
    assert isinstance(make_presence(config, bus), RedisPresence)
    assert isinstance(make_leader(config, 1), AdvisoryLeader)
    # The password never reaches a log line or ``config show``.
    assert "s3cret" not in (bus.degraded_reason or "") and "not connected" in str(
        bus.degraded_reason
    )
    assert masked(config)["bus_url"] == "redis://:********@bus.example:6379/0"


def test_the_namespace_is_the_deployments_and_the_name_defaults_to_host_and_port(
    made: GeneratedConfig, tmp_path: Path
) -> None:
    config = load_server_config(server_yaml(made, tmp_path))
    other = generate(tmp_path / "other", ["wss://fe.example:8443/agent"])
    assert namespace(config) != namespace(other.server)
    assert namespace(config) == namespace(load_server_config(made.server_config_path))
    assert frontend_name(config).endswith(f":{config.port}")


def test_one_host_modes_are_unchanged(
    made: GeneratedConfig, caplog: pytest.LogCaptureFixture
) -> None:
    config = made.server
    assert isinstance(make_bus(config, 1), LocalBus)
    assert isinstance(make_leader(config, 1), AlwaysLeader)
    unix = make_bus(config, 3)
    assert isinstance(unix, UnixBus) and unix.shared and unix.workers == 3
    assert isinstance(make_presence(config, unix), BusPresence)
    assert isinstance(make_leader(config, 3), LeaderLock)
    asyncio.run(unix.close())
    assert caplog.records == []


def test_postgresql_without_a_bus_warns(
    made: GeneratedConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_server_config(server_yaml(made, tmp_path, datastore_url=POSTGRES))
    with caplog.at_level(logging.WARNING):
        make_bus(config, 1)
    assert "bus_url is empty" in caplog.text


def test_the_embedded_server_never_imports_redis(made: GeneratedConfig) -> None:
    code = (
        "import sys, pathlib; from peregrine.config import load_server_config; "
        "from peregrine.server.app import Server; "
        "server = Server(load_server_config(pathlib.Path(sys.argv[1]))); "
        "server.datastore.close(); "
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))"
    )
    command = [sys.executable, "-c", code, str(made.server_config_path)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_only_a_cancel_travels_in_a_send_notice(caplog: pytest.LogCaptureFixture) -> None:
    cancel = encode(CancelCollection(flow_id="F.1", reason="stop"))
    assert _cancel_only(cancel.hex()) == cancel
    # Whoever can write to the bus cannot make a frontend send an agent anything else.
    assert _cancel_only(encode(Ack(flow_id="F.1", seq=1)).hex()) is None
    assert _cancel_only("zz not hex") is None
    assert _cancel_only(None) is None
    assert "not a cancel" in caplog.text
