"""What a fleet benchmark measures: the embedded server or a development cluster, behind one
interface, so one run reports both and the cost of the distributed path shows.

* ``embedded``: one ``peregrine server`` process (``--workers N`` if asked) on SQLite, as
  ``fleet_common.ServerProcess`` runs it.
* ``clusterN`` (``cluster3``...): ``peregrine.cluster.devcluster`` — N frontend processes,
  Redis, HAProxy — on a PostgreSQL started here with durability on (``fsync``,
  ``synchronous_commit``: what a deployment runs; ``scripts/postgres`` turns them off for the
  tests). Agents reach it through HAProxy, or (``agents_via="frontends"``) straight to the
  frontends, for fleets larger than HAProxy can hold under this machine's open-file limit.

A target is used as ``with target.running(clients):`` — it seeds the clients into its
datastore before its frontends load their index, starts everything, and stops everything it
started on the way out. Not a benchmark itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psutil

from fleet_common import (
    Deployment,
    ServerProcess,
    api_client,
    api_token,
    cpu_seconds,
    deployment,
    seed_datastore,
    tree,
)
from peregrine.config import load_server_config

CLUSTER = re.compile(r"cluster(\d+)$")
#: PostgreSQL's statistics reach pg_stat_database up to 10 s late (an idle backend's last
#: transactions): a cluster's counters are read this long after a burst of work ends.
PG_STATS_LAG = 11.0


def parse_targets(text: str) -> list[str]:
    """``embedded,cluster3`` -> the names, each checked."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name != "embedded" and not CLUSTER.match(name):
            raise SystemExit(f"unknown target {name!r}: use embedded or clusterN (cluster3)")
    return names or ["embedded"]


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark with targets takes."""
    parser.add_argument(
        "--target", default="embedded", help="embedded, clusterN, or several: embedded,cluster3"
    )
    parser.add_argument(
        "--cluster-agents", default="balancer", choices=["balancer", "frontends", "auto"],
        help="agents reach a cluster through HAProxy, or straight to its frontends (auto: "
        "straight only when HAProxy cannot hold them all)",
    )  # fmt: skip
    parser.add_argument(
        "--quiet-load", type=float, default=1.5,
        help="wait for the load average to fall under this before each measured run",
    )  # fmt: skip
    parser.add_argument("--quiet-wait", type=float, default=300.0, help="at most this long")


def make_target(
    name: str, directory: Path | None, workers: int = 1, agents_via: str = "balancer"
) -> Embedded | Cluster:
    match = CLUSTER.match(name)
    if match:
        return Cluster(directory, int(match.group(1)), agents_via)
    return Embedded(directory, workers)


def filestore_counts(path: Path) -> dict[str, int]:
    """Bytes, files and folders under ``path`` (what the filestore holds: on a shared mount,
    every file and folder is also metadata work for its server)."""
    size = files = folders = 0
    for root, dirs, names in os.walk(path):
        folders += len(dirs)
        files += len(names)
        for name in names:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(root, name)).st_size
    return {"filestore_bytes": size, "filestore_files": files, "filestore_folders": folders}


def written_bytes(procs: list[psutil.Process]) -> int:
    """Bytes the processes caused to be written to storage (``/proc/PID/io``)."""
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error, AttributeError):
            total += p.io_counters().write_bytes
    return total


def established_on(procs: list[psutil.Process], ports: set[int]) -> int:
    """ESTABLISHED TCP connections the processes hold on the agent ports."""
    count = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            count += sum(
                1
                for c in p.net_connections(kind="tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port in ports
            )
    return count


class Embedded:
    """One server process on SQLite (``fleet_common``'s deployment)."""

    stats_lag = 0.0

    def __init__(self, directory: Path | None, workers: int = 1) -> None:
        self.name = "embedded" if workers == 1 else f"embedded --workers {workers}"
        self.dep: Deployment = deployment(directory)
        self.directory, self.client_yaml, self.key_dir = (
            self.dep.directory, self.dep.client_yaml, self.dep.key_dir
        )  # fmt: skip
        self.server = ServerProcess(self.dep, workers=workers)
        self.notes = self.server.notes

    @contextlib.contextmanager
    def running(self, clients: int) -> Iterator[Embedded]:
        config = load_server_config(self.dep.server_yaml)
        self.filestore = Path(config.filestore_dir)
        seed_datastore(config.datastore_url, self.key_dir, clients)
        api_token(self.dep)
        try:
            self.server.start()
            yield self
        finally:
            self.server.stop()

    @property
    def pid(self) -> int:
        return self.server.process.pid

    def api(self) -> httpx.Client:
        return api_client(self.dep)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.dep.db()) as db:
            return db.execute(sql, params).fetchall()

    def agent_connections(self) -> int:
        return self.server.agent_connections()

    def cpu(self) -> dict[str, float]:
        return {"server": self.server.cpu()}

    def rss(self) -> int:
        return self.server.rss()

    def counters(self) -> dict[str, Any]:
        return {
            **filestore_counts(self.filestore),
            "disk_write_bytes": written_bytes(self.server.procs()),
        }


