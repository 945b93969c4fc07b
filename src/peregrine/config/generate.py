"""Creating a deployment: CA, frontend certificate, secrets, server and client configurations.

``generate`` is what ``peregrine config generate`` runs; ``default_server_config`` is what
``peregrine server`` runs when it is given no configuration, so a newcomer can start a server
and a local agent with no set-up step. Everything secret is written owner-only, in an
owner-only directory; ``server.yaml`` is written last, so its presence means the set is complete.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from peregrine.config.files import PUBLIC_MODE, SECRET_MODE, ensure_private_dir, write_atomic
from peregrine.config.model import (
    AGENT_PATH,
    DEFAULT_PORT,
    ClientConfig,
    ConfigError,
    ServerConfig,
    load_client_config,
    load_server_config,
    normalize_frontend_url,
    save_config,
)
from peregrine.config.pki import (
    KeyPair,
    PKIError,
    cert_names,
    create_ca,
    days_left,
    issue_server_cert,
    load_certificate,
    url_host,
    verify_issued_by,
)

SERVER_FILE = "server.yaml"
CLIENT_FILE = "client.yaml"
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"
#: Files ``generate`` writes; it refuses to replace any of them without ``force``.
GENERATED_FILES = (CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE, CLIENT_FILE)
#: A frontend certificate closer than this to expiry is reported by ``check_server_pki``.
RENEW_DAYS = 30

SERVER_HEADER = """\
Peregrine server configuration (generated {date}).
Start it with: peregrine server --config {path}
Relative paths are relative to this file's directory; an empty datastore_url or filestore_dir
means inside data_dir (peregrine.db, filestore/). This file holds the enrollment secret:
keep it owner-only. ca.key is needed only to issue frontend certificates; it may be kept offline.
"""
CLIENT_HEADER = """\
Peregrine client configuration (generated {date}).
Run an agent with: peregrine agent --config client.yaml
Copy it to the endpoints; relative paths are relative to this file's directory.
It holds the enrollment secret and pins the deployment CA: keep it owner-only.
"""


class ConfigExistsError(ConfigError):
    """``generate`` would overwrite an existing deployment (its CA and secrets)."""


@dataclass(frozen=True)
class GeneratedConfig:
    """What ``generate`` wrote, and the configurations as they load (absolute paths)."""

    directory: Path
    server_config_path: Path
    client_config_path: Path
    server: ServerConfig
    client: ClientConfig
    files: tuple[Path, ...]


def default_data_dir() -> Path:
    """Where an unconfigured server keeps everything: ``$PEREGRINE_DATA_DIR``, else
    ``/var/lib/peregrine`` for root, else the XDG data directory."""
    configured = os.environ.get("PEREGRINE_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/peregrine")
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "peregrine"


def default_public_url(port: int = DEFAULT_PORT) -> str:
    """This machine's host name as a frontend URL (no DNS look-up: it must not hang)."""
    return f"wss://{socket.gethostname().lower()}:{port}{AGENT_PATH}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hosts(urls: Sequence[str], extra: Sequence[str]) -> list[str]:
    out: list[str] = []
    for host in [*(url_host(u) for u in urls), *extra]:
        if host not in out:
            out.append(host)
    return out


def generate(
    directory: Path,
    public_urls: Sequence[str] | None = None,
    *,
    port: int = DEFAULT_PORT,
    api_port: int | None = None,
    data_dir: Path | None = None,
    bind_address: str | None = None,
    hostnames: Sequence[str] = (),
    labels: Sequence[str] = (),
    force: bool = False,
) -> GeneratedConfig:
    """Create a deployment in ``directory``: CA, frontend certificate, enrollment secret,
    ``server.yaml`` and ``client.yaml``.

    ``public_urls`` are the URLs agents connect to (default: this host name on ``port``); the
    frontend certificate names all their hosts plus ``hostnames``, loopback and this host.
    ``bind_address`` defaults to all interfaces when any URL is not a loopback one. Existing
    files are only replaced with ``force`` (a new CA cuts off every deployed agent).
    """
    directory = directory.expanduser().absolute()
    server_path = directory / SERVER_FILE
    client_path = directory / CLIENT_FILE
    try:
        urls = [normalize_frontend_url(u) for u in (public_urls or [default_public_url(port)])]
    except ValueError as exc:
        raise ConfigError(None, "public_url", str(exc)) from None
    if not 1 <= port <= 65535:
        raise ConfigError(None, "port", f"{port} is not a TCP port (1-65535)")
    if not force:
        existing = [directory / n for n in (SERVER_FILE, *GENERATED_FILES)]
        existing = [p for p in existing if p.exists()]
        if existing:
            raise ConfigExistsError(
                existing[0],
                None,
                "a deployment already exists here; replacing it creates a new CA and every "
                "deployed agent would be refused (use --force to do it anyway, or another --dir)",
            )
    hosts = _hosts(urls, hostnames)
    if bind_address is None:
        bind_address = "127.0.0.1" if all(_is_loopback(h) for h in hosts) else "0.0.0.0"  # noqa: S104

    ensure_private_dir(directory)
    ca = create_ca()
    frontend = issue_server_cert(ca, hosts)
    write_atomic(directory / CA_KEY_FILE, ca.key_pem, SECRET_MODE)
    write_atomic(directory / CA_CERT_FILE, ca.cert_pem, PUBLIC_MODE)
    write_atomic(directory / SERVER_KEY_FILE, frontend.key_pem, SECRET_MODE)
    write_atomic(directory / SERVER_CERT_FILE, frontend.cert_pem, PUBLIC_MODE)

    data = data_dir.expanduser().absolute() if data_dir else None
    if data is not None:
        ensure_private_dir(data)
    server = ServerConfig(
        data_dir=str(data) if data else ".",
        public_urls=urls,
        ca_cert_path=CA_CERT_FILE,
        ca_key_path=CA_KEY_FILE,
        server_cert_path=SERVER_CERT_FILE,
        server_key_path=SERVER_KEY_FILE,
        enrollment_secret=secrets.token_urlsafe(32),
        bind_address=bind_address,
        port=port,
        api_port=port + 1 if api_port is None else api_port,
    )
    client = ClientConfig(
        server_urls=urls,
        ca_cert=ca.cert_pem,
        enrollment_secret=server.enrollment_secret,
        labels=list(labels),
    )
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    save_config(client, client_path, CLIENT_HEADER.format(date=date))
    save_config(server, server_path, SERVER_HEADER.format(date=date, path=server_path))
    files = tuple(directory / n for n in (*GENERATED_FILES, SERVER_FILE))
    return GeneratedConfig(
        directory=directory,
        server_config_path=server_path,
        client_config_path=client_path,
        server=load_server_config(server_path),
        client=load_client_config(client_path),
        files=files,
    )


