"""The balancer's pools: HAProxy changed through its runtime API (a real HAProxy, no reload),
its configuration kept in step; nginx's include file written, checked and reloaded, and put
back when the check fails; the deployment file and the CLI's view of it."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from peregrine.cli import app
from peregrine.cluster import processes
from peregrine.cluster.haproxy import Backend, render
from peregrine.config.pki import create_ca
from peregrine.deploy.model import (
    Deployment,
    HAProxyBalancer,
    Instance,
    NginxBalancer,
    UptestSummary,
    load_deployment,
    save_deployment,
)
from peregrine.deploy.pools import HAProxyPool, NginxPool, PoolError, replace_servers
from tests.cluster.services import program


def instance(name: str, port: int, pool: str = "ready") -> Instance:
    return Instance(
        name=name, slot=name, host="127.0.0.1", port=port, api_port=port + 1,
        config=f"/nonexistent/{name}.yaml", version="1", pool=pool,  # type: ignore[arg-type]
    )  # fmt: skip


def deployment(balancer: HAProxyBalancer | NginxBalancer, *instances: Instance) -> Deployment:
    return Deployment(
        balancer=balancer, client_config="/nonexistent/client.yaml", ca_cert="/nonexistent/ca.pem",
        instances=list(instances),
    )  # fmt: skip


# -- HAProxy ----------------------------------------------------------------------------------


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[tuple[HAProxyPool, Path]]:
    """A real HAProxy with the generated configuration and one frontend, ``frontend1``."""
    binary = program("haproxy")
    ca = tmp_path / "ca.pem"
    ca.write_text(create_ca().cert_pem)
    socket_path = tmp_path / "haproxy.sock"
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        render([Backend("frontend1", "127.0.0.1", processes.free_port(), processes.free_port())],
               bind_host="127.0.0.1", agent_port=processes.free_port(),
               api_port=processes.free_port(), ca_file=ca, socket_path=socket_path,
               max_connections=1000)
    )  # fmt: skip
    pid = processes.spawn([binary, "-db", "-f", str(config)], tmp_path / "haproxy.log")
    try:
        processes.wait_for(socket_path.exists, "HAProxy", 20, tmp_path / "haproxy.log")
        yield HAProxyPool(HAProxyBalancer(socket=str(socket_path), config=str(config)), ca), config
    finally:
        processes.stop(pid, str(config))


def test_haproxy_takes_an_instance_in_drains_it_and_lets_it_go_without_a_reload(
    haproxy: tuple[HAProxyPool, Path],
) -> None:
    pool, config = haproxy
    old, new = instance("frontend1", 20001), instance("frontend1-2", 20003)
    state = deployment(pool.balancer, old, new)
    pool.apply(new, state)
    assert set(pool.states()) == {"frontend1", "frontend1-2"}
    # Checked like the generated servers (nothing listens here, so it is seen down).
    row = pool.stats()["agents/frontend1-2"]
    assert row["check_status"] != "" and row["addr"] == "127.0.0.1:20003", row
    assert pool.stats()["api/frontend1-2"]["addr"] == "127.0.0.1:20004"
    assert "server frontend1-2 127.0.0.1:20003" in config.read_text()

    old.pool = "drain"
    pool.apply(old, state)
    # Draining: no new connections (weight 0), the ones it holds left alone.
    assert [_draining(pool, b, "frontend1") for b in ("agents", "api")] == [True, True]
    assert not _draining(pool, "agents", "frontend1-2")
    old.pool = "maint"
    pool.apply(old, state)
    assert pool.states()["frontend1"] == "MAINT"
    old.pool = "absent"
    pool.apply(old, state)
    assert set(pool.states()) == {"frontend1-2"}
    text = config.read_text()
    assert "frontend1 " not in text and "server frontend1-2 127.0.0.1:20004" in text
    check = subprocess.run(["haproxy", "-c", "-q", "-f", str(config)], capture_output=True)
    assert check.returncode == 0, check.stderr  # what a restarted HAProxy would read


def _draining(pool: HAProxyPool, backend: str, server: str) -> bool:
    """The server's administrative state has the drain flag (0x08) set."""
    lines = pool.command(f"show servers state {backend}").splitlines()
    header = lines[1].lstrip("# ").split()
    for line in lines[2:]:
        row = dict(zip(header, line.split(), strict=False))
        if row.get("srv_name") == server:
            return bool(int(row["srv_admin_state"]) & 0x08)
    raise KeyError(server)


def test_replace_servers_changes_only_the_named_backend() -> None:
    text = "frontend agents\n    bind :1\n\nbackend agents\n    balance leastconn\n"
    text += "    server a 1.1.1.1:1\n\nbackend api\n    server a 1.1.1.1:2\n"
    out = replace_servers(text, "agents", ["    server b 2.2.2.2:1"])
    assert "    server b 2.2.2.2:1\n\nbackend api\n    server a 1.1.1.1:2\n" in out
    assert "server a 1.1.1.1:1" not in out


# -- nginx ------------------------------------------------------------------------------------


