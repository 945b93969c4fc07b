"""TLS contexts for the frontends and the agents.

The agent trusts exactly one CA: the deployment's, pinned in its configuration. System roots are
never loaded, so neither a TLS-intercepting proxy (whose CA the host may trust) nor a server of
another deployment gets a handshake. Host names are checked as usual, TLS 1.2 is the floor.
"""

from __future__ import annotations

import ssl

from peregrine.config.model import ClientConfig, ConfigError, ServerConfig


def server_ssl_context(cfg: ServerConfig) -> ssl.SSLContext:
    """The context a frontend listens with: its certificate and key, TLS 1.2 or newer."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    try:
        ctx.load_cert_chain(cfg.server_cert_path, cfg.server_key_path)
    except FileNotFoundError as exc:
        raise ConfigError(exc.filename, None, "TLS certificate or key file not found") from None
    except ssl.SSLError as exc:
        raise ConfigError(
            cfg.server_cert_path,
            "server_key_path",
            f"the certificate and key cannot be used together ({exc.reason or exc})",
        ) from None
    return ctx


def pinned_ssl_context(ca_cert_pem: str) -> ssl.SSLContext:
    """A client context that trusts only ``ca_cert_pem`` (no system roots), checks host names,
    and applies OpenSSL's strict X.509 rules."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        ctx.load_verify_locations(cadata=ca_cert_pem)
    except ssl.SSLError as exc:
        raise ConfigError(
            None, "ca_cert", f"not a usable CA certificate ({exc.reason or exc})"
        ) from None
    return ctx


def client_ssl_context(cfg: ClientConfig) -> ssl.SSLContext:
    """The context an agent connects with: pinned to the deployment CA."""
    return pinned_ssl_context(cfg.ca_cert)


#: Read buffer per TLS connection for processes that hold thousands of them.
TLS_READ_BUFFER = 16 * 1024


def shrink_tls_read_buffers(size: int = TLS_READ_BUFFER) -> int:
    """Make asyncio give new TLS connections of this process a ``size`` read buffer.

    asyncio allocates 256 KiB per TLS connection and fills it, so it stays resident: 2.5 GB
    per 10,000 agents, most of what an idle connection costs a frontend. This sets a class
    attribute of ``asyncio.sslproto.SSLProtocol`` (every TLS connection made or accepted
    afterwards); reads then come in more, smaller pieces and nothing else changes. Frontends
    and the fleet simulator call it. Returns the previous size.
    """
    import asyncio.sslproto

    previous: int = getattr(asyncio.sslproto.SSLProtocol, "max_size", size)
    asyncio.sslproto.SSLProtocol.max_size = size
    return previous
