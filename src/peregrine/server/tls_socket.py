"""TLS in OpenSSL on the socket itself, under asyncio's plain socket transport.

asyncio's TLS (``SSLProtocol``) puts an ``SSLObject`` between two memory BIOs and keeps some
forty attributes of Python state per connection; an idle agent costs ≈ 7 KB more that way than
with OpenSSL reading and writing the socket (``benchmarks/bench_connection_memory.py``). Here the
listening socket hands asyncio connections that are already ``SSLSocket``s, so asyncio's
ordinary socket transport and websockets above it run unchanged: OpenSSL's "want read" and
"want write" become the ``BlockingIOError`` the transport already waits out. The TLS handshake
happens in the first reads, inside websockets' opening time-out (``open_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # the supervisor imports this module for listening_socket alone
    from websockets.asyncio.server import Server as WebSocketServer

_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError)
_Socket = TypeVar("_Socket", bound=socket.socket)
#: The most plaintext one TLS record carries.
TLS_RECORD = 16 * 1024


class NonBlockingTLSSocket(ssl.SSLSocket):
    """An ``SSLSocket`` that asyncio's socket transport can drive.

    A read returns every byte OpenSSL has decrypted (so nothing waits in OpenSSL while the
    socket looks idle); TLS has no half-close of its own, so ``shutdown`` sends TLS's
    close_notify instead of a TCP FIN under the session (which would end TLS for both ways).
    """

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        try:
            # One record at most (asyncio asks for 256 KiB: a buffer that size for each read)
            data = super().recv(min(buflen, TLS_RECORD), flags)
            while data and (waiting := self.pending()):
                data += super().recv(waiting, flags)
        except _WOULD_BLOCK:
            raise BlockingIOError from None
        return data

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        raise NotImplementedError("asyncio reads a NonBlockingTLSSocket with recv()")

    def send(self, data: Any, flags: int = 0) -> int:
        try:
            return super().send(data, flags)
        except _WOULD_BLOCK:
            # Retried by the transport with the same bytes first, as OpenSSL requires.
            raise BlockingIOError from None

    def sendmsg(  # type: ignore[override]  # SSLSocket's own always raises
        self, buffers: Iterable[Any], ancdata: Any = (), flags: int = 0, address: Any = None
    ) -> int:
        """asyncio ≥ 3.12 writes its backlog with ``sendmsg``; TLS sends one buffer."""
        return self.send(b"".join(buffers), flags)

    def shutdown(self, how: int) -> None:
        if how == socket.SHUT_RD:
            return
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            sslobj = self._sslobj  # type: ignore[attr-defined]
            if sslobj is not None:
                sslobj.shutdown()  # sends close_notify; the peer's comes later, or not


class TLSListener(socket.socket):
    """A listening socket whose ``accept`` returns a ``NonBlockingTLSSocket`` (handshake not
    yet done) of ``context``: what ``loop.create_server(sock=...)`` and websockets' ``serve``
    take, with no ``ssl=`` of their own."""

    context: ssl.SSLContext

    def accept(self) -> tuple[socket.socket, Any]:
        conn, address = super().accept()
        try:
            # Reset by the peer while it waited to be accepted (an agent killed, a burst of
            # resets): closed here. Wrapped, its reset would surface inside wrap_socket after
            # the SSLSocket took the descriptor, leaving that to the garbage collector.
            conn.getpeername()
            tls = self.context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        except OSError:
            conn.close()  # as if never accepted
            raise BlockingIOError from None
        return tls, address


def tls_listener(
    context: ssl.SSLContext,
    host: str,
    port: int,
    backlog: int,
    reuse_port: bool = False,
    fileno: int | None = None,
) -> TLSListener:
    """A bound, listening ``TLSListener`` on the first address ``host`` resolves to; or, with
    ``fileno``, over that listening socket (one ``peregrine server --workers`` made)."""
    context.sslsocket_class = NonBlockingTLSSocket
    if fileno is not None:
        listener = TLSListener(fileno=fileno)
        listener.set_inheritable(False)  # the supervisor passed it; no child of ours needs it
        listener.setblocking(False)
    else:
        listener = listening_socket(host, port, backlog, reuse_port, TLSListener)
    listener.context = context
    return listener


async def close_listener(server: WebSocketServer) -> None:
    """Close websockets' listening ``server`` without leaking a connection it has just
    accepted, and leave open the connections it made (``close_connections=False``).

    asyncio accepts in one step and makes the connection's transport in a task of the next; a
    server closed in between fails that transport (``Server._attach`` asserts the server is
    open) and leaves the accepted socket to the garbage collector. So accepting stops first,
    those tasks run, and only then the server closes."""
    loop = asyncio.get_running_loop()
    for sock in server.sockets:
        loop.remove_reader(sock.fileno())
    for _ in range(2):  # one pass runs them; the second is margin
        await asyncio.sleep(0)
    server.close(close_connections=False)


def listening_socket(
    host: str, port: int, backlog: int, reuse_port: bool, kind: type[_Socket]
) -> _Socket:
    """A non-blocking socket of class ``kind`` listening on the first address ``host``
    resolves to (with SO_REUSEPORT, one of several sharing the port)."""
    family, sock_type, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = kind(family, sock_type, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(address)
        listener.listen(backlog)
        listener.setblocking(False)
    except OSError:
        listener.close()
        raise
    return listener
