"""Starting and stopping frontend instances on this host, as plain processes.

A new instance's configuration is its slot's current one with its own name, ports and data
directory (and any settings the upgrade changes); the filestore, datastore and bus stay
shared. Its process runs ``command`` (default: this installation's ``peregrine server``)
with ``PEREGRINE_DEPLOY_VERSION`` naming the version it was started as. A stop is graceful
(SIGTERM: the frontend drains, ``Server.stop``), killed after a time-out.
"""

from __future__ import annotations

import sys
from pathlib import Path

from peregrine.cluster import processes
from peregrine.cluster.generate import FrontendSpec
from peregrine.cluster.services import add_frontend_config
from peregrine.deploy.model import Instance

#: ``{config}`` is replaced by the instance's configuration file.
DEFAULT_COMMAND = [sys.executable, "-m", "peregrine", "server", "--config", "{config}",
                   "--no-local-agent", "--log-level", "WARNING"]  # fmt: skip
VERSION_VARIABLE = "PEREGRINE_DEPLOY_VERSION"
#: Seconds a stopping instance may drain before it is killed (its own drain.timeout is 30).
STOP_TIMEOUT = 60.0


def next_name(slot: str, taken: set[str]) -> str:
    """``<slot>-2``, ``<slot>-3``...: the first name not taken."""
    n = 2
    while f"{slot}-{n}" in taken:
        n += 1
    return f"{slot}-{n}"


def new_instance(
    old: Instance,
    name: str,
    *,
    version: str,
    command: list[str],
    env: dict[str, str],
    settings: dict[str, object],
) -> Instance:
    """The configuration of ``old``'s replacement written beside ``old``'s, on free ports of
    the same host; the instance (not started)."""
    spec = FrontendSpec(name, old.host, processes.free_port(), processes.free_port())
    path = add_frontend_config(Path(old.config), spec, settings)
    return Instance(
        name=name, slot=old.slot, host=old.host, port=spec.port, api_port=spec.api_port,
        config=str(path), version=version, command=command or list(DEFAULT_COMMAND), env=env,
    )  # fmt: skip


def start(instance: Instance, log_dir: Path) -> None:
    """Start the instance's process (its pid is recorded on it); output goes to
    ``log_dir/<name>.log``."""
    command = [part.replace("{config}", instance.config) for part in _command(instance)]
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = {**instance.env, VERSION_VARIABLE: instance.version}
    instance.pid = processes.spawn(command, log_dir / f"{instance.name}.log", env)


def alive(instance: Instance) -> bool:
    return bool(instance.pid) and processes.running(instance.pid, _marker(instance))


def stop(instance: Instance, timeout: float = STOP_TIMEOUT) -> None:
    """A graceful stop (SIGTERM, then SIGKILL after ``timeout``); nothing when not running."""
    if instance.pid:
        processes.stop(instance.pid, _marker(instance), timeout)
    instance.pid = 0


def _command(instance: Instance) -> list[str]:
    return instance.command or DEFAULT_COMMAND


def _marker(instance: Instance) -> str:
    """What the process's command line must hold for its pid to still be ours."""
    return instance.config if any("{config}" in p for p in _command(instance)) else ""
