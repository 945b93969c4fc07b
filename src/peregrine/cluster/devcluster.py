"""A development cluster on one machine: PostgreSQL, Redis, HAProxy and N frontends.

``scripts/cluster up N`` and the cluster tests run this same code. ``up`` starts PostgreSQL
(``scripts/postgres``, or a new database on a server given by URL), a throw-away Redis, writes
the cluster's configuration (``peregrine.cluster.generate``), migrates the datastore once,
adds an administrator, starts each frontend as its own ``peregrine server`` process and
HAProxy with the generated ``haproxy.cfg``, then waits until every frontend answers
``/readyz`` and HAProxy has all of them in its pool. Everything lives in one directory
(``cluster.json`` records what runs there), so ``down`` and ``status`` work from another
shell. Every program runs as a plain process of the caller (no system service).

Layout of the directory::

    cluster.json        what runs: pids, ports, URLs (read by down/status)
    env                 PEREGRINE_URL, PEREGRINE_TOKEN, PEREGRINE_CA_CERT for the CLI (0600)
    config/             the generated cluster: frontendK.yaml, haproxy.cfg, client.yaml, CA
    postgres/ redis/    the services' data
    logs/               one log per program
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import msgspec

from peregrine.cluster import processes, runtime_api
from peregrine.cluster.generate import FrontendSpec, generate_cluster
from peregrine.cluster.haproxy import Backend, render
from peregrine.cluster.services import (
    add_frontend_config,
    add_to_pool_commands,
    current_leader,
    start_postgres,
    stop_postgres,
)
from peregrine.config.files import PUBLIC_MODE, SECRET_MODE, write_atomic

if TYPE_CHECKING:
    from sqlalchemy import Connection

STATE_FILE = "cluster.json"
#: A directory holding this is a dev cluster's: ``up`` and ``down`` may delete it.
MARKER = ".peregrine-dev-cluster"
ADMIN = "admin"
#: Seconds ``up`` waits for the frontends to be ready and in the balancer's pool.
READY_TIMEOUT = 180.0
#: Seconds a frontend may take to drain and stop gracefully before it is killed.
STOP_TIMEOUT = 60.0


class FrontendState(msgspec.Struct):
    name: str
    config: str
    host: str
    port: int
    api_port: int
    pid: int = 0


class ClusterState(msgspec.Struct):
    """What runs in a cluster directory (``cluster.json``)."""

    directory: str
    postgres_url: str
    #: Our own PostgreSQL's folder, or "" when the database is on a server we were given.
    postgres_dir: str
    #: The database made on a given server (dropped by ``down``), or "".
    postgres_database: str
    redis_port: int
    redis_pid: int
    haproxy_pid: int
    haproxy_socket: str
    haproxy_config: str
    agent_url: str
    api_url: str
    ca_cert: str
    client_config: str
    frontends: list[FrontendState]


def repository_root() -> Path:
    """The checkout this package runs from (``scripts/postgres`` lives there)."""
    return Path(__file__).resolve().parents[3]


class DevCluster:
    """A running development cluster, found by its directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.absolute()
        path = self.directory / STATE_FILE
        if not path.exists():
            raise FileNotFoundError(f"no cluster in {self.directory} (start one: cluster up)")
        self.state = msgspec.json.decode(path.read_bytes(), type=ClusterState)

    # -- starting and stopping ----------------------------------------------------------------

    @classmethod
    def up(
        cls,
        directory: Path,
        frontends: int = 3,
        *,
        postgres_url: str | None = None,
        log_level: str = "WARNING",
        timeout: float = READY_TIMEOUT,
        postgres_dir: Path | None = None,
    ) -> DevCluster:
        """Start a cluster of ``frontends`` in ``directory`` and wait until it is ready.
        ``postgres_url``: make a database on this server instead of starting PostgreSQL;
        ``postgres_dir``: where our own PostgreSQL lives (default ``directory/postgres``; as
        root it runs as ``postgres``, which must be able to reach the folder)."""
        directory = directory.absolute()
        _prepare(directory)
        state = _start_services(directory, frontends, postgres_url, postgres_dir)
        _save(state)
        cluster = cls(directory)
        try:
            cluster._bootstrap()
            for frontend in state.frontends:
                cluster.start_frontend(frontend.name, log_level)
            cluster._start_haproxy()
            cluster.wait_ready(timeout)
        except BaseException:
            cluster.down(remove=False)
            raise
        return cluster

    def down(self, remove: bool = True) -> None:
        """Stop every program (frontends gracefully), drop the database, remove the folder
        (``remove``; else keep it, logs and all, without ``cluster.json``)."""
        state = self.state
        running = [f for f in state.frontends if f.pid]
        # All at once: each drains for several seconds (Server.stop), one after another
        # would add those up.
        with ThreadPoolExecutor(max(1, len(running))) as pool:
            for stopping in [
                pool.submit(processes.stop, f.pid, f.config, STOP_TIMEOUT) for f in running
            ]:
                stopping.result()
        if state.haproxy_pid:
            processes.stop(state.haproxy_pid, state.haproxy_config)
        if state.redis_pid:
            processes.stop(state.redis_pid, "redis-server")
        if state.postgres_dir:
            subprocess.run(
                [str(repository_root() / "scripts" / "postgres"), "stop", state.postgres_dir],
                check=False,
                capture_output=True,
            )
        elif state.postgres_database:
            _drop_database(state.postgres_url)
        (self.directory / STATE_FILE).unlink(missing_ok=True)
        if remove and (self.directory / MARKER).exists():
            shutil.rmtree(self.directory, ignore_errors=True)

    def _bootstrap(self) -> None:
        """Migrate the datastore once (not N frontends racing to), add the administrator,
        and write ``env`` for the CLI."""
        from peregrine.auth.accounts import Accounts
        from peregrine.auth.roles import ADMINISTRATOR
        from peregrine.datastore import open_datastore

        password = secrets.token_urlsafe(18)
        with open_datastore(self.state.postgres_url) as datastore:
            accounts = Accounts(datastore)
            accounts.create_user(ADMIN, password, [ADMINISTRATOR])
            token = accounts.create_token(ADMIN, "dev cluster").token
        write_atomic(self.directory / "admin-password", password + "\n", SECRET_MODE)
        env = {
            "PEREGRINE_URL": self.state.api_url,
            "PEREGRINE_TOKEN": token,
            "PEREGRINE_CA_CERT": self.state.ca_cert,
        }
        text = "".join(f"export {k}={v}\n" for k, v in env.items())
        write_atomic(self.directory / "env", text, SECRET_MODE)

    def _start_haproxy(self) -> None:
        haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
        if haproxy is None:
            raise RuntimeError("HAProxy is not installed: apt-get install haproxy")
        log = self.directory / "logs" / "haproxy.log"
        self.state.haproxy_pid = processes.spawn(
            [haproxy, "-db", "-f", self.state.haproxy_config], log
        )
        _save(self.state)

    # -- frontends ------------------------------------------------------------------------------

    def frontend(self, name: str) -> FrontendState:
        for frontend in self.state.frontends:
            if frontend.name == name:
                return frontend
        names = ", ".join(f.name for f in self.state.frontends)
        raise KeyError(f"no frontend {name!r} (there are: {names})")

    def start_frontend(self, name: str, log_level: str = "WARNING") -> None:
        """Start a frontend's process (it must not be running)."""
        frontend = self.frontend(name)
        if frontend.pid and processes.running(frontend.pid, frontend.config):
            raise RuntimeError(f"{name} is already running (pid {frontend.pid})")
        frontend.pid = processes.spawn(
            [sys.executable, "-m", "peregrine", "server", "--config", frontend.config,
             "--no-local-agent", "--log-level", log_level],
            self.directory / "logs" / f"{name}.log",
        )  # fmt: skip
        _save(self.state)

    def stop_frontend(self, name: str, timeout: float = STOP_TIMEOUT) -> None:
        """A graceful stop (SIGTERM): the frontend drains, then exits (killed after
        ``timeout``)."""
        frontend = self.frontend(name)
        processes.stop(frontend.pid, frontend.config, timeout)

    def add_frontend(self, log_level: str = "WARNING", timeout: float = READY_TIMEOUT) -> str:
        """A new frontend, started, ready and in HAProxy's pools (added through its runtime
        API, without a reload; ``haproxy.cfg`` is rewritten too, for the next start): its
        name. Its configuration is the first frontend's with its own name, ports and data
        directory."""
        name = f"frontend{len(self.state.frontends) + 1}"
        spec = FrontendSpec(name, "127.0.0.1", processes.free_port(), processes.free_port())
        path = add_frontend_config(Path(self.state.frontends[0].config), spec)
        self.state.frontends.append(FrontendState(name, str(path), spec.host, spec.port,
                                                  spec.api_port))  # fmt: skip
        _save(self.state)
        self.start_frontend(name, log_level)
        processes.wait_for(
            lambda: self.is_ready(name), name, timeout, self.directory / "logs" / f"{name}.log",
            alive=lambda: processes.running(self.frontend(name).pid, str(path)),
        )  # fmt: skip
        for command in add_to_pool_commands(spec, Path(self.state.ca_cert)):
            answer = self.haproxy(command).strip()
            if answer and not answer.startswith("New server registered"):
                raise RuntimeError(f"HAProxy refused {command!r}: {answer}")
        self._write_haproxy_config()
        return name

    def _write_haproxy_config(self) -> None:
        """``haproxy.cfg`` for the frontends there are now (HAProxy reads it when started)."""
        from urllib.parse import urlsplit

        state = self.state
        text = render(
            [Backend(f.name, f.host, f.port, f.api_port) for f in state.frontends],
            bind_host="127.0.0.1",
            agent_port=urlsplit(state.agent_url).port or 443,
            api_port=urlsplit(state.api_url).port or 443,
            ca_file=Path(state.ca_cert),
            socket_path=Path(state.haproxy_socket),
            max_connections=_balancer_connections(),
        )
        write_atomic(Path(state.haproxy_config), text, PUBLIC_MODE)

    def kill_frontend(self, name: str) -> None:
        """``kill -9``: the frontend vanishes without a word."""
        frontend = self.frontend(name)
        processes.kill(frontend.pid, frontend.config)

    # -- the services -----------------------------------------------------------------------------

    def leader(self) -> str | None:
        """The frontend holding the leader's advisory lock now (as PostgreSQL says), or None."""
        return current_leader(self.state.postgres_url)

    def stop_redis(self) -> None:
        processes.stop(self.state.redis_pid, "redis-server")

    def start_redis(self) -> None:
        """Start Redis again on its port (empty: it keeps nothing), after ``stop_redis``."""
        _port, self.state.redis_pid = _start_redis(self.directory, self.state.redis_port)
        _save(self.state)

    def stop_postgres(self) -> None:
        """Stop our own PostgreSQL (fast shutdown: sessions are cut, as in a restart)."""
        stop_postgres(self._postgres_dir())

    def start_postgres(self) -> None:
        start_postgres(self._postgres_dir())

    def _postgres_dir(self) -> Path:
        if not self.state.postgres_dir:
            raise RuntimeError(
                "this cluster's database is on a server it did not start: start the cluster "
                "without --postgres-url to stop and start PostgreSQL"
            )
        return Path(self.state.postgres_dir)

    def is_ready(self, name: str) -> bool:
        frontend = self.frontend(name)
        return _get(f"https://{frontend.host}:{frontend.api_port}/readyz", self._tls()) == 200

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every frontend is ready and HAProxy has all of them up in both pools."""
        for frontend in self.state.frontends:
            processes.wait_for(
                lambda f=frontend: self.is_ready(f.name),  # type: ignore[misc]
                frontend.name,
                timeout,
                self.directory / "logs" / f"{frontend.name}.log",
                alive=lambda f=frontend: processes.running(f.pid, f.config),  # type: ignore[misc]
            )
        expected = {server: "UP" for server in self.pool_servers()}
        processes.wait_for(
            lambda: self.pool() == expected,
            "HAProxy's pool",
            timeout,
            self.directory / "logs" / "haproxy.log",
            alive=lambda: processes.running(self.state.haproxy_pid, self.state.haproxy_config),
        )

    # -- the balancer ---------------------------------------------------------------------------

    def pool_servers(self) -> list[str]:
        return [f"{b}/{f.name}" for b in ("agents", "api") for f in self.state.frontends]

    def haproxy(self, command: str) -> str:
        """One command on HAProxy's runtime API; its answer."""
        return runtime_api.command(self.state.haproxy_socket, command, timeout=5)

    def pool(self) -> dict[str, str]:
        """Each frontend's state in the balancer's pools (``agents/frontend1``: ``UP``,
        ``DOWN``, ``DRAIN``...); empty when HAProxy does not answer."""
        try:
            rows = runtime_api.server_stats(self.state.haproxy_socket)
        except OSError:
            return {}
        return {server: row["status"].split(" ")[0] for server, row in rows.items()}

    # -- reporting ------------------------------------------------------------------------------

    @property
    def token(self) -> str:
        """The administrator's API token (from ``env``)."""
        for line in (self.directory / "env").read_text().splitlines():
            if line.startswith("export PEREGRINE_TOKEN="):
                return line.split("=", 1)[1]
        raise RuntimeError(f"no token in {self.directory / 'env'}")

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.state.ca_cert)

    def status(self) -> dict[str, object]:
        """What runs and how it is, as plain data."""
        state = self.state
        frontends = {
            f.name: {
                "pid": f.pid,
                "running": bool(f.pid) and processes.running(f.pid, f.config),
                "ready": self.is_ready(f.name),
                "agent_port": f.port,
                "api_port": f.api_port,
            }
            for f in state.frontends
        }
        return {
            "directory": state.directory,
            "api_url": state.api_url,
            "agent_url": state.agent_url,
            "postgresql": _hide_password(state.postgres_url),
            "redis": {
                "port": state.redis_port,
                "running": processes.running(state.redis_pid, "redis-server"),
            },
            "haproxy": {
                "running": processes.running(state.haproxy_pid, state.haproxy_config),
                "pool": self.pool(),
            },
            "frontends": frontends,
        }

    def describe(self) -> str:
        """How to reach the cluster, for a person."""
        s = self.state
        lines = [
            f"Peregrine dev cluster in {s.directory}: {len(s.frontends)} frontends behind HAProxy",
            f"  API (through HAProxy):  {s.api_url}/api/v1   CA: {s.ca_cert}",
            f"  login:                  {ADMIN} / password in {s.directory}/admin-password",
            f"  CLI:                    source {s.directory}/env; peregrine clients",
            f"  agents:                 peregrine agent --config {s.client_config}",
            f"                          (connect to {s.agent_url})",
            f"  HAProxy runtime API:    {s.haproxy_socket}",
            f"  PostgreSQL:             {_hide_password(s.postgres_url)}",
            f"  Redis:                  redis://127.0.0.1:{s.redis_port}/0",
            f"  logs:                   {s.directory}/logs/",
        ]
        lines += [
            f"  {f.name}: agents {f.host}:{f.port}, API https://{f.host}:{f.api_port}, pid {f.pid}"
            for f in s.frontends
        ]
        return "\n".join(lines)


