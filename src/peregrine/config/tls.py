"""TLS contexts for the frontends and the agents.

The agent trusts exactly one CA: the deployment's, pinned in its configuration. System roots are
never loaded, so neither a TLS-intercepting proxy (whose CA the host may trust) nor a server of
another deployment gets a handshake. Host names are checked as usual, TLS 1.2 is the floor.
"""

from __future__ import annotations

import functools
import ssl
import threading
from typing import Any

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


#: Bytes asyncio reads from a TLS socket at a time in processes that hold thousands of
#: connections. Also bounds what a connection's incoming OpenSSL memory BIO grows to (it never
#: shrinks): about twice this, for a connection that once received a large message.
TLS_READ_BUFFER = 16 * 1024

#: The read buffer of this thread's TLS connections (an event loop runs in one thread).
_thread_buffers = threading.local()


def shrink_tls_read_buffers(size: int = TLS_READ_BUFFER) -> int:
    """Make asyncio's TLS connections of this process read ``size`` bytes at a time, into one
    buffer per thread instead of one per connection.

    asyncio gives every TLS connection its own 256 KiB read buffer and fills it, so it stays
    resident: 2.5 GB per 10,000 agents. That buffer only carries ciphertext from the socket to
    the connection's OpenSSL memory BIO: the transport calls ``get_buffer()``, ``recv_into()``
    it and ``buffer_updated()`` in one callback, and ``buffer_updated()`` copies it into the BIO
    at once. No other connection of the event loop runs in between, so one buffer per thread
    serves them all (per thread, because ``recv_into`` releases the GIL). This sets the class
    attribute ``max_size`` of ``asyncio.sslproto.SSLProtocol`` (the size read at a time) and
    gives every TLS connection made or accepted afterwards the thread's buffer; reads and
    everything else are unchanged; the connection's write backlog is a list, not a deque.
    Frontends and the fleet simulator call it. Returns the
    previous size (a later call with it restores that read size; the buffer stays shared).
    """
    import asyncio.sslproto

    protocol = asyncio.sslproto.SSLProtocol
    previous: int = getattr(protocol, "max_size", size)
    protocol.max_size = size
    if not getattr(protocol.__init__, "_peregrine_shared_buffer", False):
        original = protocol.__init__

        @functools.wraps(original)
        def __init__(self: asyncio.sslproto.SSLProtocol, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            # get_buffer() returns _ssl_buffer_view while _ssl_buffer is at least max_size long,
            # and buffer_updated() reads from _ssl_buffer_view.
            data, view = _thread_buffer(protocol.max_size)
            self._ssl_buffer = data  # type: ignore[attr-defined]
            self._ssl_buffer_view = view  # type: ignore[attr-defined]
            # An empty deque holds a 64-slot block (760 bytes) for the connection's life; the
            # backlog is appended to, read and cut at [0], cleared: a list does all of it.
            self._write_backlog = []  # type: ignore[assignment]

        __init__._peregrine_shared_buffer = True  # type: ignore[attr-defined]
        protocol.__init__ = __init__  # type: ignore[method-assign]
    return previous


def _thread_buffer(size: int) -> tuple[bytearray, memoryview]:
    buffer: tuple[bytearray, memoryview] | None = getattr(_thread_buffers, "buffer", None)
    if buffer is None or len(buffer[0]) != size:
        data = bytearray(size)
        buffer = (data, memoryview(data))
        _thread_buffers.buffer = buffer
    return buffer