class Cluster:
    """``peregrine.cluster.devcluster`` with N frontends on a durable PostgreSQL of its own."""

    stats_lag = PG_STATS_LAG

    def __init__(self, directory: Path | None, frontends: int, agents_via: str) -> None:
        import tempfile

        if agents_via not in ("balancer", "frontends", "auto"):
            raise SystemExit("--cluster-agents is balancer, frontends or auto")
        self.name = f"cluster{frontends}"
        self.frontends = frontends
        self.agents_via = agents_via
        root = directory or Path(tempfile.mkdtemp(prefix="peregrine-bench-cluster-"))
        self.directory = root.absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        # Readable by others: PostgreSQL runs as the postgres user when we are root.
        self.directory.chmod(0o755)
        self.key_dir = self.directory / "loadtest-keys"
        self.client_yaml = self.directory / "client.yaml"
        self.notes: list[str] = []
        self.cluster: Any = None
        self.postgres_dir = self.directory / "postgres"

    # -- starting and stopping ----------------------------------------------------------------

    @contextlib.contextmanager
    def running(self, clients: int) -> Iterator[Cluster]:
        from peregrine.cluster.devcluster import DevCluster

        url = start_postgres(self.postgres_dir)
        try:
            self.cluster = DevCluster.up(self.directory / "cluster", self.frontends,
                                         postgres_url=url)  # fmt: skip
            try:
                self._check_capacity(clients)
                self._write_client_config()
                # Seeded while no frontend runs: each loads its client index when it starts.
                for frontend in self.cluster.state.frontends:
                    self.cluster.stop_frontend(frontend.name)
                seed_datastore(self.cluster.state.postgres_url, self.key_dir, clients)
                for frontend in self.cluster.state.frontends:
                    self.cluster.start_frontend(frontend.name)
                self.cluster.wait_ready()
                yield self
            finally:
                self.cluster.down(remove=False)
        finally:
            stop_postgres(self.postgres_dir)

    def _check_capacity(self, clients: int) -> None:
        """Agents through HAProxy only if it can hold them all (``auto``: else straight)."""
        text = Path(self.cluster.state.haproxy_config).read_text()
        maxconn = int(re.search(r"maxconn (\d+)", text).group(1))  # type: ignore[union-attr]
        if clients <= maxconn or self.agents_via == "frontends":
            self.agents_via = "balancer" if self.agents_via == "auto" else self.agents_via
        elif self.agents_via == "auto":
            self.agents_via = "frontends"
            self.notes.append(
                f"agents went straight to the frontends: HAProxy holds at most {maxconn} "
                "connections here (two descriptors each under the open-file limit)"
            )
        else:
            raise SystemExit(
                f"HAProxy holds at most {maxconn} connections here (two descriptors each under "
                f"this machine's open-file limit): use --cluster-agents frontends (or auto) "
                f"for {clients} clients"
            )
        if self.agents_via == "frontends":
            self.name += " (agents straight to frontends)"

    def _write_client_config(self) -> None:
        """Agents use the cluster's client.yaml (the balancer), or a copy listing the
        frontends when they go straight to them."""
        import yaml

        source = Path(self.cluster.state.client_config)
        if self.agents_via == "balancer":
            self.client_yaml = source
            return
        data = yaml.safe_load(source.read_text())
        data["server_urls"] = [
            f"wss://{f.host}:{f.port}/agent" for f in self.cluster.state.frontends
        ]
        self.client_yaml.write_text(yaml.safe_dump(data))
        self.client_yaml.chmod(0o600)

    # -- reading it ---------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return int(self.cluster.state.frontends[0].pid)

    def api(self) -> httpx.Client:
        state = self.cluster.state
        return httpx.Client(
            base_url=f"{state.api_url}/api/v1",
            headers={"Authorization": f"Bearer {self.cluster.token}"},
            verify=state.ca_cert,
            timeout=60,
        )

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        url = self.cluster.state.postgres_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(sql.replace("?", "%s"), params).fetchall()  # type: ignore[arg-type]
        # sum() of integers is numeric in PostgreSQL: plain numbers, as SQLite gives.
        return [tuple(_plain(v) for v in row) for row in rows]

    def _frontend_procs(self) -> list[psutil.Process]:
        procs: list[psutil.Process] = []
        for frontend in self.cluster.state.frontends:
            with contextlib.suppress(psutil.Error):
                procs += tree(psutil.Process(frontend.pid))
        return procs

    def _service(self, pid: int) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return tree(psutil.Process(pid))
        return []

    def _postgres_procs(self) -> list[psutil.Process]:
        pid_file = self.postgres_dir / "data" / "postmaster.pid"
        return self._service(int(pid_file.read_text().split()[0]))

    def agent_connections(self) -> int:
        ports = {f.port for f in self.cluster.state.frontends}
        return established_on(self._frontend_procs(), ports)

    def cpu(self) -> dict[str, float]:
        state = self.cluster.state
        return {
            "frontends": cpu_seconds(self._frontend_procs()),
            "postgresql": cpu_seconds(self._postgres_procs()),
            "redis": cpu_seconds(self._service(state.redis_pid)),
            "haproxy": cpu_seconds(self._service(state.haproxy_pid)),
        }

    def rss(self) -> int:
        from fleet_common import rss

        return rss(self._frontend_procs())

    def counters(self) -> dict[str, Any]:
        """What the shared services did so far: PostgreSQL transactions, tuples and WAL;
        Redis commands (by name) and bytes; filestore bytes."""
        pg = self.query(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint "
            "FROM pg_stat_database WHERE datname = current_database()"
        )[0]
        redis_stats = redis_counters(self.cluster.state.redis_port)
        config = load_server_config(Path(self.cluster.state.frontends[0].config))
        filestore = Path(config.filestore_dir)
        return {
            "pg_commits": pg[0],
            "pg_rollbacks": pg[1],
            "pg_tuples_written": pg[2] + pg[3] + pg[4],
            "pg_wal_bytes": pg[5],
            **redis_stats,
            **filestore_counts(filestore),
            "disk_write_bytes": written_bytes(self._frontend_procs()),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def redis_counters(port: int) -> dict[str, Any]:
    """Redis's command counts (by command, our own INFO left out) and network bytes."""
    import redis

    with redis.Redis(port=port) as r:
        stats = r.info("commandstats")
        net = r.info("stats")
    calls = {
        key.removeprefix("cmdstat_"): int(value["calls"])
        for key, value in stats.items()
        if key != "cmdstat_info"
    }
    return {
        "redis_commands": sum(calls.values()),
        "redis_by_command": calls,
        "redis_bytes_in": int(net["total_net_input_bytes"]),
        "redis_bytes_out": int(net["total_net_output_bytes"]),
    }


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``after - before`` for every number (and nested dict of numbers)."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        if isinstance(value, dict):
            out[key] = {
                k: v - before.get(key, {}).get(k, 0)
                for k, v in value.items()
                if v - before.get(key, {}).get(k, 0)
            }
        elif isinstance(value, int | float):
            out[key] = value - before.get(key, 0)
    return out


# -- a durable PostgreSQL ---------------------------------------------------------------------


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    if not found:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    return found[-1].parent


def _as_owner(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as ``postgres`` then."""
    return ["runuser", "-u", "postgres", "--", *args] if os.getuid() == 0 else args


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def start_postgres(directory: Path) -> str:
    """A PostgreSQL server in ``directory`` with its default durability (fsync and
    synchronous commit on); its URL."""
    from peregrine.cluster.processes import free_port

    if directory.exists():
        stop_postgres(directory)
    directory.mkdir(parents=True, mode=0o700)
    if os.getuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    binary = _postgres_bin()
    data = f"--pgdata={directory / 'data'}"
    _run(_as_owner([str(binary / "initdb"), data, "--username=postgres", "--auth=trust",
                    "--encoding=UTF8", "--locale=C"]))  # fmt: skip
    port = free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={directory} "
        "-c max_connections=300"
    )
    log = f"--log={directory / 'server.log'}"
    _run(_as_owner([str(binary / "pg_ctl"), data, log, "--wait", "--silent", "-o", options,
                    "start"]))  # fmt: skip
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def stop_postgres(directory: Path) -> None:
    if (directory / "data" / "postmaster.pid").exists():
        subprocess.run(
            _as_owner([str(_postgres_bin() / "pg_ctl"), f"--pgdata={directory / 'data'}",
                       "--mode=fast", "--wait", "--silent", "stop"]),
            check=False, capture_output=True,
        )  # fmt: skip
    shutil.rmtree(directory, ignore_errors=True)


def load_average() -> float:
    """The one-minute load average (written beside every run: the machine is shared)."""
    return round(os.getloadavg()[0], 2)


def wait_for_quiet(limit: float = 1.5, longest: float = 300.0) -> float:
    """Wait (up to ``longest`` seconds) for the load average to fall under ``limit``; the load
    when the run starts."""
    deadline = time.monotonic() + longest
    while load_average() >= limit and time.monotonic() < deadline:
        time.sleep(10)
    return load_average()
