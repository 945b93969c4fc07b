"""Shared parts of the fleet benchmarks: a throw-away deployment, the server as a separate
process (so its memory and CPU can be measured), the simulator (``peregrine loadtest``) in
other processes, an API token for starting hunts and collections, and clean-up.

Not a benchmark itself; imported by ``bench_agents_held.py``, ``bench_hunt_fanout.py``,
``bench_ingestion.py``, ``bench_enrollment.py``, ``bench_agent_footprint.py`` and
``bench_one_client.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import psutil

PYTHON = sys.executable
BENCH_USER = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def peregrine(*args: str, timeout: float = 120.0, stdin: str | None = None) -> str:
    """Run ``python -m peregrine ARGS`` and return its stdout (raises on failure)."""
    done = subprocess.run(
        [PYTHON, "-m", "peregrine", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"peregrine {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def server_supports_workers() -> bool:
    """Whether ``peregrine server`` has a --workers option (the multi-process frontends)."""
    return "--workers" in peregrine("server", "--help", timeout=60)


@dataclass
class Deployment:
    """A deployment in ``directory``: configs, datastore, filestore, the simulator's keys."""

    directory: Path
    server_yaml: Path
    client_yaml: Path
    port: int
    api_port: int

    @property
    def key_dir(self) -> Path:
        return self.directory / "loadtest-keys"

    @property
    def datastore(self) -> Path:
        return self.directory / "data" / "peregrine.db"

    def db(self) -> sqlite3.Connection:
        """A read-only connection to the server's SQLite datastore (WAL: reads beside it)."""
        return sqlite3.connect(f"file:{self.datastore}?mode=ro", uri=True, timeout=30)


def deployment(directory: Path | None) -> Deployment:
    """The deployment in ``directory`` (made there on first use), or a new temporary one."""
    from peregrine.config import generate, load_server_config

    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="peregrine-bench-"))
    root = root.absolute()
    server_yaml = root / "server.yaml"
    if not server_yaml.exists():
        port, api_port = free_port(), free_port()
        generate(
            root,
            [f"wss://127.0.0.1:{port}/agent"],
            port=port,
            api_port=api_port,
            data_dir=root / "data",
            force=True,
        )
        _without_enrollment_limit(server_yaml)
    cfg = load_server_config(server_yaml)
    return Deployment(root, server_yaml, root / "client.yaml", cfg.port, cfg.api_port)


def _without_enrollment_limit(server_yaml: Path) -> None:
    """The benchmarks measure what a frontend can enroll, not its configured rate limit."""
    import yaml

    from peregrine.config.model import ServerConfig, parse_config, save_config

    data = yaml.safe_load(server_yaml.read_text())
    data["limits"] = {"enrollments_per_second": 1e6, "enrollment_burst": 10**6}
    save_config(parse_config(ServerConfig, data, server_yaml), server_yaml)


def api_token(dep: Deployment) -> str:
    """An administrator token for the benchmark user (made once per deployment)."""
    path = dep.directory / "bench-token"
    if path.exists():
        return path.read_text().strip()
    conf = ["--config", str(dep.server_yaml)]
    with contextlib.suppress(RuntimeError):  # already there
        peregrine("users", "add", BENCH_USER, "--role", "administrator", "--no-password", *conf)
    out = peregrine("users", "token", BENCH_USER, "--name", "benchmarks", *conf)
    match = re.search(r"prg_\S+", out)
    if match is None:
        raise RuntimeError(f"no token in: {out!r}")
    path.write_text(match.group(0))
    path.chmod(0o600)
    return match.group(0)


def api_client(dep: Deployment) -> httpx.Client:
    ca_file = str(dep.directory / "ca.pem")
    return httpx.Client(
        base_url=f"https://127.0.0.1:{dep.api_port}/api/v1",
        headers={"Authorization": f"Bearer {api_token(dep)}"},
        verify=ca_file,
        timeout=60,
    )


# -- processes ------------------------------------------------------------------------------


def tree(proc: psutil.Process) -> list[psutil.Process]:
    """A process and its live descendants."""
    with contextlib.suppress(psutil.Error):
        return [proc, *proc.children(recursive=True)]
    return []


def rss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