# -- services -----------------------------------------------------------------------------------


def _prepare(directory: Path) -> None:
    """An empty cluster directory; a stopped dev cluster's leftovers are cleared, anything
    else is refused."""
    if (directory / STATE_FILE).exists():
        raise FileExistsError(
            f"a cluster runs in {directory}: stop it first (cluster down), or use another "
            "directory (PEREGRINE_CLUSTER_DIR)"
        )
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise FileExistsError(f"{directory} is not empty and not a dev cluster's folder")
        shutil.rmtree(directory)
    # Readable by others: our own PostgreSQL runs as the postgres user when we are root.
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    (directory / MARKER).touch()
    (directory / "logs").mkdir(mode=0o700)


def _start_services(
    directory: Path, count: int, postgres_url: str | None, own_postgres: Path | None = None
) -> ClusterState:
    """PostgreSQL and Redis started, the configuration written: the state to run it."""
    postgres_dir = database = ""
    if postgres_url:
        postgres_url, database = _create_database(postgres_url)
    else:
        postgres_dir = str((own_postgres or directory / "postgres").absolute())
        postgres_url = subprocess.run(
            [str(repository_root() / "scripts" / "postgres"), "start", postgres_dir],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    redis_port, redis_pid = _start_redis(directory)
    try:
        agent_port, api_port = processes.free_port(), processes.free_port()
        specs = [
            FrontendSpec(f"frontend{i}", "127.0.0.1", processes.free_port(), processes.free_port())
            for i in range(1, count + 1)
        ]
        made = generate_cluster(
            directory / "config",
            specs,
            datastore_url=postgres_url,
            bus_url=f"redis://127.0.0.1:{redis_port}/0",
            public_urls=[f"wss://127.0.0.1:{agent_port}/agent"],
            balancer_api_port=api_port,
            max_connections=_balancer_connections(),
        )
    except BaseException:
        processes.stop(redis_pid, "redis-server")
        raise
    return ClusterState(
        directory=str(directory),
        postgres_url=postgres_url,
        postgres_dir=postgres_dir,
        postgres_database=database,
        redis_port=redis_port,
        redis_pid=redis_pid,
        haproxy_pid=0,
        haproxy_socket=str(made.haproxy_socket),
        haproxy_config=str(made.haproxy_config_path),
        agent_url=made.client.server_urls[0],
        api_url=made.api_url,
        ca_cert=str(made.directory / "ca.pem"),
        client_config=str(made.client_config_path),
        frontends=[
            FrontendState(s.name, str(p), s.host, s.port, s.api_port)
            for s, p in zip(specs, made.frontend_config_paths, strict=True)
        ],
    )


def _balancer_connections() -> int:
    """As many connections as HAProxy can hold within our open-file limit (it needs two
    descriptors a connection, and cannot raise the limit when we are not root)."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return 100_000
    return max(100, min(100_000, (hard - 200) // 2))


def _start_redis(directory: Path, port: int = 0) -> tuple[int, int]:
    """A throw-away redis-server on ``port`` (default: a free loopback one), no persistence;
    (port, pid)."""
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin")
    if binary is None:
        raise RuntimeError("Redis is not installed: apt-get install redis-server")
    data = directory / "redis"
    data.mkdir(mode=0o700, exist_ok=True)
    port = port or processes.free_port()
    log = directory / "logs" / "redis.log"
    pid = processes.spawn(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
         "--save", "", "--appendonly", "no", "--daemonize", "no"],
        log,
    )  # fmt: skip
    processes.wait_for(
        lambda: _redis_answers(port), "Redis", 30, log, alive=lambda: processes.running(pid)
    )
    return port, pid


def _redis_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


def _create_database(server_url: str) -> tuple[str, str]:
    """A new database on the PostgreSQL server at ``server_url``: (its URL, its name)."""
    from sqlalchemy import make_url, text

    name = f"peregrine_cluster_{uuid.uuid4().hex[:12]}"
    with _admin(server_url) as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, name


def _drop_database(url: str) -> None:
    from sqlalchemy import make_url, text

    name = make_url(url).database
    with _admin(url) as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def _admin(url: str) -> Iterator[Connection]:
    """An autocommit connection to the server's ``postgres`` database."""
    from sqlalchemy import create_engine, make_url

    admin = make_url(url).set(drivername="postgresql+psycopg", database="postgres")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _save(state: ClusterState) -> None:
    write_atomic(Path(state.directory) / STATE_FILE, msgspec.json.encode(state), SECRET_MODE)


def _get(url: str, tls: ssl.SSLContext) -> int:
    try:
        return httpx.get(url, verify=tls, timeout=3).status_code
    except httpx.HTTPError:
        return 0


def _hide_password(url: str) -> str:
    from peregrine.config.model import hide_password

    return hide_password(url)


# -- scripts/cluster ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.split("\n")[0])
    default_dir = Path(os.environ.get("PEREGRINE_CLUSTER_DIR") or ".cluster")
    parser.add_argument("--dir", type=Path, default=default_dir, help="the cluster's folder")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a cluster and wait until it is ready")
    up.add_argument("frontends", type=int, nargs="?", default=3)
    up.add_argument("--postgres-url", help="make the database on this server instead")
    up.add_argument("--log-level", default="WARNING")
    commands.add_parser("down", help="stop the cluster and remove its folder")
    status = commands.add_parser("status", help="what runs, and whether it is ready")
    status.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            if args.frontends < 1:
                parser.error("a cluster needs at least one frontend")
            cluster = DevCluster.up(
                args.dir, args.frontends, postgres_url=args.postgres_url,
                log_level=args.log_level,
            )  # fmt: skip
            print(cluster.describe())
        elif args.command == "down":
            DevCluster(args.dir).down()
            print(f"cluster in {args.dir.absolute()} stopped and removed")
        else:
            report = DevCluster(args.dir).status()
            print(json.dumps(report, indent=2) if args.json else _status_text(report))
    except (FileNotFoundError, FileExistsError, RuntimeError, TimeoutError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"Error: {' '.join(exc.cmd)} failed:\n{exc.stderr}", file=sys.stderr)
        return 1
    return 0


def _status_text(report: dict[str, object]) -> str:
    frontends = report["frontends"]
    haproxy = report["haproxy"]
    redis = report["redis"]
    assert isinstance(frontends, dict) and isinstance(haproxy, dict) and isinstance(redis, dict)
    lines = [f"cluster in {report['directory']}: API {report['api_url']}"]
    lines.append(f"  redis      {'running' if redis['running'] else 'STOPPED'}")
    lines.append(f"  haproxy    {'running' if haproxy['running'] else 'STOPPED'}")
    for name, info in frontends.items():
        state = "ready" if info["ready"] else "running" if info["running"] else "STOPPED"
        pools = ", ".join(
            f"{server.split('/')[0]} {status}"
            for server, status in haproxy["pool"].items()
            if server.endswith(f"/{name}")
        )
        lines.append(f"  {name:<10} {state:<8} (pid {info['pid']}; pool: {pools or '?'})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