def test_nginx_include_lists_the_pool_and_reloads(tmp_path: Path) -> None:
    include = tmp_path / "peregrine.conf"
    reloads = tmp_path / "reloads"
    balancer = NginxBalancer(
        include=str(include), test=["true"], reload=["sh", "-c", f"echo reload >> {reloads}"]
    )
    a, b, gone = instance("fe1", 9443), instance("fe2", 9445, "drain"), instance("fe3", 9447)
    gone.pool = "absent"
    NginxPool(balancer).apply(a, deployment(balancer, a, b, gone))
    text = include.read_text()
    assert "upstream peregrine_agents {\n    least_conn;\n" in text
    assert "    server 127.0.0.1:9443;  # instance fe1 ready" in text
    assert "    server 127.0.0.1:9446 down;  # instance fe2 drain" in text  # the API port
    assert "9447" not in text and "9448" not in text
    assert NginxPool(balancer).states() == {"fe1": "ready", "fe2": "drain"}
    assert reloads.read_text() == "reload\n"
    assert oct(include.stat().st_mode & 0o777) == "0o644"


def test_nginx_include_is_put_back_when_the_check_fails(tmp_path: Path) -> None:
    include = tmp_path / "peregrine.conf"
    include.write_text("# what nginx runs with now\n")
    balancer = NginxBalancer(
        include=str(include), test=["sh", "-c", "echo 'bad upstream' >&2; exit 1"],
        reload=["sh", "-c", f"touch {tmp_path / 'reloaded'}"],
    )  # fmt: skip
    a = instance("fe1", 9443)
    with pytest.raises(PoolError, match="bad upstream"):
        NginxPool(balancer).apply(a, deployment(balancer, a))
    assert include.read_text() == "# what nginx runs with now\n"
    assert not (tmp_path / "reloaded").exists()


def test_nginx_refuses_an_empty_pool(tmp_path: Path) -> None:
    balancer = NginxBalancer(include=str(tmp_path / "x.conf"), test=["true"], reload=["true"])
    a = instance("fe1", 9443, "absent")
    with pytest.raises(PoolError, match="empty upstream"):
        NginxPool(balancer).apply(a, deployment(balancer, a))
    assert not (tmp_path / "x.conf").exists()


# -- the deployment file and the CLI ----------------------------------------------------------


def test_the_deployment_file_round_trips_and_says_what_to_do_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    with pytest.raises(FileNotFoundError, match="peregrine deploy init"):
        load_deployment(path)
    a = instance("fe1", 9443)
    a.uptest = UptestSummary(time.time(), True, {"readyz": "ok"}, 1.5)
    save_deployment(deployment(NginxBalancer(include="/x.conf"), a), path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_deployment(path).instances == [a]
    path.write_text("balancer: {type: nginx, include: /x}\nclient_config: c\nca_cert: c\nnope: 1\n")
    with pytest.raises(ValueError, match="nope"):
        load_deployment(path)


def test_deploy_status_shows_each_instance_with_its_pool_and_uptest(tmp_path: Path) -> None:
    include = tmp_path / "peregrine.conf"
    balancer = NginxBalancer(include=str(include), test=["true"], reload=["true"])
    a, b = instance("fe1", 9443), instance("fe2", 9445, "maint")
    a.uptest = UptestSummary(0.0, False, {"readyz": "no answer within 60 s"}, 60.0)
    state = deployment(balancer, a, b)
    NginxPool(balancer).apply(a, state)
    path = tmp_path / "deploy.yaml"
    save_deployment(state, path)
    result = CliRunner().invoke(app, ["deploy", "status", "--json", "--file", str(path)])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)["instances"]}
    assert rows["fe1"]["pool"] == "ready" and rows["fe1"]["balancer"] == "ready"
    assert rows["fe1"]["uptest"] == "FAILED 1970-01-01 00:00:00"
    assert rows["fe2"]["balancer"] == "maint" and rows["fe2"]["process"] == "stopped"
    missing = CliRunner().invoke(app, ["deploy", "status", "--file", str(tmp_path / "no.yaml")])
    assert missing.exit_code == 1 and "peregrine deploy init" in missing.output


def test_deploy_init_reads_a_generated_cluster(tmp_path: Path) -> None:
    from peregrine.cluster.generate import generate_cluster, plan_frontends

    generate_cluster(
        tmp_path / "cluster", plan_frontends(2, ["10.0.0.1", "10.0.0.2"]),
        datastore_url="postgresql://peregrine@db/peregrine", bus_url="redis://redis:6379/0",
        filestore_dir=tmp_path / "shared", public_urls=["wss://balancer.example:8443/agent"],
    )  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(app, ["deploy", "init", "--config-dir", str(tmp_path / "cluster"),
                                 "--version", "0.1.0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    deployment = load_deployment(tmp_path / "cluster" / "deploy.yaml")
    assert [(i.name, i.host, i.port, i.api_port, i.pool) for i in deployment.instances] == [
        ("frontend1", "10.0.0.1", 9443, 9444, "ready"),
        ("frontend2", "10.0.0.2", 9443, 9444, "ready"),
    ]
    assert Path(deployment.instances[0].config) == tmp_path / "cluster" / "frontend1.yaml"
    assert isinstance(deployment.balancer, HAProxyBalancer)
    assert deployment.balancer.socket == str(tmp_path / "cluster" / "haproxy.sock")
    again = runner.invoke(app, ["deploy", "init", "--config-dir", str(tmp_path / "cluster")])
    assert again.exit_code == 1 and "--force" in again.output
    neither = runner.invoke(app, ["deploy", "init"])
    assert neither.exit_code == 1 and "--config-dir" in neither.output
