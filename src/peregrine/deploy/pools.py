"""The balancer's pools: an instance put in (taking traffic), drained, put in maintenance or
taken out, on both pools at once (agents' TCP and the API's).

HAProxy is changed through its runtime API: each change is atomic and needs no reload, so
connections already open stay where they are. ``haproxy.cfg`` is rewritten too (its
``server`` lines), so a restarted HAProxy finds the instances that run now. nginx has no
runtime API in its free version: its two upstreams are one include file, written
atomically, checked (``nginx -t``; the previous file is put back when it fails), then nginx
is reloaded; a drained or maintained instance is ``down`` (new connections go elsewhere, and
a reload lets the old workers finish the connections they hold).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

from peregrine.cluster import runtime_api
from peregrine.cluster.generate import FrontendSpec
from peregrine.cluster.services import add_to_pool_commands
from peregrine.config.files import PUBLIC_MODE, write_atomic
from peregrine.deploy.model import (
    Deployment,
    HAProxyBalancer,
    Instance,
    NginxBalancer,
    netloc,
)

#: The generated ``haproxy.cfg``'s backends (``cluster/haproxy.py``).
BACKENDS = ("agents", "api")
#: Seconds a reload or a runtime API command may take.
COMMAND_TIMEOUT = 10.0


class PoolError(RuntimeError):
    """The balancer refused a change (its answer is in the message)."""


class Pool(Protocol):
    def apply(self, instance: Instance, deployment: Deployment) -> None:
        """Make the balancer hold ``instance`` as ``instance.pool`` says."""

    def states(self) -> dict[str, str]:
        """Each instance's state as the balancer sees it (``UP``, ``DOWN``, ``DRAIN``,
        ``MAINT``...; for nginx, what was written), by instance name; both pools must
        agree, else ``agents X / api Y``."""


def open_pool(deployment: Deployment) -> Pool:
    balancer = deployment.balancer
    if isinstance(balancer, HAProxyBalancer):
        return HAProxyPool(balancer, Path(deployment.ca_cert))
    return NginxPool(balancer)


class HAProxyPool:
    def __init__(self, balancer: HAProxyBalancer, ca_file: Path) -> None:
        self.balancer = balancer
        self.ca_file = ca_file

    def command(self, line: str) -> str:
        """One runtime API command; its answer."""
        return runtime_api.command(self.balancer.socket, line, COMMAND_TIMEOUT)

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` rows of the servers, by ``backend/server``."""
        return runtime_api.server_stats(self.balancer.socket)

    def states(self) -> dict[str, str]:
        found: dict[str, dict[str, str]] = {}
        for server, row in self.stats().items():
            backend, name = server.split("/", 1)
            if backend in BACKENDS:
                found.setdefault(name, {})[backend] = row["status"].split(" ")[0]
        return {name: _agreed(by_backend) for name, by_backend in found.items()}

    def apply(self, instance: Instance, deployment: Deployment) -> None:
        present = self.stats()
        for backend in BACKENDS:
            server = f"{backend}/{instance.name}"
            for line in self._commands(instance, backend, server in present):
                answer = self.command(line).strip()
                if answer and not answer.startswith(("New server registered", "Server deleted")):
                    raise PoolError(f"HAProxy refused {line!r}: {answer}")
        if self.balancer.config:
            self._rewrite_config(deployment)

    def _commands(self, instance: Instance, backend: str, present: bool) -> list[str]:
        server = f"{backend}/{instance.name}"
        if instance.pool == "absent":
            if not present:
                return []
            return [f"set server {server} state maint", f"shutdown sessions server {server}",
                    f"del server {server}"]  # fmt: skip
        lines = []
        if not present:
            spec = FrontendSpec(instance.name, instance.host, instance.port, instance.api_port)
            lines += [
                c for c in add_to_pool_commands(spec, self.ca_file)
                if server in c.split() and not c.startswith("set server")
            ]  # fmt: skip
        return [*lines, f"set server {server} state {instance.pool}"]

    def _rewrite_config(self, deployment: Deployment) -> None:
        path = Path(self.balancer.config)
        text = path.read_text()
        for backend, port_of in (("agents", _agent_port), ("api", _api_port)):
            servers = [
                f"    server {i.name} {netloc(i.host, port_of(i))}"
                + (" disabled" if i.pool == "maint" else "")
                for i in deployment.instances
                if i.pool != "absent"
            ]
            text = replace_servers(text, backend, servers)
        write_atomic(path, text, PUBLIC_MODE)


