"""HAProxy's runtime API (the ``stats socket`` of ``haproxy.cfg``): one command a connection,
and the servers' rows of ``show stat``. The development cluster and ``peregrine deploy`` both
speak to HAProxy through it."""

from __future__ import annotations

import csv
import io
import socket

#: Seconds a command may take.
TIMEOUT = 10.0


def command(socket_path: str, line: str, timeout: float = TIMEOUT) -> str:
    """Send one command; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(line.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def server_stats(socket_path: str) -> dict[str, dict[str, str]]:
    """``show stat`` rows of the servers (not the frontends' and backends' totals), by
    ``backend/server``."""
    rows = csv.DictReader(io.StringIO(command(socket_path, "show stat").lstrip("# ")))
    return {
        f"{row['pxname']}/{row['svname']}": row
        for row in rows
        if row.get("svname") not in (None, "FRONTEND", "BACKEND")
    }
