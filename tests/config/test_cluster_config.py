"""``peregrine config generate --frontends N``: a cluster's configuration, checked by loading
every file it writes and by HAProxy itself (``haproxy -c``)."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from peregrine.cli.config_cmd import app
from peregrine.cluster.generate import generate_cluster, plan_frontends
from peregrine.config import ConfigError, ConfigExistsError, load_server_config
from peregrine.config.pki import cert_names
from tests.cluster.services import program

DATASTORE = "postgresql://peregrine@db.example:5432/peregrine"
BUS = "redis://redis.example:6379/0"
BALANCER = "wss://balancer.example:8443/agent"


def _haproxy_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program("haproxy"), "-c", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_three_frontends_on_one_host_share_everything_but_name_ports_and_data(
    tmp_path: Path,
) -> None:
    made = generate_cluster(
        tmp_path / "cluster",
        plan_frontends(3),
        datastore_url=DATASTORE,
        bus_url=BUS,
        public_urls=["wss://127.0.0.1:18443/agent"],
    )
    configs = [load_server_config(p) for p in made.frontend_config_paths]
    assert [c.frontend_name for c in configs] == ["frontend1", "frontend2", "frontend3"]
    assert [(c.port, c.api_port) for c in configs] == [(9443, 9444), (9445, 9446), (9447, 9448)]
    assert len({c.data_dir for c in configs}) == 3
    for config in configs:
        assert config.datastore_url == DATASTORE
        assert config.bus_url == BUS
        assert config.filestore_dir == str(made.directory / "filestore")
        assert config.enrollment_secret == made.client.enrollment_secret
        assert config.public_urls == ["wss://127.0.0.1:18443/agent"]
        assert config.bind_address == config.api_bind_address == "127.0.0.1"
        assert config.ca_key_path == ""  # frontends never hold the CA key
        assert stat.S_IMODE(Path(config.data_dir).stat().st_mode) == 0o700
    for path in made.frontend_config_paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # they hold the enrollment secret
    assert stat.S_IMODE((made.directory / "server.key").stat().st_mode) == 0o600
    assert made.client.server_urls == ["wss://127.0.0.1:18443/agent"]  # the balancer only
    assert made.api_url == "https://127.0.0.1:18444"

    haproxy = made.haproxy_config_path.read_text()
    assert re.search(r"bind 127\.0\.0\.1:18443\n", haproxy)
    assert re.search(r"bind 127\.0\.0\.1:18444\n", haproxy)
    agents = haproxy.split("\nbackend agents\n")[1].split("\nfrontend api\n")[0]
    api = haproxy.split("\nbackend api\n")[1]
    assert "balance leastconn" in agents
    for n, port in ((1, 9443), (2, 9445), (3, 9447)):
        assert f"server frontend{n} 127.0.0.1:{port}\n" in agents
        assert f"server frontend{n} 127.0.0.1:{port + 1}\n" in api
    assert "uri /readyz" in haproxy
    assert f"ca-file {made.directory / 'ca.pem'}" in haproxy
    assert f"stats socket {made.haproxy_socket} mode 600 level admin" in haproxy
    checked = _haproxy_check(made.haproxy_config_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_frontends_on_several_hosts_keep_their_ports_and_the_certificate_names_them_all(
    tmp_path: Path,
) -> None:
    made = generate_cluster(
        tmp_path / "cluster",
        plan_frontends(3, ["fe1.example", "fe2.example", "10.0.0.3"]),
        datastore_url=DATASTORE,
        bus_url=BUS,
        filestore_dir=Path("/mnt/peregrine"),
        public_urls=[BALANCER, "wss://balancer2.example:8443/agent"],
        hostnames=["peregrine.example"],
    )
    configs = made.frontend_configs
    assert {(c.port, c.api_port) for c in configs} == {(9443, 9444)}
    assert [c.bind_address for c in configs] == ["0.0.0.0", "0.0.0.0", "10.0.0.3"]
    assert {c.filestore_dir for c in configs} == {"/mnt/peregrine"}
    names = cert_names((made.directory / "server.pem").read_text())
    for host in ("fe1.example", "fe2.example", "10.0.0.3", "balancer.example"):
        assert host in names
    assert {"balancer2.example", "peregrine.example", "127.0.0.1"} <= set(names)
    assert made.client.server_urls == [BALANCER, "wss://balancer2.example:8443/agent"]
    haproxy = made.haproxy_config_path.read_text()
    assert "bind 0.0.0.0:8443\n" in haproxy  # a balancer others reach
    assert "server frontend1 fe1.example:9443\n" in haproxy
    # The frontend hosts do not resolve here: HAProxy still accepts the file (and would
    # start, with those servers down until they resolve).
    checked = _haproxy_check(made.haproxy_config_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("changes", "field", "advice"),
    [
        ({"bus_url": ""}, "bus_url", "redis://"),
        ({"datastore_url": "sqlite:///x.db"}, "bus_url", "postgresql://"),
        ({"public_urls": ["https://balancer:8443"]}, "public_url", "wss://"),
        ({"frontends": plan_frontends(2, ["a.example", "b.example"])}, "filestore_dir", "shared"),
    ],
)
def test_bad_input_is_refused_with_advice_and_writes_nothing(
    tmp_path: Path, changes: dict[str, object], field: str, advice: str
) -> None:
    options: dict[str, object] = {
        "frontends": plan_frontends(2),
        "datastore_url": DATASTORE,
        "bus_url": BUS,
        "public_urls": [BALANCER],
        **changes,
    }
    target = tmp_path / "cluster"
    with pytest.raises(ConfigError) as caught:
        generate_cluster(target, **options)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert advice in caught.value.problem
    assert not target.exists() or not any(target.iterdir())


def test_plan_frontends_refuses_a_host_list_of_the_wrong_length() -> None:
    with pytest.raises(ConfigError, match="one --frontend-host per frontend"):
        plan_frontends(3, ["a", "b"])
    with pytest.raises(ConfigError, match="at least one frontend"):
        plan_frontends(0)


def test_an_existing_cluster_is_kept_without_force(tmp_path: Path) -> None:
    def make(force: bool = False) -> str:
        made = generate_cluster(
            tmp_path / "c", plan_frontends(2), datastore_url=DATASTORE, bus_url=BUS,
            public_urls=[BALANCER], force=force,
        )  # fmt: skip
        return made.client.ca_cert

    first = make()
    with pytest.raises(ConfigExistsError, match="--force"):
        make()
    assert (tmp_path / "c" / "ca.pem").read_text() == first  # untouched
    assert make(force=True) != first


def test_the_command_writes_a_cluster_and_says_how_to_start_it(tmp_path: Path) -> None:
    out = tmp_path / "cluster"
    result = CliRunner().invoke(
        app,
        ["generate", "--dir", str(out), "--frontends", "2", "--datastore-url", DATASTORE,
         "--bus-url", BUS, "--public-url", BALANCER, "--frontend-port", "7000"],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"haproxy -f {out / 'haproxy.cfg'}" in result.output
    assert f"peregrine server --config {out / 'frontend2.yaml'} --no-local-agent" in result.output
    assert "https://balancer.example:8444/api/v1" in result.output
    secret = yaml.safe_load((out / "frontend1.yaml").read_text())["enrollment_secret"]
    assert secret not in result.output
    assert load_server_config(out / "frontend2.yaml").port == 7002


def test_cluster_options_without_frontends_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["generate", "--dir", str(tmp_path / "x"), "--bus-url", BUS], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1
    assert "add --frontends N" in result.output
    assert not (tmp_path / "x").exists()
