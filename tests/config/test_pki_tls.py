"""The deployment PKI with real keys and real TLS handshakes on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509

from peregrine.config import (
    ClientConfig,
    ConfigError,
    ConfigExistsError,
    GeneratedConfig,
    ServerConfig,
    check_server_pki,
    client_ssl_context,
    default_server_config,
    generate,
    issue_frontend_cert,
    load_client_config,
    load_server_config,
    pinned_ssl_context,
    server_ssl_context,
)
from peregrine.config.pki import PKIError, cert_names, verify_issued_by


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> GeneratedConfig:
    return generate(
        tmp_path_factory.mktemp("dep") / "conf",
        ["wss://frontend.example:8443/agent", "wss://10.20.30.40:9443/agent"],
    )


@pytest.fixture(scope="module")
def other_deployment(tmp_path_factory: pytest.TempPathFactory) -> GeneratedConfig:
    return generate(tmp_path_factory.mktemp("other") / "conf", ["wss://127.0.0.1:8443/agent"])


def test_generate_writes_secrets_owner_only(deployment: GeneratedConfig) -> None:
    d = deployment.directory
    assert mode(d) == 0o700
    for name in ("ca.key", "server.key", "server.yaml", "client.yaml"):
        assert mode(d / name) == 0o600, name
    for name in ("ca.pem", "server.pem"):
        assert mode(d / name) == 0o644, name
    assert {p.name for p in deployment.files} == {
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "server.yaml",
        "client.yaml",
    }


def test_generated_configs_load_and_agree(deployment: GeneratedConfig) -> None:
    server = load_server_config(deployment.server_config_path)
    client = load_client_config(deployment.client_config_path)
    assert server.enrollment_secret == client.enrollment_secret
    assert len(server.enrollment_secret) >= 32
    assert (
        client.server_urls
        == server.public_urls
        == [
            "wss://frontend.example:8443/agent",
            "wss://10.20.30.40:9443/agent",
        ]
    )
    assert client.ca_cert == Path(server.ca_cert_path).read_text()
    assert server.bind_address == "0.0.0.0"  # public hosts are not loopback
    d = deployment.directory
    assert server.datastore_url == f"sqlite:///{d}/peregrine.db"
    assert server.filestore_dir == str(d / "filestore")
    assert client.writeback_path == str(d / "agent" / "writeback.yaml")
    assert client.poll_max == 600.0
    assert check_server_pki(server) == []


def test_server_cert_is_signed_by_the_ca_and_names_every_host(deployment: GeneratedConfig) -> None:
    d = deployment.directory
    cert_pem = (d / "server.pem").read_text()
    verify_issued_by(cert_pem, (d / "ca.pem").read_text())
    names = cert_names(cert_pem)
    for host in ("frontend.example", "10.20.30.40", "127.0.0.1", "::1", "localhost"):
        assert host in names
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3650
    assert 700 < (cert.not_valid_after_utc - cert.not_valid_before_utc).days < 740
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_cert_from_another_ca_does_not_verify(
    deployment: GeneratedConfig, other_deployment: GeneratedConfig
) -> None:
    with pytest.raises(PKIError, match=r"not issued by this CA|does not verify"):
        verify_issued_by(
            (other_deployment.directory / "server.pem").read_text(),
            (deployment.directory / "ca.pem").read_text(),
        )


@contextmanager
def tls_server(ctx: ssl.SSLContext) -> Iterator[tuple[int, list[BaseException]]]:
    """A one-connection-at-a-time TLS echo server on 127.0.0.1 in a thread."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.1)  # so the loop notices ``stop`` quickly
    port = sock.getsockname()[1]
    errors: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(tls.recv(100))
            except (ssl.SSLError, OSError) as exc:
                errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, errors
    finally:
        stop.set()
        sock.close()
        thread.join(10)


def connect(ctx: ssl.SSLContext, port: int, host: str = "127.0.0.1") -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        tls.sendall(b"ping")
        return tls.recv(100)


def test_tls_handshake_with_the_pinned_ca(deployment: GeneratedConfig) -> None:
    with tls_server(server_ssl_context(deployment.server)) as (port, _):
        assert connect(client_ssl_context(deployment.client), port) == b"ping"
        assert connect(client_ssl_context(deployment.client), port, "localhost") == b"ping"


def test_client_pinned_to_another_ca_refuses_the_server(
    deployment: GeneratedConfig, other_deployment: GeneratedConfig
) -> None:
    """The intercepting-proxy / wrong-deployment case, seen from the agent."""
    with (
        tls_server(server_ssl_context(deployment.server)) as (port, errors),
        pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"),
    ):
        connect(client_ssl_context(other_deployment.client), port)
    assert errors  # the server saw the handshake fail


