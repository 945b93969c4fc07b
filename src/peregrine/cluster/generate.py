"""Creating a cluster: N frontend configurations, the balancer's, and the agents'.

``peregrine config generate --frontends N`` runs ``generate_cluster``. One directory holds the
whole deployment: the CA, one frontend certificate naming every frontend host and the
balancer (frontends terminate the agents' TLS, whichever of them the balancer picks),
``frontend1.yaml`` ... ``frontendN.yaml`` (same secret, datastore, bus and filestore; each its
own name, addresses, ports and data directory), ``haproxy.cfg`` and ``client.yaml``.

``client.yaml`` lists the balancer's URLs, not the frontends: an agent picks a URL at random,
so listing frontends beside the balancer would send most agents around it, past its health
checks and its ``leastconn`` spreading, and every frontend added or removed would need new
client configurations. Failover stays jittered: the agent's own backoff spreads the
reconnections of a dead frontend's agents, and the balancer sends each to a live frontend.
Two balancers (DNS or a floating address) are given as two ``--public-url``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from peregrine.cluster.haproxy import Backend, render
from peregrine.config import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CLIENT_FILE,
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    ClientConfig,
    ConfigError,
    ConfigExistsError,
    ServerConfig,
    default_public_url,
    load_client_config,
    load_server_config,
    normalize_frontend_url,
)
from peregrine.config.files import PUBLIC_MODE, SECRET_MODE, ensure_private_dir, write_atomic
from peregrine.config.model import parse_config, save_config
from peregrine.config.pki import create_ca, issue_server_cert, url_host

HAPROXY_FILE = "haproxy.cfg"
HAPROXY_SOCKET = "haproxy.sock"
#: The first frontend's agent port when none is given; its API port is the next one.
FIRST_FRONTEND_PORT = 9443

FRONTEND_HEADER = """\
Peregrine cluster frontend {name} (generated {date}).
Start it on {host} with: peregrine server --config {file} --no-local-agent
Copy this directory to the frontend's host without ca.key (needed only to issue certificates).
The filestore must be the same shared mount on every frontend. Holds the enrollment secret.
"""
CLIENT_HEADER = """\
Peregrine client configuration for the cluster (generated {date}).
Run an agent with: peregrine agent --config client.yaml
Agents connect through the balancer; it holds the enrollment secret: keep it owner-only.
"""


@dataclass(frozen=True)
class FrontendSpec:
    """Where one frontend runs: its name, the host others reach it at, and its ports."""

    name: str
    host: str
    port: int
    api_port: int


@dataclass(frozen=True)
class GeneratedCluster:
    """What ``generate_cluster`` wrote, with every configuration as it loads."""

    directory: Path
    frontends: tuple[FrontendSpec, ...]
    frontend_config_paths: tuple[Path, ...]
    frontend_configs: tuple[ServerConfig, ...]
    client_config_path: Path
    client: ClientConfig
    haproxy_config_path: Path
    haproxy_socket: Path
    #: Where analysts reach the API through the balancer (``--url``; the API is at /api/v1).
    api_url: str
    files: tuple[Path, ...]


def plan_frontends(
    count: int, hosts: Sequence[str] = (), first_port: int = FIRST_FRONTEND_PORT
) -> list[FrontendSpec]:
    """``count`` frontends on ``hosts`` (one each, or all on one; default loopback). Frontends
    sharing a host get successive ports: agent port, then API port."""
    if count < 1:
        raise ConfigError(None, "frontends", f"{count}: a cluster needs at least one frontend")
    hosts = list(hosts) or ["127.0.0.1"]
    if len(hosts) == 1:
        hosts *= count
    if len(hosts) != count:
        raise ConfigError(
            None,
            "frontend_host",
            f"{len(hosts)} hosts for {count} frontends: give one --frontend-host per "
            "frontend, or one for all of them",
        )
    used: dict[str, int] = {}
    specs = []
    for i, host in enumerate(hosts, start=1):
        port = first_port + 2 * used.get(host, 0)
        used[host] = used.get(host, 0) + 1
        if port + 1 > 65535:
            raise ConfigError(None, "frontend_port", f"{port + 1} is not a TCP port")
        specs.append(FrontendSpec(f"frontend{i}", host, port, port + 1))
    return specs


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind_address(host: str) -> str:
    """Listen on the frontend's own address when it is one, else on all interfaces."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "0.0.0.0"  # noqa: S104 (a host name: the host's every address)