@dataclass
class ServerProcess:
    """``python -m peregrine server --config ... --no-local-agent`` in its own session."""

    dep: Deployment
    workers: int = 1
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    notes: list[str] = field(default_factory=list)

    def start(self, timeout: float = 60.0) -> None:
        args = ["server", "--config", str(self.dep.server_yaml), "--no-local-agent"]
        args += ["--log-level", "WARNING"]
        if self.workers > 1:
            if server_supports_workers():
                args += ["--workers", str(self.workers)]
            else:
                self.notes.append(
                    f"--workers {self.workers} asked, but this server has no --workers option: "
                    "ran one process"
                )
        self.log = self.log or self.dep.directory / "server.log"
        out = open(self.log, "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "peregrine", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while not (port_open(self.dep.port) and port_open(self.dep.api_port)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.1)

    @property
    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def procs(self) -> list[psutil.Process]:
        return tree(self.process)

    def rss(self) -> int:
        return rss(self.procs())

    def cpu(self) -> float:
        return cpu_seconds(self.procs())

    def fds(self) -> int:
        total = 0
        for p in self.procs():
            with contextlib.suppress(psutil.Error):
                total += p.num_fds()
        return total

    def agent_connections(self) -> int:
        """ESTABLISHED TCP connections on the agent port (the server's side of them).

        Counted by the kernel through ``ss`` (netlink, filtered in the kernel): psutil parses
        all of /proc/net/tcp in Python once per server process, about a second of CPU per
        poll at 100,000 connections, taken from the box being measured. ``ss`` also counts
        connections the kernel completed but the server has not accepted yet (none once idle).
        """
        if shutil.which("ss"):
            out = subprocess.run(
                ["ss", "-Htn", "state", "established", f"( sport = :{self.dep.port} )"],
                capture_output=True, check=True, text=True,
            ).stdout  # fmt: skip
            return out.count("\n")
        count = 0
        for p in self.procs():
            with contextlib.suppress(psutil.Error):
                count += sum(
                    1
                    for c in p.net_connections(kind="tcp")
                    if c.status == psutil.CONN_ESTABLISHED
                    and c.laddr
                    and c.laddr.port == self.dep.port
                )
        return count

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of its group (workers)


@dataclass
class AgentProcess:
    """A real agent, ``python -m peregrine agent --config ...``, in its own session."""

    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def in_deployment(cls, dep: Deployment, **changes: Any) -> AgentProcess:
        """An agent of ``dep`` whose identity and spool live in ``<dep>/agent-home``;
        ``changes``: client configuration fields to set."""
        import msgspec

        from peregrine.config import load_client_config, write_client_config

        home = dep.directory / "agent-home"
        home.mkdir(exist_ok=True)
        client = msgspec.structs.replace(
            load_client_config(dep.client_yaml),
            writeback_path=str(home / "writeback.yaml"),
            spool_dir=str(home / "spool"),
            **changes,
        )
        write_client_config(client, home / "client.yaml")
        return cls(home / "client.yaml", dep.directory / "agent.log")

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "peregrine", "agent", "--config", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def procs(self) -> list[psutil.Process]:
        assert self.proc is not None
        return tree(psutil.Process(self.proc.pid))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def interrogated_client(dep: Deployment, timeout: float = 60.0) -> str:
    """The id of the first client whose enrollment interrogation is stored."""
    sql = "SELECT client_id FROM clients WHERE interrogated IS NOT NULL"
    return str(wait_db(dep, sql, (), timeout)[0])


def wait_db(dep: Deployment, sql: str, params: tuple[Any, ...], timeout: float) -> Any:
    """The first row of ``sql`` on the server's datastore once its first value is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dep.datastore.exists():
            with dep.db() as db:
                row = db.execute(sql, params).fetchone()
            if row and row[0]:
                return row
        time.sleep(0.05)
    raise TimeoutError(sql)


class FleetPlace(Protocol):
    """Where a simulated fleet gets its configuration and keys, and writes its output."""

    @property
    def directory(self) -> Path: ...
    @property
    def client_yaml(self) -> Path: ...
    @property
    def key_dir(self) -> Path: ...


@dataclass
class LoadTest:
    """``python -m peregrine loadtest`` against a deployment, stopped early with SIGINT."""

    dep: FleetPlace
    clients: int
    processes: int = 1
    rows: int = 1
    row_bytes: int = 100
    ramp: float = 0.0
    duration: float = 600.0
    #: More ``peregrine loadtest`` options (``--events-per-second 1``).
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    out_path: Path | None = None

    def start(self) -> None:
        args = [
            "loadtest", "--clients", str(self.clients), "--config", str(self.dep.client_yaml),
            "--processes", str(self.processes), "--rows", str(self.rows),
            "--row-bytes", str(self.row_bytes), "--ramp", str(self.ramp),
            "--duration", str(self.duration), "--key-dir", str(self.dep.key_dir), "--json",
            *self.extra_args,
        ]  # fmt: skip
        self.out_path = self.dep.directory / f"loadtest-{int(time.time() * 1000)}.json"
        out = open(self.out_path, "wb")  # noqa: SIM115
        err = open(self.dep.directory / "loadtest.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "peregrine", *args],
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        out.close()
        err.close()

    def procs(self) -> list[psutil.Process]:
        assert self.proc is not None
        return tree(psutil.Process(self.proc.pid))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 90.0) -> dict[str, Any]:
        """Stop early (SIGINT to the parent: it stops its slices and reports) and return the
        simulator's summary."""
        if self.proc is None:
            return {}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        assert self.out_path is not None
        text = self.out_path.read_text()
        start = text.find("{")
        return json.loads(text[start:]) if start >= 0 else {}


@contextlib.contextmanager
def cleanup(*things: Any) -> Iterator[None]:
    """Stop every started process whatever happens."""
    try:
        yield
    finally:
        for thing in things:
            with contextlib.suppress(Exception):
                thing.stop()


def wait_connections(
    server: ServerProcess, want: int, timeout: float, stall: float = 30.0, every: float = 2.0
) -> tuple[int, float]:
    """Wait until the server holds ``want`` agent connections, or the count stops growing for
    ``stall`` seconds, or ``timeout``; returns (held, seconds waited)."""
    started = time.monotonic()
    best, best_at = -1, started
    while True:
        held = server.agent_connections()
        now = time.monotonic()
        if held > best:
            best, best_at = held, now
        if held >= want or now - started > timeout or now - best_at > stall:
            return held, now - started
        time.sleep(every)


def fleet_options(parser: argparse.ArgumentParser, clients: int) -> None:
    """The options of a benchmark that connects a simulated fleet to one server."""
    parser.add_argument("--clients", type=int, default=clients)
    parser.add_argument("--processes", type=int, default=2, help="simulator processes")
    parser.add_argument("--ramp", type=float, default=1000.0, help="new connections/s offered")
    parser.add_argument("--dir", type=Path, help="deployment directory (default: a new one)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")


def print_result(result: dict[str, Any], as_json: bool) -> None:
    """The result as JSON, or one aligned line per figure (and the probes' line)."""
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(probe_line(probe_machine()))
    width = max(len(key) for key in result) + 2
    for key, value in result.items():
        print(f"{key:{width}} {value}")


#: The probes of this run (``probe_machine``), written beside every fleet benchmark's figures.
_PROBES: dict[str, Any] = {}
_CPU_LOOP = 2_000_000
_FSYNC_SAMPLES = 40


def _cpu_probe_ms() -> float:
    """The best of 5 runs of a fixed pure-Python loop: how fast this machine runs Python."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        total = 0
        for i in range(_CPU_LOOP):
            total += i * i
        best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 1)


def _fsync_probe_ms(directory: Path) -> dict[str, float]:
    """Median and 90th percentile of a new 4 KiB file written and fsynced, then its directory
    fsynced (a new result file's durable creation), in ``directory``."""
    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fsync-probe-", dir=directory) as where:
        dir_fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for number in range(_FSYNC_SAMPLES):
                t0 = time.perf_counter()
                fd = os.open(Path(where) / f"{number}", os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.write(fd, b"x" * 4096)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.fsync(dir_fd)
                samples.append(time.perf_counter() - t0)
        finally:
            os.close(dir_fd)
    samples.sort()
    return {
        "fsync_median_ms": round(samples[len(samples) // 2] * 1000, 3),
        "fsync_p90_ms": round(samples[int(len(samples) * 0.9)] * 1000, 3),
    }


def probe_machine(directory: Path | None = None) -> dict[str, Any]:
    """Measure the CPU and ``fsync`` probes once, before a run (``directory``: where the run
    keeps its data; default the temporary directory, where deployments are made), so figures
    from different machines can be compared. Later calls return the same probes."""
    if not _PROBES:
        where = Path(directory) if directory else Path(tempfile.gettempdir())
        where.mkdir(parents=True, exist_ok=True)
        _PROBES.update(
            cpu_loop_ms=_cpu_probe_ms(),
            **_fsync_probe_ms(where),
            probe_dir=str(where),
            load_at_probe=round(os.getloadavg()[0], 2),
        )
    return dict(_PROBES)


def probe_line(probes: dict[str, Any]) -> str:
    """The probes as one printed line."""
    return (
        f"probes: python loop {probes['cpu_loop_ms']} ms, fsync (4 KiB file + its directory) "
        f"median {probes['fsync_median_ms']} ms, p90 {probes['fsync_p90_ms']} ms "
        f"(in {probes['probe_dir']}, load {probes['load_at_probe']})"
    )


def machine() -> dict[str, Any]:
    """The machine a run used, with its probes (measured now if the run did not first)."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    soft, hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "nofile": [soft, hard],
        "date": time.strftime("%Y-%m-%d"),
        "probes": probe_machine(),
    }


def mb(n: float) -> float:
    return round(n / 1e6, 1)


class Profiler:
    """py-spy recording the server (collapsed stacks) while a benchmark's measured part runs;
    does nothing without ``path`` or when py-spy is not installed."""

    def __init__(self, path: Path | None, pid: int) -> None:
        self.path, self.pid = path, pid
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        spy = Path(PYTHON).with_name("py-spy")
        if self.path is None or not spy.exists():
            return
        self.proc = subprocess.Popen(
            [str(spy), "record", "-p", str(self.pid), "-f", "raw", "-o", str(self.path),
             "--rate", "50", "--subprocesses", "--threads"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def top_frames(path: Path, count: int = 15) -> list[tuple[str, float]]:
    """Functions by inclusive share of samples, from py-spy's collapsed stacks."""
    totals: dict[str, int] = {}
    samples = 0
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            samples += int(n)
            for frame in set(stack.split(";")):
                totals[frame] = totals.get(frame, 0) + int(n)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:count]
    return [(frame, round(100 * n / max(samples, 1), 1)) for frame, n in ranked]


def seed_clients(dep: Deployment, count: int) -> int:
    """Enroll simulated clients ``0 .. count-1`` straight into the deployment's datastore (see
    ``seed_datastore``). Returns how many were new."""
    from peregrine.config import load_server_config

    return seed_datastore(load_server_config(dep.server_yaml).datastore_url, dep.key_dir, count)


def seed_datastore(url: str, key_dir: Path, count: int) -> int:
    """Enroll simulated clients ``0 .. count-1`` (keys in ``key_dir``) straight into the
    datastore at ``url``, SQLite or PostgreSQL (one transaction, with the host facts
    interrogation would store), so benchmarks of held connections and hunts start from an
    enrolled, interrogated fleet without minutes of enrollment. Run it while the servers are
    stopped (a server loads its client index at start). Returns how many were new."""
    from sqlalchemy import select

    from peregrine.datastore import open_datastore
    from peregrine.datastore.schema import clients
    from peregrine.loadtest import KeyStore, hostname_for
    from peregrine.loadtest.keys import identity_from_raw

    keys = KeyStore(key_dir).load(count)
    store = open_datastore(url)
    db = store.db if hasattr(store, "db") else store._db
    try:
        with db.read() as conn:
            known = {r[0] for r in conn.execute(select(clients.c.client_id))}
        now = time.time()
        rows = []
        for index, raw in enumerate(keys):
            ident = identity_from_raw(raw)
            if ident.client_id in known:
                continue
            name = hostname_for(index)
            rows.append(
                {
                    "client_id": ident.client_id,
                    "public_key": ident.public_key_bytes,
                    "first_seen": now,
                    "last_seen": now,
                    "last_address": "127.0.0.1",
                    "hostname": name,
                    "fqdn": f"{name}.sim.example",
                    "os": "linux",
                    "release": "12",
                    "kernel": "6.1.0-sim-amd64",
                    "arch": "x86_64",
                    "ip_addresses": ["127.0.0.1"],
                    "mac_addresses": [],
                    "users": ["sim"],
                    "agent_version": "sim",
                    "labels": [],
                    "interrogated": now,
                }
            )
        if rows:
            with db.write() as conn:
                conn.execute(clients.insert(), rows)
        return len(rows)
    finally:
        store.close()