def test_server_with_a_cert_from_another_ca_is_refused(
    deployment: GeneratedConfig, other_deployment: GeneratedConfig
) -> None:
    with (
        tls_server(server_ssl_context(other_deployment.server)) as (port, _),
        pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"),
    ):
        connect(client_ssl_context(deployment.client), port)


def test_client_does_not_trust_system_roots(deployment: GeneratedConfig) -> None:
    ctx = client_ssl_context(deployment.client)
    assert ctx.cert_store_stats()["x509_ca"] == 1
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_host_name_not_in_the_certificate_is_refused(deployment: GeneratedConfig) -> None:
    with (
        tls_server(server_ssl_context(deployment.server)) as (port, _),
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        connect(client_ssl_context(deployment.client), port, "evil.example")


def test_pinned_context_rejects_garbage_ca() -> None:
    with pytest.raises(ConfigError, match="ca_cert"):
        pinned_ssl_context("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")


def test_issue_another_frontend_cert(deployment: GeneratedConfig, tmp_path: Path) -> None:
    cert, key = tmp_path / "fe2.pem", tmp_path / "fe2.key"
    issue_frontend_cert(deployment.server, ["fe2.example"], cert, key)
    assert mode(key) == 0o600
    assert "fe2.example" in cert_names(cert.read_text())
    verify_issued_by(cert.read_text(), deployment.client.ca_cert)
    server = ServerConfig(
        **{
            **{f: getattr(deployment.server, f) for f in ServerConfig.__struct_fields__},
            "server_cert_path": str(cert),
            "server_key_path": str(key),
        }
    )
    with tls_server(server_ssl_context(server)) as (port, _):
        assert connect(client_ssl_context(deployment.client), port, "fe2.example") == b"ping"


def test_generate_refuses_to_overwrite_without_force(deployment: GeneratedConfig) -> None:
    before = (deployment.directory / "ca.key").read_bytes()
    with pytest.raises(ConfigExistsError, match="--force"):
        generate(deployment.directory, ["wss://x.example/agent"])
    assert (deployment.directory / "ca.key").read_bytes() == before


def test_generate_force_replaces_the_ca(tmp_path: Path) -> None:
    first = generate(tmp_path / "d", ["wss://a.example/agent"])
    second = generate(tmp_path / "d", ["wss://b.example/agent"], force=True)
    assert first.client.ca_cert != second.client.ca_cert
    assert second.client.server_urls == ["wss://b.example/agent"]


def test_generate_refuses_plain_ws(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="wss://"):
        generate(tmp_path / "d", ["ws://a.example:8080/agent"])
    assert not (tmp_path / "d").exists()


def test_url_without_path_gets_the_agent_path(tmp_path: Path) -> None:
    made = generate(tmp_path / "d", ["wss://A.Example:8443"])
    assert made.client.server_urls == ["wss://a.example:8443/agent"]


def test_loopback_only_deployment_binds_loopback(tmp_path: Path) -> None:
    made = generate(tmp_path / "d", ["wss://127.0.0.1:8443/agent"])
    assert made.server.bind_address == "127.0.0.1"


def test_default_server_config_creates_once_then_reuses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path, cfg = default_server_config(data, port=9555)
    assert path == data / "server.yaml"
    assert cfg.public_urls == ["wss://127.0.0.1:9555/agent", "wss://localhost:9555/agent"]
    assert cfg.bind_address == "127.0.0.1"
    assert cfg.data_dir == str(data)
    client = load_client_config(data / "client.yaml")  # a local agent can start at once
    assert client.enrollment_secret == cfg.enrollment_secret
    ca_key = (data / "ca.key").read_bytes()
    path2, cfg2 = default_server_config(data, port=9555)
    assert (path2, cfg2) == (path, cfg)
    assert (data / "ca.key").read_bytes() == ca_key
    with tls_server(server_ssl_context(cfg)) as (port, _):
        assert connect(client_ssl_context(client), port) == b"ping"


def test_default_server_config_redoes_an_interrupted_generation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ca.key").write_text("half written")
    _, cfg = default_server_config(data)
    assert check_server_pki(cfg) == []


def test_check_server_pki_warns_for_a_host_the_cert_lacks(deployment: GeneratedConfig) -> None:
    cfg = ServerConfig(
        **{
            **{f: getattr(deployment.server, f) for f in ServerConfig.__struct_fields__},
            "public_urls": ["wss://elsewhere.example/agent"],
        }
    )
    (warning,) = check_server_pki(cfg)
    assert "elsewhere.example" in warning


def test_client_config_type_is_a_struct() -> None:
    assert "poll_max" in ClientConfig.__struct_fields__
