"""What ``peregrine server`` checks before it starts and tells once it runs: that its ports are
free (one line saying which one is not, instead of a traceback), and where its API, its CA
certificate and a login are."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from peregrine.cli.local_login import ADMIN_USER, api_url

if TYPE_CHECKING:
    from peregrine.config import ServerConfig


def _listen_error(host: str, port: int) -> OSError | None:
    """Why a listening socket on (host, port) cannot be made now, or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the server binds: SO_REUSEADDR ignores TIME_WAIT leftovers, not a live listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def port_problem(config: ServerConfig, config_path: Path) -> str | None:
    """One line naming the first port the server cannot listen on and what to do, or None."""
    wanted = [("agent", config.bind_address, config.port)]
    if config.api_port:
        wanted.append(("API", config.api_bind_address, config.api_port))
    for role, host, port in wanted:
        exc = _listen_error(host, port)
        if exc is None:
            continue
        field = "port" if role == "agent" else "api_port"
        if exc.errno == errno.EADDRINUSE:
            return (
                f"the {role} port {host}:{port} is already in use (another `peregrine server`?): "
                f"stop that process, or set another {field} in {config_path}"
            )
        return (
            f"cannot listen on the {role} port {host}:{port} ({exc.strerror or exc}): "
            f"set another {field} or {'bind_address' if role == 'agent' else 'api_bind_address'}"
            f" in {config_path}"
        )
    return None


def banner(config: ServerConfig, login: Path | None) -> str:
    """Where to find the server, and how to log in, from here and from elsewhere."""
    lines = [f"  agents connect to   {', '.join(config.public_urls)}"]
    if config.api_port:
        url = api_url(config)
        lines += [
            f"  GUI                 {url}/ui/   (sign in as {ADMIN_USER} after "
            f"`peregrine users passwd {ADMIN_USER}` sets its password)",
            f"  API                 {url}/api/v1   (docs: {url}/api/docs)",
            f"  CA certificate      {config.ca_cert_path}",
        ]
    if login is not None:
        lines += [
            f"  login (this host)   ready: try `peregrine clients` (as user {ADMIN_USER}; "
            f"token in {login}, owner-only)",
        ]
    lines += [
        "  login (elsewhere)   peregrine users add NAME --role investigator; "
        "peregrine users token NAME,",
        "                      then set PEREGRINE_URL, PEREGRINE_TOKEN and PEREGRINE_CA_CERT "
        "(a copy of the CA certificate)",
    ]
    return "\n".join(lines)
