"""The balancer's configuration: HAProxy in front of the frontends' agent and API ports.

Both ports are passed through as TCP: the frontends terminate TLS themselves, so agents keep
pinning the deployment CA end to end (the balancer never holds a key) and analysts see the
same certificate through the balancer as on a frontend. Agents are spread with ``leastconn``
(their connections last hours; round robin would pile a restarted frontend's returning
agents onto whichever frontends were next in turn). Every server is checked with
``GET /readyz`` over TLS against the deployment CA, on the port it serves: a frontend whose
datastore, filestore or bus fails, or that drains, leaves the pool within two checks and
comes back after two good ones. Connections already open stay where they are (a shared
PostgreSQL restarting must not throw every agent off at once). A connection refused by a
frontend not yet marked down is re-dispatched to another (``option redispatch``).

The runtime API socket (``stats socket ... level admin``) is on, for draining and moving
frontends in and out of the pool without a reload (``set server agents/frontend2 state drain``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Seconds between health checks of each frontend; two failures take it out of the pool.
CHECK_INTERVAL = 2
#: An idle agent connection is pinged by its frontend every minute and dropped after two
#: minutes without an answer; the balancer must not cut it earlier.
IDLE_TIMEOUT = "10m"


@dataclass(frozen=True)
class Backend:
    """One frontend as the balancer sees it."""

    name: str
    host: str
    port: int
    api_port: int


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render(
    backends: Sequence[Backend],
    *,
    bind_host: str,
    agent_port: int,
    api_port: int,
    ca_file: Path,
    socket_path: Path,
    max_connections: int = 100_000,
) -> str:
    """The text of ``haproxy.cfg`` (paths absolute: HAProxy reads them from its working
    directory otherwise)."""
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Peregrine balancer (generated {date}).",
        f"# Run it with: haproxy -f {socket_path.parent / 'haproxy.cfg'}",
        "# Agents and analysts reach the frontends through it; TLS ends on the frontends.",
        "global",
        f"    maxconn {max_connections}",
        f"    stats socket {socket_path} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        "",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        f"    timeout client {IDLE_TIMEOUT}",
        f"    timeout server {IDLE_TIMEOUT}",
        "    timeout check 3s",
        "    option redispatch",
        "    retries 2",
        "    option httpchk",
        "    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host peregrine-balancer",
        "    http-check expect status 200",
        # A frontend host that does not resolve yet must not stop the balancer starting.
        f"    default-server check inter {CHECK_INTERVAL}s fall 2 rise 2 init-addr last,libc,none"
        f" check-ssl verify required ca-file {ca_file}",
        "",
        "frontend agents",
        f"    bind {_address(bind_host, agent_port)}",
        "    default_backend agents",
        "",
        "backend agents",
        "    balance leastconn",
        *(f"    server {b.name} {_address(b.host, b.port)}" for b in backends),
        "",
        "frontend api",
        f"    bind {_address(bind_host, api_port)}",
        "    default_backend api",
        "",
        "backend api",
        "    balance leastconn",
        *(f"    server {b.name} {_address(b.host, b.api_port)}" for b in backends),
        "",
    ]
    return "\n".join(lines)