def default_server_config(
    data_dir: Path | None = None, port: int = DEFAULT_PORT
) -> tuple[Path, ServerConfig]:
    """The configuration of a server started with none: ``<data_dir>/server.yaml``, created
    on first start (frontend on loopback only, plus a ``client.yaml`` for a local agent) and
    reused afterwards."""
    data_dir = (data_dir or default_data_dir()).expanduser().absolute()
    path = data_dir / SERVER_FILE
    if not path.exists():
        # No server.yaml means no complete deployment: leftovers of an interrupted run go.
        generate(
            data_dir,
            [f"wss://127.0.0.1:{port}{AGENT_PATH}", f"wss://localhost:{port}{AGENT_PATH}"],
            port=port,
            force=True,
        )
    return path, load_server_config(path)


def export_client_config(
    server: ServerConfig,
    *,
    server_urls: Sequence[str] | None = None,
    labels: Sequence[str] = (),
    writeback_path: str | None = None,
    spool_dir: str | None = None,
) -> ClientConfig:
    """A client configuration for agents of this server (what ``config client`` writes)."""
    try:
        ca_cert_pem = server.ca_cert_pem()
        load_certificate(ca_cert_pem, "CA certificate")
    except PKIError as exc:
        raise ConfigError(server.ca_cert_path, "ca_cert_path", str(exc)) from None
    client = ClientConfig(
        server_urls=list(server_urls or server.public_urls),
        ca_cert=ca_cert_pem,
        enrollment_secret=server.enrollment_secret,
        labels=list(labels),
    )
    if writeback_path:
        client = msgspec.structs.replace(client, writeback_path=writeback_path)
    if spool_dir:
        client = msgspec.structs.replace(client, spool_dir=spool_dir)
    return client


def write_client_config(client: ClientConfig, path: Path) -> None:
    """Write a client configuration (owner-only: it holds the enrollment secret)."""
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    save_config(client, path, CLIENT_HEADER.format(date=date))


def issue_frontend_cert(
    server: ServerConfig, hosts: Sequence[str], cert_path: Path, key_path: Path
) -> KeyPair:
    """Issue a certificate for another (or a renewed) frontend from the deployment CA and
    write it (key owner-only). Needs the CA key."""
    if not server.ca_key_path:
        raise ConfigError(None, "ca_key_path", "the CA key is needed to issue certificates")
    try:
        ca_key_pem = Path(server.ca_key_path).read_text()
    except OSError as exc:
        raise ConfigError(server.ca_key_path, "ca_key_path", f"cannot read: {exc}") from None
    try:
        pair = issue_server_cert(KeyPair(server.ca_cert_pem(), ca_key_pem), hosts)
    except PKIError as exc:
        raise ConfigError(server.ca_key_path, "ca_key_path", str(exc)) from None
    write_atomic(key_path, pair.key_pem, SECRET_MODE)
    write_atomic(cert_path, pair.cert_pem, PUBLIC_MODE)
    return pair


def check_server_pki(server: ServerConfig) -> list[str]:
    """Check that the frontend certificate fits the deployment; raise ConfigError when the
    server cannot work, return warnings (expiring soon, a public host not in the certificate).
    """
    try:
        cert_pem = Path(server.server_cert_path).read_text()
    except OSError as exc:
        raise ConfigError(server.server_cert_path, "server_cert_path", str(exc)) from None
    try:
        verify_issued_by(cert_pem, server.ca_cert_pem())
    except PKIError as exc:
        raise ConfigError(server.server_cert_path, "server_cert_path", str(exc)) from None
    warnings = []
    left = days_left(cert_pem)
    if left < RENEW_DAYS:
        warnings.append(
            f"the frontend certificate expires in {left:.0f} days: issue a new one with "
            "issue_frontend_cert"
        )
    names = set(cert_names(cert_pem))
    for url in server.public_urls:
        host = url_host(url)
        if host.lower() not in names:
            warnings.append(f"{url}: the frontend certificate does not name {host!r}")
    return warnings