class NginxPool:
    def __init__(self, balancer: NginxBalancer) -> None:
        self.balancer = balancer

    def states(self) -> dict[str, str]:
        return dict(self._written)

    @property
    def _written(self) -> dict[str, str]:
        path = Path(self.balancer.include)
        if not path.exists():
            return {}
        states = {}
        for line in path.read_text().splitlines():
            if "# instance " in line:
                name, state = line.split("# instance ", 1)[1].split()[:2]
                states[name] = state
        return states

    def apply(self, instance: Instance, deployment: Deployment) -> None:
        path = Path(self.balancer.include)
        text = render_nginx(deployment, self.balancer)
        previous = path.read_text() if path.exists() else None
        write_atomic(path, text, PUBLIC_MODE)
        try:
            if self.balancer.test:
                _run(self.balancer.test, "the nginx configuration test")
        except PoolError:
            if previous is None:
                path.unlink()
            else:
                write_atomic(path, previous, PUBLIC_MODE)
            raise
        _run(self.balancer.reload, "the nginx reload")


def render_nginx(deployment: Deployment, balancer: NginxBalancer) -> str:
    """The include file: one ``stream`` upstream per port (``least_conn``), an instance in
    drain or maintenance marked ``down``, one not in the pool left out."""
    listed = deployment.serving()
    if not listed:
        raise PoolError("no instance left in the pool: nginx refuses an empty upstream")
    lines = ["# Peregrine frontends: written by 'peregrine deploy'; do not edit by hand.",
             "# Include it inside nginx's stream { } block."]  # fmt: skip
    for upstream, port_of in (
        (balancer.agents_upstream, _agent_port),
        (balancer.api_upstream, _api_port),
    ):
        lines += [f"upstream {upstream} {{", "    least_conn;"]
        for i in listed:
            down = "" if i.pool == "ready" else " down"
            lines.append(
                f"    server {netloc(i.host, port_of(i))}{down};  # instance {i.name} {i.pool}"
            )
        lines += ["}", ""]
    return "\n".join(lines)


def replace_servers(text: str, backend: str, servers: list[str]) -> str:
    """``text`` (an haproxy.cfg) with the ``server`` lines of ``backend <backend>`` replaced
    by ``servers`` (put before the blank lines that end the section)."""
    out: list[str] = []
    inside = False

    def close() -> None:
        end = len(out)
        while end > 0 and not out[end - 1].strip():
            end -= 1
        out[end:end] = servers

    for line in text.splitlines():
        if line and not line[0].isspace():
            if inside:
                close()
            inside = line.split()[:2] == ["backend", backend]
        elif inside and line.split()[:1] == ["server"]:
            continue
        out.append(line)
    if inside:
        close()
    return "\n".join(out) + "\n"


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PoolError(f"{what} ({' '.join(command)}) did not run: {exc}") from None
    if done.returncode != 0:
        raise PoolError(f"{what} ({' '.join(command)}) failed: {done.stderr.strip()}")


def _agreed(by_backend: dict[str, str]) -> str:
    states = set(by_backend.values())
    if len(states) == 1 and len(by_backend) == len(BACKENDS):
        return states.pop()
    return " / ".join(f"{b} {by_backend.get(b, 'absent')}" for b in BACKENDS)


def _agent_port(instance: Instance) -> int:
    return instance.port


def _api_port(instance: Instance) -> int:
    return instance.api_port
