"""The deployment file (``deploy.yaml``): the frontend instances, the balancer, and an upgrade
in progress.

It is the state file too: every step of an upgrade is written (atomically) before the next
begins, so an upgrade interrupted by a crash or a lost terminal is resumed or rolled back
from what the file says, never from what a process remembered.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import yaml

from peregrine.config.files import SECRET_MODE, write_atomic

DEPLOY_FILE = "deploy.yaml"
#: Uptest results, one JSON object a line, beside the deployment file.
UPTEST_LOG = "uptests.jsonl"

#: An instance's name is also its name in HAProxy and in ``frontend_name``.
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
#: In the pools: taking traffic, finishing what it has, out (kept), not listed.
PoolState = Literal["ready", "drain", "maint", "absent"]


class UptestSummary(msgspec.Struct, forbid_unknown_fields=True):
    """The last uptest of an instance, as ``deploy status`` shows it."""

    at: float
    passed: bool
    #: check name -> "ok" or what went wrong, in a line.
    checks: dict[str, str] = msgspec.field(default_factory=dict)
    seconds: float = 0.0


class Instance(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One frontend process: where it listens and what runs there."""

    name: Name
    #: The place it fills: a new version of ``frontend2`` takes slot ``frontend2``.
    slot: Name
    host: str
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    api_port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    #: Its server configuration (absolute path).
    config: str
    version: str = ""
    #: The program and its arguments; ``{config}`` is replaced by the configuration's path.
    command: list[str] = msgspec.field(default_factory=list)
    #: Extra environment for its process.
    env: dict[str, str] = msgspec.field(default_factory=dict)
    pid: int = 0
    pool: PoolState = "absent"
    uptest: UptestSummary | None = None

    @property
    def agent_url(self) -> str:
        return f"wss://{netloc(self.host, self.port)}/agent"

    @property
    def api_url(self) -> str:
        return f"https://{netloc(self.host, self.api_port)}"


class HAProxyBalancer(msgspec.Struct, tag="haproxy", forbid_unknown_fields=True, kw_only=True):
    """HAProxy, changed through its runtime API (``stats socket ... level admin``)."""

    socket: str
    #: Rewritten with the current servers after each change, so a restart finds them.
    config: str = ""


class NginxBalancer(msgspec.Struct, tag="nginx", forbid_unknown_fields=True, kw_only=True):
    """nginx: an include file with the two upstreams (``stream`` module: TLS passes
    through), written atomically, then ``reload`` run."""

    include: str
    #: Run before the reload; when it fails the previous file is put back.
    test: list[str] = msgspec.field(default_factory=lambda: ["nginx", "-t", "-q"])
    reload: list[str] = msgspec.field(default_factory=lambda: ["nginx", "-s", "reload"])
    agents_upstream: str = "peregrine_agents"
    api_upstream: str = "peregrine_api"


class Upgrade(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An upgrade under way (or stopped half-way): what it is moving to and how far it got."""

    version: str
    command: list[str] = msgspec.field(default_factory=list)
    env: dict[str, str] = msgspec.field(default_factory=dict)
    #: Configuration keys set on the new instances (``drain.agents_seconds: 2``).
    settings: dict[str, object] = msgspec.field(default_factory=dict)
    batch: int = 1
    started: float = 0.0
    #: slot -> the old instance it replaces (kept in ``instances`` until the upgrade ends).
    replacing: dict[str, str] = msgspec.field(default_factory=dict)
    #: slots whose new instance is in the pool and whose old one is stopped.
    done: list[str] = msgspec.field(default_factory=list)
    #: "running", "failed: <why>", "rolled back", "finished".
    outcome: str = "running"


class Deployment(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Everything ``peregrine deploy`` knows about one cluster."""

    balancer: HAProxyBalancer | NginxBalancer
    #: The agents' configuration (the uptest agent uses its CA and enrollment secret).
    client_config: str
    ca_cert: str
    instances: list[Instance] = msgspec.field(default_factory=list)
    #: A development cluster's ``cluster.json`` to keep in step (``scripts/cluster down``).
    dev_cluster: str = ""
    upgrade: Upgrade | None = None

    def instance(self, name: str) -> Instance:
        for instance in self.instances:
            if instance.name == name:
                return instance
        names = ", ".join(i.name for i in self.instances)
        raise KeyError(f"no instance {name!r} in the deployment (there are: {names})")

    def serving(self) -> list[Instance]:
        """The instances that are (or should be) in the pool."""
        return [i for i in self.instances if i.pool != "absent"]


def load_deployment(path: Path) -> Deployment:
    """Read ``deploy.yaml``; a clear error naming the file when it is missing or wrong."""
    if not path.exists():
        raise FileNotFoundError(
            f"no deployment file at {path}: make one with 'peregrine deploy init'"
        )
    try:
        data = yaml.safe_load(path.read_text())
        return msgspec.convert(data, Deployment)
    except (yaml.YAMLError, msgspec.ValidationError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def save_deployment(deployment: Deployment, path: Path) -> None:
    """Write it atomically (a crash leaves the old file or the new one, never half)."""
    text = yaml.safe_dump(msgspec.to_builtins(deployment), sort_keys=False)
    header = "# Peregrine deployment: written by 'peregrine deploy' (its state file too).\n"
    write_atomic(path, header + text, SECRET_MODE)


def now() -> float:
    return time.time()


def netloc(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
