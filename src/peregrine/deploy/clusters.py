"""A cluster as a deployment: a development cluster (``scripts/cluster up``), kept in step
with it, or one written by ``peregrine config generate --frontends N``.

``deploy init --dev-cluster .cluster`` writes ``.cluster/config/deploy.yaml`` from the
cluster's ``cluster.json`` (its frontends and their pids, HAProxy's socket and configuration);
after each change the deployer writes the instances that run back into ``cluster.json``, so
``scripts/cluster status`` and ``down`` see the new instances and not the retired ones.
``deploy init --config-dir DIR`` reads a generated cluster's ``haproxy.cfg`` and configurations.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from peregrine.cluster.devcluster import STATE_FILE, ClusterState, FrontendState
from peregrine.cluster.generate import HAPROXY_FILE, HAPROXY_SOCKET
from peregrine.config import CA_CERT_FILE, CLIENT_FILE
from peregrine.config.files import SECRET_MODE, write_atomic
from peregrine.deploy.launcher import DEFAULT_COMMAND
from peregrine.deploy.model import DEPLOY_FILE, Deployment, HAProxyBalancer, Instance


def _state(directory: Path) -> ClusterState:
    path = directory / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"no cluster in {directory} (start one: scripts/cluster up)")
    return msgspec.json.decode(path.read_bytes(), type=ClusterState)


def _serving(
    name: str, host: str, port: int, api_port: int, config: str, version: str, pid: int = 0
) -> Instance:
    """A frontend found serving: in the pool, started (again) with the default command."""
    return Instance(
        name=name, slot=name, host=host, port=port, api_port=api_port, config=config,
        version=version, command=list(DEFAULT_COMMAND), pid=pid, pool="ready",
    )  # fmt: skip


def from_dev_cluster(directory: Path, version: str = "") -> tuple[Deployment, Path]:
    """The deployment of the dev cluster in ``directory``, and where its file goes."""
    directory = directory.absolute()
    state = _state(directory)
    instances = [
        _serving(f.name, f.host, f.port, f.api_port, f.config, version, f.pid)
        for f in state.frontends
    ]
    deployment = Deployment(
        balancer=HAProxyBalancer(socket=state.haproxy_socket, config=state.haproxy_config),
        client_config=state.client_config,
        ca_cert=state.ca_cert,
        instances=instances,
        dev_cluster=str(directory),
    )
    return deployment, Path(state.haproxy_config).parent / DEPLOY_FILE


def sync_dev_cluster(deployment: Deployment) -> None:
    """``cluster.json``'s frontends: the deployment's instances that run or serve."""
    directory = Path(deployment.dev_cluster)
    state = _state(directory)
    state.frontends = [
        FrontendState(i.name, i.config, i.host, i.port, i.api_port, i.pid)
        for i in deployment.instances
        if i.pid or i.pool != "absent"
    ]
    write_atomic(directory / STATE_FILE, msgspec.json.encode(state), SECRET_MODE)


def dev_cluster_token(deployment: Deployment) -> str:
    """The administrator's token the dev cluster wrote in its ``env`` file, or ""."""
    if not deployment.dev_cluster:
        return ""
    env = Path(deployment.dev_cluster) / "env"
    for line in env.read_text().splitlines() if env.exists() else []:
        if line.startswith("export PEREGRINE_TOKEN="):
            return line.split("=", 1)[1]
    return ""


def from_generated(directory: Path, version: str = "") -> tuple[Deployment, Path]:
    """The deployment of a cluster made by ``peregrine config generate --frontends N`` in
    ``directory``: its frontends as ``haproxy.cfg`` lists them (host and ports, read from
    the agents' and the API's backends), each with its ``<name>.yaml``, taken as serving."""
    directory = directory.absolute()
    config = directory / HAPROXY_FILE
    if not config.exists():
        raise FileNotFoundError(
            f"no {HAPROXY_FILE} in {directory}: give the folder 'peregrine config generate "
            "--frontends N' wrote"
        )
    agents = _servers(config.read_text(), "agents")
    api = _servers(config.read_text(), "api")
    instances = []
    for name, (host, port) in agents.items():
        path = directory / f"{name}.yaml"
        if name not in api or not path.exists():
            raise FileNotFoundError(f"{name} is in {config} but {path} or its API server is not")
        instances.append(_serving(name, host, port, api[name][1], str(path), version))
    deployment = Deployment(
        balancer=HAProxyBalancer(socket=str(directory / HAPROXY_SOCKET), config=str(config)),
        client_config=str(directory / CLIENT_FILE),
        ca_cert=str(directory / CA_CERT_FILE),
        instances=instances,
    )
    return deployment, directory / DEPLOY_FILE


def _servers(text: str, backend: str) -> dict[str, tuple[str, int]]:
    """``server`` lines of ``backend <backend>`` in an haproxy.cfg: name -> (host, port)."""
    found: dict[str, tuple[str, int]] = {}
    inside = False
    for line in text.splitlines():
        words = line.split()
        if line and not line[0].isspace():
            inside = words[:2] == ["backend", backend]
        elif inside and words[:1] == ["server"] and len(words) >= 3:
            host, _, port = words[2].rpartition(":")
            found[words[1]] = (host.strip("[]"), int(port))
    return found