def generate_cluster(
    directory: Path,
    frontends: Sequence[FrontendSpec],
    *,
    datastore_url: str,
    bus_url: str,
    filestore_dir: Path | None = None,
    public_urls: Sequence[str] | None = None,
    balancer_api_port: int | None = None,
    hostnames: Sequence[str] = (),
    labels: Sequence[str] = (),
    max_connections: int = 100_000,
    force: bool = False,
) -> GeneratedCluster:
    """Write a cluster's configuration to ``directory`` (see the module's docstring).

    ``public_urls``: the balancer as agents reach it (default: this host, port 8443); its API
    port is ``balancer_api_port`` (default: the agent port + 1). ``filestore_dir`` must be a
    shared mount when the frontends are on several hosts (default, all on loopback: a
    ``filestore`` folder here). Existing files are replaced only with ``force``.
    """
    directory = directory.expanduser().absolute()
    try:
        urls = [normalize_frontend_url(u) for u in (public_urls or [default_public_url()])]
    except ValueError as exc:
        raise ConfigError(None, "public_url", str(exc)) from None
    if not bus_url:
        raise ConfigError(
            None, "bus_url", "a cluster needs a bus between its frontends: redis://host:6379/0"
        )
    names = [f.name for f in frontends]
    if not frontends or len(set(names)) != len(names):
        raise ConfigError(None, "frontends", "give one or more frontends with distinct names")
    if filestore_dir is None:
        if not all(_is_loopback(f.host) for f in frontends):
            raise ConfigError(
                None,
                "filestore_dir",
                "frontends on several hosts share the filestore: give --filestore-dir, a "
                "path on a shared mount (NFS, CephFS, EFS) mounted alike on every frontend",
            )
        filestore_dir = directory / "filestore"
    filestore = filestore_dir.expanduser().absolute()
    agent_port = _port_of(urls[0])
    api_port = agent_port + 1 if balancer_api_port is None else balancer_api_port

    configs = [f"{f.name}.yaml" for f in frontends]
    ours = [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE, CLIENT_FILE]
    ours += [HAPROXY_FILE, *configs]
    if not force and (existing := [directory / n for n in ours if (directory / n).exists()]):
        raise ConfigExistsError(
            existing[0],
            None,
            "a deployment already exists here; replacing it creates a new CA and every "
            "deployed agent would be refused (use --force to do it anyway, or another --dir)",
        )

    secret = secrets.token_urlsafe(32)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    server_data = [
        _frontend_data(spec, urls, secret, datastore_url, bus_url, filestore) for spec in frontends
    ]
    # Everything is checked before anything is written: a bad URL leaves no half cluster.
    for data, name in zip(server_data, configs, strict=True):
        parse_config(ServerConfig, data, directory / name)

    ensure_private_dir(directory)
    hosts = _unique([*(url_host(u) for u in urls), *(f.host for f in frontends), *hostnames])
    ca = create_ca()
    frontend_cert = issue_server_cert(ca, hosts)
    write_atomic(directory / CA_KEY_FILE, ca.key_pem, SECRET_MODE)
    write_atomic(directory / CA_CERT_FILE, ca.cert_pem, PUBLIC_MODE)
    write_atomic(directory / SERVER_KEY_FILE, frontend_cert.key_pem, SECRET_MODE)
    write_atomic(directory / SERVER_CERT_FILE, frontend_cert.cert_pem, PUBLIC_MODE)
    for spec in frontends:
        ensure_private_dir(directory / spec.name)
    filestore.mkdir(parents=True, exist_ok=True, mode=0o700)

    client = ClientConfig(
        server_urls=urls, ca_cert=ca.cert_pem, enrollment_secret=secret, labels=list(labels)
    )
    save_config(client, directory / CLIENT_FILE, CLIENT_HEADER.format(date=date))
    socket_path = directory / HAPROXY_SOCKET
    balancer_host = "127.0.0.1" if all(_is_loopback(url_host(u)) for u in urls) else "0.0.0.0"  # noqa: S104
    haproxy = render(
        [Backend(f.name, f.host, f.port, f.api_port) for f in frontends],
        bind_host=balancer_host,
        agent_port=agent_port,
        api_port=api_port,
        ca_file=directory / CA_CERT_FILE,
        socket_path=socket_path,
        max_connections=max_connections,
    )
    write_atomic(directory / HAPROXY_FILE, haproxy, PUBLIC_MODE)
    paths = []
    for spec, data, name in zip(frontends, server_data, configs, strict=True):
        path = directory / name
        header = FRONTEND_HEADER.format(name=spec.name, date=date, host=spec.host, file=name)
        save_config(parse_config(ServerConfig, data, path), path, header)
        paths.append(path)
    return GeneratedCluster(
        directory=directory,
        frontends=tuple(frontends),
        frontend_config_paths=tuple(paths),
        frontend_configs=tuple(load_server_config(p) for p in paths),
        client_config_path=directory / CLIENT_FILE,
        client=load_client_config(directory / CLIENT_FILE),
        haproxy_config_path=directory / HAPROXY_FILE,
        haproxy_socket=socket_path,
        api_url=f"https://{_netloc(url_host(urls[0]), api_port)}",
        files=tuple(directory / n for n in ours),
    )


def _frontend_data(
    spec: FrontendSpec,
    urls: list[str],
    secret: str,
    datastore_url: str,
    bus_url: str,
    filestore: Path,
) -> dict[str, Any]:
    """One frontend's configuration as plain data (relative paths: the directory may move).
    No CA key: a frontend never issues certificates."""
    bind = _bind_address(spec.host)
    return {
        "data_dir": spec.name,
        "public_urls": urls,
        "ca_cert_path": CA_CERT_FILE,
        "server_cert_path": SERVER_CERT_FILE,
        "server_key_path": SERVER_KEY_FILE,
        "enrollment_secret": secret,
        "bind_address": bind,
        "port": spec.port,
        "api_bind_address": bind,
        "api_port": spec.api_port,
        "datastore_url": datastore_url,
        "filestore_dir": str(filestore),
        "bus_url": bus_url,
        "frontend_name": spec.name,
    }


def _port_of(url: str) -> int:
    return urlsplit(url).port or 443


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))
