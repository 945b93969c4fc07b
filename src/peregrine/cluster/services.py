"""What a development cluster needs to change while it runs: who leads, PostgreSQL stopped and
started again, a frontend added to the balancer's pools.

The fault tests (``tests/cluster/test_faults*.py``) use these through ``DevCluster``: they
stop and start the real services the cluster runs, as an operator (or a failure) would.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import yaml

from peregrine.cluster.generate import FRONTEND_HEADER, FrontendSpec
from peregrine.cluster.haproxy import CHECK_INTERVAL
from peregrine.config import ServerConfig
from peregrine.config.files import ensure_private_dir
from peregrine.config.model import parse_config, save_config

#: The leader's connection names itself so (``server/leader.py``).
LEADER_APPLICATION = "peregrine leader "
_LEADER_QUERY = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE :prefix"
)


def current_leader(postgres_url: str) -> str | None:
    """The frontend whose session holds the leader's advisory lock, or None (nobody does, or
    PostgreSQL does not answer)."""
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.exc import DBAPIError

    url = make_url(postgres_url).set(drivername="postgresql+psycopg")
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            names = conn.execute(text(_LEADER_QUERY), {"prefix": LEADER_APPLICATION + "%"})
            held = [str(row[0])[len(LEADER_APPLICATION) :] for row in names]
    except DBAPIError:
        return None
    finally:
        engine.dispose()
    return held[0] if len(held) == 1 else None


# -- our own PostgreSQL ---------------------------------------------------------------------------


def _pg_ctl() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=_version)
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return str(found[-1])


def _version(path: Path) -> int:
    number = path.parents[1].name
    return int(number) if number.isdigit() else 0


def _as_owner(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its programs as ``postgres``
    (``scripts/postgres`` made the cluster that way)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def stop_postgres(directory: Path) -> None:
    """Stop the PostgreSQL that ``scripts/postgres start`` made in ``directory``, keeping its
    data (fast shutdown: open sessions are cut off, as in a restart)."""
    subprocess.run(
        _as_owner([_pg_ctl(), "--pgdata", str(directory / "data"), "--mode=fast", "--wait",
                   "--silent", "stop"]),
        check=True, capture_output=True, text=True,
    )  # fmt: skip


def start_postgres(directory: Path) -> None:
    """Start it again with the options it last ran with (port, sockets: ``postmaster.opts``)."""
    data = directory / "data"
    words = shlex.split((data / "postmaster.opts").read_text())[1:]  # without the program
    options: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "-D":
            skip = True  # the data directory: pg_ctl passes it
        else:
            options.append(word)
    subprocess.run(
        _as_owner([_pg_ctl(), "--pgdata", str(data), "--log", str(directory / "server.log"),
                   "--wait", "--silent", "-o", shlex.join(options), "start"]),
        check=True, capture_output=True, text=True,
    )  # fmt: skip


# -- a frontend more ------------------------------------------------------------------------------


def add_frontend_config(
    template: Path, spec: FrontendSpec, settings: dict[str, object] | None = None
) -> Path:
    """Write ``<spec.name>.yaml`` beside ``template`` (a frontend's configuration): the same
    deployment, with this frontend's name, ports and data directory, and ``settings``
    (dotted keys: ``drain.agents_seconds``) changed. Its path."""
    data = yaml.safe_load(template.read_text())
    for key, value in (settings or {}).items():
        *sections, last = key.split(".")
        place = data
        for section in sections:
            place = place.setdefault(section, {})
        place[last] = value
    data.update(
        data_dir=spec.name,
        bind_address=spec.host,
        api_bind_address=spec.host,
        port=spec.port,
        api_port=spec.api_port,
        frontend_name=spec.name,
    )
    path = template.parent / f"{spec.name}.yaml"
    config = parse_config(ServerConfig, data, path)
    ensure_private_dir(template.parent / spec.name)
    header = FRONTEND_HEADER.format(name=spec.name, date="-", host=spec.host, file=path.name)
    save_config(config, path, header)
    return path


def add_to_pool_commands(spec: FrontendSpec, ca_file: Path) -> list[str]:
    """HAProxy runtime API commands that put a running frontend into both pools, checked
    like the others (``haproxy.py``); a dynamic server starts in maintenance, hence the last
    two commands of each pool."""
    checks = (
        f"check check-ssl verify required ca-file {ca_file} inter {CHECK_INTERVAL}s fall 2 rise 2"
    )
    commands = []
    for backend, port in (("agents", spec.port), ("api", spec.api_port)):
        server = f"{backend}/{spec.name}"
        commands += [
            f"add server {server} {spec.host}:{port} {checks}",
            f"enable health {server}",
            f"set server {server} state ready",
        ]
    return commands
