"""A development cluster (``scripts/cluster up``) as a deployment, kept in step with it.

``deploy init --dev-cluster .cluster`` writes ``.cluster/config/deploy.yaml`` from the
cluster's ``cluster.json`` (its frontends and their pids, HAProxy's socket and configuration);
after each change the deployer writes the instances that run back into ``cluster.json``, so
``scripts/cluster status`` and ``down`` see the new instances and not the retired ones.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from peregrine.cluster.devcluster import STATE_FILE, ClusterState, FrontendState
from peregrine.config.files import SECRET_MODE, write_atomic
from peregrine.deploy.launcher import DEFAULT_COMMAND
from peregrine.deploy.model import DEPLOY_FILE, Deployment, HAProxyBalancer, Instance


def _state(directory: Path) -> ClusterState:
    path = directory / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"no cluster in {directory} (start one: scripts/cluster up)")
    return msgspec.json.decode(path.read_bytes(), type=ClusterState)


def from_dev_cluster(directory: Path, version: str = "") -> tuple[Deployment, Path]:
    """The deployment of the dev cluster in ``directory``, and where its file goes."""
    directory = directory.absolute()
    state = _state(directory)
    instances = [
        Instance(
            name=f.name,
            slot=f.name,
            host=f.host,
            port=f.port,
            api_port=f.api_port,
            config=f.config,
            version=version,
            command=list(DEFAULT_COMMAND),
            pid=f.pid,
            pool="ready",
        )
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
